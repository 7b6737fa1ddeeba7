"""Graceful shutdown of the real `kindred serve` process, phase by phase (docs/operations.md, "Shutdown").

SHUTDOWN_DRAIN_DELAY=1.5 and SHUTDOWN_TIMEOUT=3 here. The slow in-flight request is a real one held open by
a slow client: a sign-in whose JSON body the test sends in two parts, the second after the drain (or never).
The server has read the headers and is running the endpoint, which waits for the rest of the body — in
flight as far as the server can tell, as a sign-in over a slow mobile link is. No debug route is needed.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.e2e.test_server import PASSWORD, Server, ServerFactory, sign_up
from tests.e2e.test_server import servers as servers  # the module-scoped fixture, one factory per module
from tests.support import leaks

pytestmark = pytest.mark.e2e

DRAIN = 1.5
TIMEOUT = 3.0
MARGIN = 4.0  # lifespan shutdown, interpreter teardown (~0.5 s here, more on a loaded machine)


# ---------------------------------------------------------------------------------------------- helpers


@dataclass
class SlowRequest:
    """`POST /api/v1/auth/login` on its own connection, its body sent in two parts."""

    sock: socket.socket
    rest: bytes

    @classmethod
    def start(cls, server: Server, email: str, password: str) -> SlowRequest:
        body = json.dumps({"email": email, "password": password}).encode()
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        head = (
            "POST /api/v1/auth/login HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{server.port}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:10])
        return cls(sock=sock, rest=body[10:])

    def finish(self) -> None:
        self.sock.sendall(self.rest)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        answer = http.client.HTTPResponse(self.sock)
        answer.begin()
        try:
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            answer.close()
            self.sock.close()


def _start(servers: ServerFactory, name: str) -> Server:
    return servers.start(name, SHUTDOWN_DRAIN_DELAY=str(DRAIN), SHUTDOWN_TIMEOUT=str(TIMEOUT))


def _idle_keep_alive_connection(server: Server) -> socket.socket:
    """A connection that has had its response and is kept alive, idle."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    answer.read()
    assert answer.status == 200 and not answer.will_close
    return sock


def _accepts_connections(server: Server) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=0.5):
            return True
    except ConnectionRefusedError:
        return False


def _until(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    """Poll `condition`; the monotonic time it first held. AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)
    return time.monotonic()


def _wait_exit(server: Server, timeout: float) -> int:
    try:
        code = server.process.wait(timeout=timeout)
    except Exception:
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=5)
        raise AssertionError(f"server still running {timeout}s later:\n{server.text()[-3000:]}") from None
    server.returncode = code
    return code


def _events(server: Server) -> list[str]:
    return [str(record.get("event")) for record in server.log_records()]


def _record(server: Server, event: str) -> dict[str, Any]:
    found = [record for record in server.log_records() if record.get("event") == event]
    assert len(found) == 1, f"{event}: {len(found)} records"
    return found[0]


def _in_order(events: list[str], *expected: str) -> None:
    positions = [events.index(event) if event in events else -1 for event in expected]
    assert -1 not in positions, f"missing phase(s) {[e for e, p in zip(expected, positions, strict=True) if p < 0]}"
    assert positions == sorted(positions), f"phases out of order: {[e for e in events if e in expected]}"


def _timeline(server: Server) -> str:
    """The shutdown's own log lines, for assertion messages: what happened when."""
    return "\n".join(
        f"{record.get('timestamp')} {record.get('event')} "
        + " ".join(f"{k}={v}" for k, v in record.items() if k not in {"timestamp", "event", "level", "logger"})
        for record in server.log_records()
        if str(record.get("logger")) in {"kindred.server", "kindred.app", "kindred.cli", "kindred.realtime.registry"}
        or record.get("event") == "http.request"
    )


def _clean_output(server: Server) -> None:
    assert "Traceback" not in server.text()
    found = leaks.scan(server.log_text())
    assert not found, f"personal data or secrets in the server's JSON log: {found[:5]}"


@contextlib.contextmanager
def _signed_in_socket(server: Server, access_token: str) -> Iterator[ClientConnection]:
    with connect(f"ws://127.0.0.1:{server.port}/api/v1/ws", open_timeout=5, close_timeout=2) as ws:
        ws.send(json.dumps({"type": "auth", "token": access_token}))
        assert json.loads(ws.recv(timeout=5))["type"] == "auth.ok"
        yield ws


def _ping(ws: ClientConnection) -> None:
    ws.send(json.dumps({"type": "ping"}))
    while (frame := json.loads(ws.recv(timeout=2)))["type"] != "pong":
        assert frame["type"] == "presence", frame


def _close_code(ws: ClientConnection) -> int | None:
    try:
        while True:
            ws.recv(timeout=5)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


# ---------------------------------------------------------------------------------------------- tests


def test_sigterm_drains_then_stops_accepting_finishes_in_flight_closes_sockets_and_exits_0(
    servers: ServerFactory,
) -> None:
    server = _start(servers, "phases")
    with httpx.Client(base_url=server.base_url, timeout=5) as client:
        account = sign_up(client, server)
    with _signed_in_socket(server, account.access_token) as ws:
        slow = SlowRequest.start(server, account.email, PASSWORD)
        idle = _idle_keep_alive_connection(server)
        time.sleep(0.1)  # the server has the headers and is running the endpoint

        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)

        # Phase 1, at once: not ready (load balancers stop routing here)...
        ready = httpx.get(f"{server.base_url}/ready", timeout=1)
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "reason": "draining"}
        assert time.monotonic() - signalled < 0.2
        # ...while everything else is served as usual, on new connections and on an open socket.
        time.sleep(max(0.0, signalled + 0.9 - time.monotonic()))
        health = httpx.get(f"{server.base_url}/health", timeout=1)  # a new connection
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert httpx.get(f"{server.base_url}/live", timeout=1).status_code == 200
        _ping(ws)
        assert time.monotonic() - signalled < DRAIN, "the drain phase ended before these ran"

        # Phase 2: after the drain delay the listening socket is closed.
        refused_at = _until(lambda: not _accepts_connections(server), timeout=DRAIN + 1.5)
        assert refused_at - signalled >= DRAIN - 0.1, _timeline(server)
        idle.settimeout(2)
        assert idle.recv(1) == b"", "an idle keep-alive connection stays open after the server stopped accepting"
        idle.close()

        # The request in flight since before the signal, still running now, completes normally.
        time.sleep(0.5)
        slow.finish()
        status, headers, body = slow.response()
        assert status == 200, body[:300]
        assert json.loads(body)["token_type"] == "bearer"
        leaks.canary(json.loads(body)["access_token"])
        assert headers.get("connection") == "close"  # no more requests on a closing server's connection

        # Phase 3: the socket was told "going away".
        assert _close_code(ws) == 1001

    code = _wait_exit(server, timeout=TIMEOUT + MARGIN)
    assert code == 0, f"`kindred serve` exited with {code} after SIGTERM"
    # Every request had finished: the shutdown did not sit out SHUTDOWN_TIMEOUT.
    assert _record(server, "server.requests_finished")["waited_ms"] < TIMEOUT * 1000 - 500, _timeline(server)

    _in_order(
        _events(server),
        "server.draining",
        "server.stopped_accepting",
        "ws.closed_all",
        "server.requests_finished",
        "app.stopped",
        "server.stopped",
    )
    assert _record(server, "server.draining")["signal"] == "SIGTERM"
    assert _record(server, "ws.closed_all")["code"] == 1001
    assert "server.requests_cancelled" not in _events(server)
    logins = [r for r in server.log_records() if r.get("route") == "/api/v1/auth/login"]
    assert [r["status"] for r in logins] == [200]
    _clean_output(server)


def test_a_request_still_running_after_shutdown_timeout_is_cancelled_and_the_exit_is_still_0(
    servers: ServerFactory,
) -> None:
    server = _start(servers, "cut-off")
    slow = SlowRequest.start(server, "nobody@example.com", PASSWORD)  # its body never completes
    time.sleep(0.1)

    signalled = time.monotonic()
    os.kill(server.process.pid, signal.SIGTERM)
    code = _wait_exit(server, timeout=DRAIN + TIMEOUT + MARGIN)
    stopped_in = time.monotonic() - signalled

    assert code == 0, f"`kindred serve` exited with {code} after SIGTERM"
    assert DRAIN + TIMEOUT - 0.1 <= stopped_in < DRAIN + TIMEOUT + MARGIN, stopped_in
    # Cancelled before its response started: uvicorn answers a bare 500 and closes the connection.
    status, headers, _ = slow.response()
    assert status == 500
    assert headers.get("connection") == "close"

    _in_order(
        _events(server),
        "server.draining",
        "server.stopped_accepting",
        "server.requests_cancelled",
        "app.stopped",
        "server.stopped",
    )
    cancelled = _record(server, "server.requests_cancelled")
    assert cancelled["count"] == 1 and cancelled["reason"] == "shutdown_timeout"
    assert cancelled["waited_ms"] >= TIMEOUT * 1000 - 100
    assert "server.requests_finished" not in _events(server)
    _clean_output(server)  # the cancellation is one log line, not uvicorn's traceback


def test_a_second_signal_during_the_drain_skips_the_rest_of_it_and_still_exits_0(servers: ServerFactory) -> None:
    # Ctrl+C twice; repeated SIGTERMs are the next test's.
    signum = signal.SIGINT
    server = _start(servers, "twice")
    slow = SlowRequest.start(server, "nobody@example.com", PASSWORD)
    time.sleep(0.1)

    signalled = time.monotonic()
    os.kill(server.process.pid, signum)
    # The first signal has been handled (draining) before the second is sent.
    _until(lambda: httpx.get(f"{server.base_url}/ready", timeout=1).status_code == 503, timeout=1)
    os.kill(server.process.pid, signum)

    # The rest of the drain is skipped: the listening socket closes now, not DRAIN after the first signal.
    refused_at = _until(lambda: not _accepts_connections(server), timeout=DRAIN)
    assert refused_at - signalled < DRAIN - 0.2, _timeline(server)
    # The request in flight still gets its SHUTDOWN_TIMEOUT: it completes (a refused sign-in), not cancelled.
    time.sleep(0.3)
    slow.finish()
    status, _, body = slow.response()
    assert status == 401, body[:300]
    assert json.loads(body)["error"]["code"] == "invalid_credentials"

    code = _wait_exit(server, timeout=TIMEOUT + MARGIN)
    assert code == 0, f"`kindred serve` exited with {code} after two {signum.name}s"
    _in_order(
        _events(server),
        "server.draining",
        "server.drain_cut_short",
        "server.stopped_accepting",
        "server.requests_finished",
        "app.stopped",
        "server.stopped",
    )
    assert _record(server, "server.draining")["signal"] == signum.name
    _clean_output(server)


def test_a_further_signal_while_requests_finish_cancels_them_at_once_and_still_exits_0(
    servers: ServerFactory,
) -> None:
    server = _start(servers, "thrice")
    slow = SlowRequest.start(server, "nobody@example.com", PASSWORD)  # its body never completes
    time.sleep(0.1)

    os.kill(server.process.pid, signal.SIGTERM)
    _until(lambda: httpx.get(f"{server.base_url}/ready", timeout=1).status_code == 503, timeout=1)
    os.kill(server.process.pid, signal.SIGTERM)  # ends the drain
    _until(lambda: not _accepts_connections(server), timeout=DRAIN)
    time.sleep(0.3)  # the server is now waiting for the request
    os.kill(server.process.pid, signal.SIGTERM)  # ends that wait

    code = _wait_exit(server, timeout=DRAIN + TIMEOUT + MARGIN)
    assert code == 0, f"`kindred serve` exited with {code} after three SIGTERMs"
    cancelled = _record(server, "server.requests_cancelled")
    assert cancelled["count"] == 1 and cancelled["reason"] == "repeated_signal"
    assert cancelled["waited_ms"] < TIMEOUT * 1000 - 1000, _timeline(server)
    assert slow.response()[0] == 500
    _in_order(
        _events(server),
        "server.draining",
        "server.drain_cut_short",
        "server.stopped_accepting",
        "server.requests_cancelled",
        "app.stopped",
        "server.stopped",
    )
    _clean_output(server)
