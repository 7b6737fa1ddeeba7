"""Real HTTP servers on 127.0.0.1 standing in for Sentry and an OTLP collector, recording what they get.

Sentry: `POST /api/<project>/envelope/` with envelopes (gzip or brotli compressed, as the SDK sends them).
OTLP/HTTP: `POST /v1/traces` with an `ExportTraceServiceRequest` protobuf, decoded with opentelemetry-proto.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import brotli
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

HOST = "127.0.0.1"


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "br":
        return brotli.decompress(body)
    return body


class _Recorder:
    """Shared by both servers: a lock, raw bodies, and a way to wait for them."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.bodies: list[bytes] = []
        self.delay = 0.0  # seconds each request is held before it is recorded and answered

    def record(self, body: bytes) -> None:
        with self.lock:
            self.bodies.append(body)
            self.lock.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(remaining)
            return True

    def text(self) -> str:
        """Everything received, decoded as text as far as it goes (for leak scanning)."""
        with self.lock:
            return "\n".join(body.decode("utf-8", "replace") for body in self.bodies)


@dataclass
class SentryCapture:
    port: int
    recorder: _Recorder
    items: list[tuple[str, Any]] = field(default_factory=list)  # (item type, parsed payload)

    @property
    def dsn(self) -> str:
        return f"http://public@{HOST}:{self.port}/1"

    def events(self) -> list[dict[str, Any]]:
        with self.recorder.lock:
            return [payload for kind, payload in self.items if kind == "event"]

    def transactions(self) -> list[dict[str, Any]]:
        with self.recorder.lock:
            return [payload for kind, payload in self.items if kind == "transaction"]

    def wait_for_events(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        self.recorder.wait_for(lambda: len(self.events()) >= count, timeout)
        return self.events()

    def text(self) -> str:
        return self.recorder.text()


def parse_envelope(body: bytes) -> list[tuple[str, Any]]:
    """Sentry's envelope: a header line, then items (header line + payload of `length` bytes or one line)."""
    items: list[tuple[str, Any]] = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        header_line, _, rest = rest.partition(b"\n")
        header = json.loads(header_line)
        length = header.get("length")
        if length is None:
            payload, _, rest = rest.partition(b"\n")
        else:
            payload, rest = rest[:length], rest[length:]
            rest = rest[1:] if rest.startswith(b"\n") else rest
        try:
            parsed: Any = json.loads(payload)
        except ValueError:
            parsed = payload
        items.append((header.get("type", ""), parsed))
    return items


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status_message: str
    events: list[tuple[str, dict[str, Any]]]


@dataclass
class OtlpCapture:
    port: int
    recorder: _Recorder
    spans: list[Span] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://{HOST}:{self.port}"

    def all_spans(self) -> list[Span]:
        with self.recorder.lock:
            return list(self.spans)

    def text(self) -> str:
        return self.recorder.text()


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, kind) if kind else None


def _attributes(pairs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in pairs}


def decode_traces(body: bytes) -> list[Span]:
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    Span(
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        status_message=span.status.message,
                        events=[(event.name, _attributes(event.attributes)) for event in span.events],
                    )
                )
    return spans


@contextmanager
def _serve(handle: Callable[[str, bytes], tuple[int, bytes, str]], recorder: _Recorder) -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            body = _decompress(raw, self.headers.get("Content-Encoding"))
            if recorder.delay:
                time.sleep(recorder.delay)
            status, payload, content_type = handle(self.path, body)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # keep the test output quiet
            return

    server = ThreadingHTTPServer((HOST, 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="telemetry-capture", daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def sentry_capture() -> Iterator[SentryCapture]:
    recorder = _Recorder()
    holder: list[SentryCapture] = []

    def handle(path: str, body: bytes) -> tuple[int, bytes, str]:
        if not path.rstrip("/").endswith("/envelope"):
            return 404, b"{}", "application/json"
        items = parse_envelope(body)
        with recorder.lock:
            holder[0].items.extend(items)
        recorder.record(body)
        return 200, b"{}", "application/json"

    with _serve(handle, recorder) as port:
        holder.append(SentryCapture(port=port, recorder=recorder))
        yield holder[0]


@contextmanager
def otlp_capture() -> Iterator[OtlpCapture]:
    recorder = _Recorder()
    holder: list[OtlpCapture] = []

    def handle(path: str, body: bytes) -> tuple[int, bytes, str]:
        if path != "/v1/traces":
            return 404, b"", "text/plain"
        spans = decode_traces(body)
        with recorder.lock:
            holder[0].spans.extend(spans)
        recorder.record(body)
        return 200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf"

    with _serve(handle, recorder) as port:
        holder.append(OtlpCapture(port=port, recorder=recorder))
        yield holder[0]
