"""Distributed tracing with OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT is set (OTLP over HTTP).

One server span per request, named `METHOD /route/{template}`, with child spans for SQL statements and
Redis commands. Probes and metrics are not traced. No personal data leaves in a span: SQL is recorded as
its text with placeholders (never the bound parameters), Redis commands as `GET ?`, and the exporter
drops client addresses, user agents and query strings before anything is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import get_meter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, TraceState
from opentelemetry.util.types import Attributes

from kindred.observability.logging import get_logger
from kindred.observability.telemetry import package_version, scrub_text
from kindred.settings import Settings

log = get_logger(__name__)

FLUSH_TIMEOUT_MS = 2000
# Probes and scrapes: frequent, uninteresting, and they would drown the requests that matter. The
# instrumentation matches these against `scheme://host/path` (no query string).
EXCLUDED_URLS = r"^[a-z]+://[^/]+/(?:health|live|ready|metrics)/?$"

# Attributes that would identify a person or their device: client address and port, user agent.
_DROPPED_ATTRIBUTES = frozenset(
    {
        "client.address",
        "client.port",
        "network.peer.address",
        "network.peer.port",
        "net.peer.ip",
        "net.peer.port",
        "net.sock.peer.addr",
        "net.sock.peer.port",
        "http.client_ip",
        "http.user_agent",
        "user_agent.original",
        "url.query",
    }
)
# URLs and targets are kept without their query string (signed-URL signatures, cursors, filters).
_URL_ATTRIBUTES = frozenset({"http.url", "url.full", "http.target"})
# Free text that could quote a value: statements (placeholders only, scrubbed anyway), exception texts.
_TEXT_ATTRIBUTES = frozenset({"db.statement", "db.query.text", "exception.message", "exception.stacktrace"})


def _clean_attributes(attributes: Any) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in _DROPPED_ATTRIBUTES or key.startswith(("http.request.header.", "http.response.header.")):
            continue
        if key in _URL_ATTRIBUTES and isinstance(value, str):
            value = value.split("?", 1)[0]
        elif key in _TEXT_ATTRIBUTES and isinstance(value, str):
            value = scrub_text(value)
        cleaned[key] = value
    return cleaned


def scrub_span(span: ReadableSpan) -> ReadableSpan:
    """A copy of `span` without personal data (the SDK's spans are read-only once ended)."""
    status = span.status
    if status.description:
        status = Status(status.status_code, scrub_text(status.description))
    events = [Event(event.name, _clean_attributes(event.attributes), event.timestamp) for event in span.events]
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_clean_attributes(span.attributes),
        events=events,
        links=span.links,
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class PrivacyFilteringExporter(SpanExporter):
    """Wraps the real exporter: every span is scrubbed on its way out."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export([scrub_span(span) for span in spans])

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class RequestRootSampler(Sampler):
    """Decides for spans without a parent: a trace starts with a request (sampled at the configured
    rate), never with a lone database or Redis call. Calls outside a traced request — probes, which are
    not traced, and background work — would otherwise each become a one-span trace of noise."""

    def __init__(self, rate: float) -> None:
        self.ratio = TraceIdRatioBased(rate)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if kind is SpanKind.CLIENT:
            return SamplingResult(Decision.DROP)
        return self.ratio.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return f"RequestRootSampler{{{self.ratio.get_description()}}}"


def traces_endpoint(base: str) -> str:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the collector's base URL; traces go to `<base>/v1/traces` (spec)."""
    return base.rstrip("/") + "/v1/traces"


def build_tracer_provider(settings: Settings, exporter: SpanExporter | None = None) -> TracerProvider:
    environment = settings.environment.value
    resource = Resource.create(
        {
            SERVICE_NAME: settings.otel_service_name,
            SERVICE_VERSION: settings.release or package_version(),
            # Both spellings: older backends (and Datadog's `env`) read the first, current semconv the second.
            "deployment.environment": environment,
            "deployment.environment.name": environment,
        }
    )
    # The app shuts its provider down in the lifespan; no atexit hook per app (tests build many).
    # A child follows its parent (also a caller's `traceparent`); a new trace starts only at a request.
    sampler = ParentBased(root=RequestRootSampler(settings.otel_traces_sample_rate))
    provider = TracerProvider(resource=resource, sampler=sampler, shutdown_on_exit=False)
    assert settings.otel_exporter_otlp_endpoint is not None
    inner = exporter or OTLPSpanExporter(endpoint=traces_endpoint(settings.otel_exporter_otlp_endpoint))
    provider.add_span_processor(BatchSpanProcessor(PrivacyFilteringExporter(inner)))
    return provider


def init_tracing(app: FastAPI, settings: Settings) -> TracerProvider | None:
    """Trace this app's requests when OTEL_EXPORTER_OTLP_ENDPOINT is set. The provider is the app's own
    (not the process-global one), so every app flushes and shuts down its own spans in its lifespan."""
    app.state.tracer_provider = None
    if not settings.otel_exporter_otlp_endpoint:
        return None
    provider = build_tracer_provider(settings)
    FastAPIInstrumentor.instrument_app(
        app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )
    app.state.tracer_provider = provider

    async def shutdown() -> None:
        # Blocking calls (the last export over HTTP): off the event loop.
        await asyncio.to_thread(provider.force_flush, FLUSH_TIMEOUT_MS)
        await asyncio.to_thread(provider.shutdown)

    app.state.flush_on_shutdown.append(shutdown)
    log.info("tracing.enabled", service=settings.otel_service_name, environment=settings.environment.value)
    return provider


def instrument_backends(app: FastAPI) -> None:
    """Child spans for the database and Redis; call in the lifespan, once the engine and cache exist."""
    provider: TracerProvider | None = getattr(app.state, "tracer_provider", None)
    if provider is None:
        return
    # Per engine, not SQLAlchemyInstrumentor: that one also patches create_engine for the whole process.
    EngineTracer(
        provider.get_tracer("opentelemetry.instrumentation.sqlalchemy"),
        app.state.db.engine.sync_engine,
        get_meter("kindred.db").create_up_down_counter("db.client.connections.usage", unit="connections"),
    )
    # The cache's client and the rate limiter's: two redis-py clients over one connection pool.
    for owner in (app.state.cache, app.state.limiter):
        redis_client = getattr(owner, "redis_client", None)
        if redis_client is not None:
            RedisInstrumentor.instrument_client(redis_client, tracer_provider=provider)
