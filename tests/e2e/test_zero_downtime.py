"""Zero-downtime shutdown: SIGTERM in the middle of continuous load from another process (issue 5).

A real `kindred serve` (SHUTDOWN_DRAIN_DELAY=1.5, SHUTDOWN_TIMEOUT=4) is kept busy by a load generator, this
module run as `python -m tests.e2e.test_zero_downtime` in its own process: clients on keep-alive connections,
clients on a fresh connection per request, both on cheap endpoints, and clients whose sign-in takes about two
seconds (its JSON body sent in two parts, as in test_shutdown.py; the account exists, so 200 is its answer).
The test sends SIGTERM while all of them run and watches `/ready` and `/health` through the drain. Each client
goes on until a new connection is refused, then stops; the generator writes every request's outcome to JSON.

What "completes" means: an HTTP response with the status that request always gets (200 here), never a 5xx,
and never a reset, an early close or a timeout once the connection was made. A refused connection is not a
failure: the server never had that request, and a balancer or client retries it elsewhere. Refusals may only
begin once the drain is over.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_server import PASSWORD, Server, ServerFactory, _clean_env, sign_up
from tests.e2e.test_server import servers as servers  # the module-scoped fixture, one factory per module

pytestmark = pytest.mark.e2e

DRAIN = 1.5
TIMEOUT = 4.0
MARGIN = 5.0  # lifespan shutdown and interpreter exit, on a loaded 2-core machine
SLOW = 2.0  # seconds between the two parts of a slow sign-in's body
LOAD_CAP = 30.0  # the generator stops after this long whatever happens (then the test fails)
ROOT = Path(__file__).resolve().parents[2]

# The load: (name, kind) per client thread. The cheap paths are answered 200 at every phase of the drain.
CHEAP = ("/health", "/api/v1/auth/csrf", "/openapi.json", "/.well-known/jwks.json")
CLIENTS = (
    ("keep-alive-1", "keep-alive"),
    ("keep-alive-2", "keep-alive"),
    ("fresh-1", "fresh"),
    ("fresh-2", "fresh"),
    ("slow-1", "slow"),
    ("slow-2", "slow"),
    ("slow-3", "slow"),
)
PAUSE = 0.01  # between a client's requests: continuous load that leaves the server CPU on two cores


# ---------------------------------------------------------------------------------------------- the load generator


@dataclass
class Outcome:
    """One request as the client saw it. Times are time.monotonic(), one clock for every process on Linux."""

    client: str
    kind: str
    path: str
    request_id: str
    start: float
    end: float = 0.0
    status: int | None = None
    refused: bool = False  # the connection was never made: not accepted, not a failure
    error: str | None = None  # anything else that went wrong: a failure
    new_connection: bool | None = None
    request_sent: bool = False
    connection_close: bool = False  # the response said `Connection: close`
    body_done: float | None = None  # a slow sign-in: when the rest of its body was sent


@dataclass
class Load:
    port: int
    email: str
    password: str
    began: float = field(default_factory=time.monotonic)
    outcomes: list[Outcome] = field(default_factory=list)
    ended: dict[str, str] = field(default_factory=dict)  # client -> why it stopped
    answered: set[str] = field(default_factory=set)  # clients that have had a response (or sent a slow head)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def over(self) -> bool:
        return time.monotonic() - self.began > LOAD_CAP

    def run_client(self, name: str, kind: str) -> None:
        try:
            if kind == "slow":
                time.sleep((int(name[-1]) - 1) * SLOW / 3)  # staggered, so that some are always mid-request
                self._slow_client(name)
            else:
                self._cheap_client(name, kind)
        except BaseException as exc:  # a bug in the generator itself, reported as such
            with self.lock:
                self.ended[name] = f"crashed: {exc!r}"

    def _record(self, outcome: Outcome) -> None:
        outcome.end = time.monotonic()
        with self.lock:
            self.outcomes.append(outcome)
            if outcome.status is not None or outcome.request_sent:
                self.answered.add(outcome.client)

    def _cheap_client(self, name: str, kind: str) -> None:
        # `Connection: close` asks for a fresh connection per request; the keep-alive client reuses its one.
        headers = {"Connection": "close"} if kind == "fresh" else {}
        with httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(10, connect=3), headers=headers) as client:
            n = 0
            while not self.over():
                n += 1
                path = CHEAP[n % len(CHEAP)]
                outcome = Outcome(name, kind, path, f"zd-{name}-{n}", time.monotonic())
                events: list[str] = []
                try:
                    response = client.get(
                        path,
                        headers={"X-Request-ID": outcome.request_id},
                        extensions={"trace": lambda event, _info, events=events: events.append(event)},
                    )
                    outcome.status = response.status_code
                    outcome.connection_close = response.headers.get("connection", "").lower() == "close"
                except httpx.ConnectError as exc:
                    outcome.refused = True
                    outcome.error = f"{type(exc).__name__}: {exc}"
                except httpx.HTTPError as exc:
                    outcome.error = f"{type(exc).__name__}: {exc!r} (cause {exc.__cause__!r})"
                outcome.new_connection = "connection.connect_tcp.started" in events
                outcome.request_sent = "http11.send_request_headers.complete" in events
                self._record(outcome)
                if outcome.refused:
                    self.ended[name] = "refused"
                    return
                time.sleep(PAUSE)
        self.ended[name] = "cap"

    def _slow_client(self, name: str) -> None:
        body = json.dumps({"email": self.email, "password": self.password}).encode()
        n = 0
        while not self.over():
            n += 1
            outcome = Outcome(name, "slow", "/api/v1/auth/login", f"zd-{name}-{n}", time.monotonic())
            outcome.new_connection = True
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
            except OSError as exc:
                outcome.refused = True
                outcome.error = f"{type(exc).__name__}: {exc}"
                self._record(outcome)
                self.ended[name] = "refused"
                return
            try:
                head = (
                    "POST /api/v1/auth/login HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{self.port}\r\n"
                    f"X-Request-ID: {outcome.request_id}\r\n"
                    "Content-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode()
                sock.sendall(head + body[:10])
                outcome.request_sent = True
                with self.lock:
                    self.answered.add(name)
                time.sleep(SLOW)
                sock.sendall(body[10:])
                outcome.body_done = time.monotonic()
                answer = http.client.HTTPResponse(sock)
                answer.begin()
                answer.read()
                outcome.status = answer.status
                outcome.connection_close = (answer.getheader("connection") or "").lower() == "close"
                answer.close()
            except (OSError, http.client.HTTPException) as exc:
                outcome.error = f"{type(exc).__name__}: {exc!r}"
            finally:
                sock.close()
            self._record(outcome)
            time.sleep(PAUSE)
        self.ended[name] = "cap"


def generate_load(port: int, email: str, password: str, results: Path) -> None:
    """Run every client until each has had a connection refused (or LOAD_CAP); write the outcomes."""
    load = Load(port=port, email=email, password=password)
    threads = [threading.Thread(target=load.run_client, args=client, name=client[0]) for client in CLIENTS]
    for thread in threads:
        thread.start()
    while len(load.answered) < len(CLIENTS) and not load.over():
        time.sleep(0.01)
    print("running", flush=True)  # every client is busy: the test may send SIGTERM whenever it likes
    for thread in threads:
        thread.join(timeout=LOAD_CAP + 15)
    with load.lock:
        document = {
            "began": load.began,
            "ended": dict(load.ended),
            "outcomes": [asdict(outcome) for outcome in load.outcomes],
        }
    results.write_text(json.dumps(document), encoding="utf-8")


# ---------------------------------------------------------------------------------------------- helpers


def _start_load(server: Server, email: str, results: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.test_zero_downtime", str(server.port), email, PASSWORD, str(results)],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "running" once every client is busy (or "" if it exited)
    if line.strip() != "running":
        _stop(process)
        raise AssertionError(f"the load generator did not start: {line}{process.stdout.read()}")
    return process


def _stop(process: subprocess.Popen[Any]) -> None:
    """Our own child, by its PID."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@dataclass
class Probes:
    """What the test's own requests saw from the signal until a new connection was refused."""

    ready: list[tuple[float, int, Any]] = field(default_factory=list)
    health: list[tuple[float, int]] = field(default_factory=list)
    refused_at: float | None = None  # when the refusal came back
    errors: list[str] = field(default_factory=list)


def _probe_until_refused(server: Server, deadline: float) -> Probes:
    """`/ready` and `/health`, each on a new connection, every 50 ms until a connection is refused."""
    probes = Probes()
    while time.monotonic() < deadline:
        for path in ("/ready", "/health"):
            sent = time.monotonic()
            try:
                response = httpx.get(f"{server.base_url}{path}", timeout=httpx.Timeout(5, connect=2))
            except httpx.ConnectError:
                probes.refused_at = time.monotonic()
                return probes
            except httpx.HTTPError as exc:
                probes.errors.append(f"{path} at +{sent:.3f}: {type(exc).__name__}: {exc!r}")
                continue
            if path == "/ready":
                probes.ready.append((sent, response.status_code, response.json()))
            else:
                probes.health.append((sent, response.status_code))
        time.sleep(0.05)
    return probes


def _wait_exit(server: Server, by: float) -> int:
    try:
        code = server.process.wait(timeout=max(0.1, by - time.monotonic()))
    except subprocess.TimeoutExpired:
        _stop(server.process)
        raise AssertionError(f"server still running {DRAIN + TIMEOUT + MARGIN}s after SIGTERM") from None
    server.returncode = code
    return code


def _timeline(server: Server) -> str:
    return "\n".join(
        f"  {record.get('timestamp')} {record.get('event')} "
        + " ".join(f"{k}={v}" for k, v in record.items() if k not in {"timestamp", "event", "level", "logger"})
        for record in server.log_records()
        if str(record.get("event", "")).startswith(("server.", "app."))
    )


def _describe(outcomes: list[dict[str, Any]], signalled: float, server: Server) -> str:
    """One line per request, times from the signal, with whether the app ever saw it (its access-log line)."""
    logged = {r.get("request_id"): r.get("status") for r in server.log_records() if r.get("event") == "http.request"}

    def seen(o: dict[str, Any]) -> str:
        if o["path"] == "/health":
            return "not logged when 200"
        return f"logged {logged[o['request_id']]}" if o["request_id"] in logged else "never logged"

    return "\n".join(
        f"  {o['client']} {'POST' if o['kind'] == 'slow' else 'GET'} {o['path']} {o['request_id']}: "
        f"+{o['start'] - signalled:.3f}s.."
        f"+{o['end'] - signalled:.3f}s new_connection={o['new_connection']} sent={o['request_sent']} "
        f"status={o['status']} error={o['error']} server: {seen(o)}"
        for o in outcomes[:20]
    )


# ---------------------------------------------------------------------------------------------- the test


def test_sigterm_under_continuous_load_loses_no_accepted_request(servers: ServerFactory, tmp_path: Path) -> None:
    server = servers.start("zero-downtime", SHUTDOWN_DRAIN_DELAY=str(DRAIN), SHUTDOWN_TIMEOUT=str(TIMEOUT))
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        email = sign_up(client, server).email  # the slow sign-ins' account: their normal answer is 200
    results = tmp_path / "load.json"
    load = _start_load(server, email, results)
    try:
        time.sleep(1.0)  # load before the signal
        signalled = time.monotonic()
        os.kill(server.process.pid, signal.SIGTERM)
        budget = signalled + DRAIN + TIMEOUT + MARGIN
        probes = _probe_until_refused(server, deadline=budget)
        code = _wait_exit(server, by=budget)
        exited_in = time.monotonic() - signalled
        load.wait(timeout=LOAD_CAP)
    finally:
        _stop(load)
    assert load.stdout is not None
    with load.stdout:
        assert load.returncode == 0, f"load generator exited {load.returncode}: {load.stdout.read()[-3000:]}"
    document = json.loads(results.read_text(encoding="utf-8"))
    outcomes: list[dict[str, Any]] = document["outcomes"]

    # ---- counts by phase: before the signal, in the drain, once a new connection had been refused
    refusals = [o["end"] for o in outcomes if o["refused"]] + ([probes.refused_at] if probes.refused_at else [])
    assert refusals, f"no connection was ever refused: {document['ended']}"
    closed_by = min(refusals)  # the listener had closed by then
    phases: Counter[str] = Counter()
    for o in outcomes:
        phase = "before" if o["start"] < signalled else "after" if o["refused"] or o["start"] >= closed_by else "drain"
        phases[f"{phase} {'refused' if o['refused'] else 'ok' if o['status'] == 200 else 'FAILED'}"] += 1
    print(
        f"\nzero-downtime: {len(outcomes)} requests from the load generator ("
        + ", ".join(f"{key} {phases[key]}" for key in sorted(phases))
        + f"); listener closed by +{closed_by - signalled:.2f}s; /ready 503 x{len(probes.ready)} and "
        f"/health 200 x{len(probes.health)} in the drain; exit {code} at +{exited_in:.2f}s"
    )

    # ---- every accepted request (all but refused connections) completed with its normal answer
    failed = [o for o in outcomes if not o["refused"] and o["status"] != 200]
    assert not failed, (
        f"{len(failed)} accepted request(s) did not complete (times from SIGTERM, listener closed by "
        f"+{closed_by - signalled:.3f}s):\n{_describe(failed, signalled, server)}\n{_timeline(server)}"
    )
    assert not probes.errors, f"the test's own probes failed: {probes.errors}\n{_timeline(server)}"
    # Every client ran until a connection was refused: the load went on through the whole drain...
    assert set(document["ended"].values()) == {"refused"}, document["ended"]
    # ...and was served: refusals only once the drain was over.
    assert closed_by - signalled >= DRAIN, f"a connection was refused at +{closed_by - signalled:.3f}s"
    assert phases["before ok"] >= 20 and phases["drain ok"] >= 20, phases

    # ---- the slow sign-ins in flight at the signal, and across the listener's close, completed with 200
    slow = [o for o in outcomes if o["kind"] == "slow" and not o["refused"]]
    at_signal = [o for o in slow if o["start"] < signalled < o["end"]]
    assert len(at_signal) >= 2, f"only {len(at_signal)} slow sign-in(s) in flight at SIGTERM"
    # Started while the server still accepted, answered only after it stopped (the answer needs the whole body).
    across = [o for o in slow if o["start"] < signalled + DRAIN and o["body_done"] > closed_by]
    assert across, "no slow sign-in was in flight when the listener closed"
    assert all(o["connection_close"] for o in across), _describe(across, signalled, server)

    # ---- the probes: not ready from the signal on, healthy until the listener closed
    assert probes.refused_at is not None, "the test's own probes were never refused"
    assert probes.ready and probes.health, probes
    assert all(status == 503 and body == {"ready": False, "reason": "draining"} for _, status, body in probes.ready)
    assert all(status == 200 for _, status in probes.health), probes.health
    assert probes.ready[0][0] - signalled < 0.5, "no /ready answer early in the drain"

    # ---- the server: no request cancelled, nothing logged as failed, exit 0 within the budget
    assert code == 0, f"`kindred serve` exited with {code} after SIGTERM\n{_timeline(server)}"
    assert exited_in < DRAIN + TIMEOUT + MARGIN
    events = [record.get("event") for record in server.log_records()]
    assert "server.requests_finished" in events and "server.requests_cancelled" not in events, _timeline(server)
    logged = [r for r in server.log_records() if r.get("event") == "http.request"]
    server_errors = [r for r in logged if int(r["status"]) >= 500 and r.get("route") != "/ready"]  # 503: draining
    assert not server_errors, server_errors[:5]
    by_id = {o["request_id"]: o for o in outcomes}
    mismatched = [
        (r["request_id"], r["status"], by_id[r["request_id"]]["status"])
        for r in logged
        if r.get("request_id") in by_id and by_id[r["request_id"]]["status"] != r["status"]
    ]
    assert not mismatched, f"the server logged an answer the client did not get: {mismatched[:5]}"
    assert "Traceback" not in server.text()


if __name__ == "__main__":
    port, account, password, out = sys.argv[1:5]
    with contextlib.suppress(KeyboardInterrupt):
        generate_load(int(port), account, password, Path(out))
