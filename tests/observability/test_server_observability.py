"""The real `kindred serve` process: /metrics over HTTP, DogStatsD datagrams over UDP, LOG_FILE on disk."""

from __future__ import annotations

import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.test_server import ServerFactory, servers

__all__ = ["servers"]  # the fixture, imported for the test below

pytestmark = pytest.mark.e2e


def _udp_listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    return sock


def _datagram_lines(sock: socket.socket, until: float, wanted: str) -> list[str]:
    lines: list[str] = []
    while time.monotonic() < until and not any(line.startswith(wanted) for line in lines):
        try:
            lines.extend(sock.recv(65535).decode().splitlines())
        except TimeoutError:
            continue
    return lines


def test_a_real_server_exports_metrics_sends_dogstatsd_and_writes_its_log_file(
    servers: ServerFactory, tmp_path: Path
) -> None:
    agent = _udp_listener()
    log_file = tmp_path / "log" / "kindred.log"
    try:
        server = servers.start(
            "observability",
            LOG_FILE=str(log_file),
            DD_AGENT_HOST="127.0.0.1",
            DD_DOGSTATSD_PORT=str(agent.getsockname()[1]),
        )
        someone = uuid.uuid4()
        with httpx.Client(base_url=server.base_url, timeout=5) as http:
            assert http.get(f"/api/v1/users/{someone}").status_code == 401
            time.sleep(1.2)  # at least two event-loop lag samples (every 0.5 s)
            text = http.get("/metrics").text
        samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

        def value(name: str, **labels: str) -> float | None:
            found = [s.value for s in samples if s.name == name and labels.items() <= s.labels.items()]
            return found[0] if found else None

        assert value("kindred_http_requests_total", route="/api/v1/users/{user_id}", method="GET", status="401") == 1
        assert (value("kindred_event_loop_lag_seconds_count") or 0) >= 2
        assert (value("process_resident_memory_bytes") or 0) > 0
        assert (value("process_open_fds") or 0) > 0
        assert value("kindred_db_pool_capacity") is not None and value("kindred_cache_mode", mode="memory") is not None
        assert str(someone) not in text

        lines = _datagram_lines(agent, time.monotonic() + 5, "kindred.http.requests:")
        assert any(
            line.startswith("kindred.http.requests:1|c|")
            and "route:/api/v1/users/_user_id_" in line
            and "status:401" in line
            for line in lines
        ), lines
        assert server.stop() == 0
    finally:
        agent.close()

    records = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    events = [r["event"] for r in records]
    assert "app.started" in events and "app.stopped" in events
    access = [r for r in records if r["event"] == "http.request"]
    assert any(r["route"] == "/api/v1/users/{user_id}" and r["status"] == 401 and r["request_id"] for r in access)
    assert all(str(someone) not in json.dumps(r) for r in records)
