"""DogStatsD: with DD_AGENT_HOST set, the same metrics go out as datagrams to a real UDP socket on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi import FastAPI

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.ops.accounts import set_tier
from kindred.settings import Settings
from tests.support.factories import verified_account


@dataclass(frozen=True)
class Datagram:
    name: str
    value: float
    kind: str  # c, g, h, d, ms, s
    tags: frozenset[str]


class Agent:
    """A stand-in for the Datadog agent: a UDP socket that collects and parses DogStatsD lines."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = int(self.sock.getsockname()[1])
        self.raw: list[str] = []
        self.received: list[Datagram] = []

    def _drain(self) -> None:
        while True:
            try:
                payload = self.sock.recv(65535)
            except BlockingIOError:
                return
            for line in payload.decode().splitlines():
                self.raw.append(line)
                self.received.append(_parse(line))

    async def wait_for(self, predicate, timeout: float = 5.0) -> list[Datagram]:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            self._drain()
            found = [d for d in self.received if predicate(d)]
            if found:
                return found
            assert time.monotonic() < deadline, f"no matching datagram; got {self.raw[-20:]}"
            await asyncio.sleep(0.02)

    def close(self) -> None:
        self.sock.close()


def _parse(line: str) -> Datagram:
    # name:value|type[|@rate][|#tag,tag][|c:container][|T...]
    head, *fields = line.split("|")
    name, _, number = head.rpartition(":")
    tags: frozenset[str] = frozenset()
    for field in fields[1:]:
        if field.startswith("#"):
            tags = frozenset(field[1:].split(","))
    return Datagram(name=name, value=float(number), kind=fields[0], tags=tags)


@pytest.fixture
def agent() -> Iterator[Agent]:
    listener = Agent()
    yield listener
    listener.close()


@pytest.fixture
def settings_overrides(agent: Agent) -> dict[str, object]:
    return {"dd_agent_host": "127.0.0.1", "dd_dogstatsd_port": agent.port}


async def test_request_metrics_go_out_with_route_method_and_status_tags(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, agent: Agent
) -> None:
    account = await verified_account(client, mail)
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200
    counts = await agent.wait_for(lambda d: d.name == "kindred.http.requests" and "route:/api/v1/me" in d.tags)
    assert counts[0].kind == "c" and counts[0].value == 1
    assert {"route:/api/v1/me", "method:GET", "status:200"} <= counts[0].tags
    latency = await agent.wait_for(lambda d: d.name == "kindred.http.request.duration" and "route:/api/v1/me" in d.tags)
    assert latency[0].kind == "h" and 0 < latency[0].value < 5
    assert {"route:/api/v1/me", "method:GET"} <= latency[0].tags
    assert not any(t.startswith("status:") for t in latency[0].tags)


async def test_business_counters_go_out(client: httpx.AsyncClient, mail: MemoryEmailBackend, agent: Agent) -> None:
    await verified_account(client, mail)
    for stage in ("registered", "verified"):
        found = await agent.wait_for(lambda d, s=stage: d.name == "kindred.signups" and f"stage:{s}" in d.tags)
        assert found[0].kind == "c" and found[0].value == 1


async def test_gauges_and_event_loop_lag_are_pushed_periodically(
    client: httpx.AsyncClient, app: FastAPI, mail: MemoryEmailBackend, agent: Agent, settings: Settings
) -> None:
    metrics = app.state.metrics
    metrics.lag_interval, metrics.push_interval = 0.05, 0.0  # push on every sample instead of every 10 s
    account = await verified_account(client, mail)
    await client.get("/api/v1/me", headers=account.headers)
    for name in ("kindred.http.requests.in_flight", "kindred.db.pool.in_use", "kindred.db.pool.idle",
                 "kindred.db.pool.waiting", "kindred.cache.redis"):  # fmt: skip
        found = await agent.wait_for(lambda d, n=name: d.name == n)
        assert found[-1].kind == "g"
    redis = await agent.wait_for(lambda d: d.name == "kindred.cache.redis")
    assert redis[-1].value == (1 if settings.redis_url else 0)
    active = await agent.wait_for(lambda d: d.name == "kindred.active_users" and "window:5m" in d.tags and d.value == 1)
    assert active[-1].kind == "g"
    lag = await agent.wait_for(lambda d: d.name == "kindred.event_loop.lag")
    # A sane number of seconds, not a timing assertion: a loaded CI machine can starve the loop for a second.
    assert lag[0].kind == "h" and 0 <= lag[0].value < 30
    reads = await agent.wait_for(lambda d: d.name in {"kindred.cache.hits", "kindred.cache.misses"} and d.value > 0)
    assert reads[0].kind == "c"


async def test_no_personal_data_in_datagrams(client: httpx.AsyncClient, mail: MemoryEmailBackend, agent: Agent) -> None:
    account = await verified_account(client, mail)
    await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
    # The datadog client turns characters outside Datadog's tag alphabet (the braces) into "_".
    await agent.wait_for(lambda d: "route:/api/v1/users/_user_id_" in d.tags)
    text = "\n".join(agent.raw)
    assert account.id not in text and account.email not in text and "@" not in text


async def test_shutdown_flushes_what_is_buffered_and_closes_the_client(
    settings: Settings, mail: MemoryEmailBackend, agent: Agent
) -> None:
    app = create_app(settings, email_backend=mail)
    async with app.router.lifespan_context(app):
        metrics = app.state.metrics
        assert metrics.statsd is not None
        metrics.statsd._stop_flush_thread()  # no periodic flush: only the shutdown flush can send what follows
        metrics.count("match.created")
        await asyncio.sleep(0.5)
        agent._drain()
        assert not [d for d in agent.received if d.name == "kindred.matches"]  # still in the buffer
    assert metrics.statsd is None  # closed by flush_on_shutdown
    found = await agent.wait_for(lambda d: d.name == "kindred.matches", timeout=2)
    assert found[0].value == 1


async def test_operator_set_tier_reports_a_conversion_through_dogstatsd(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings, agent: Agent
) -> None:
    account = await verified_account(client, mail)
    # As `kindred set-tier` calls it: no app around, so no Prometheus; the agent still hears it.
    assert await set_tier(settings, email=account.email, tier="premium")
    found = await agent.wait_for(lambda d: d.name == "kindred.premium_conversions")
    assert found[0].kind == "c" and found[0].value == 1


async def test_without_an_agent_host_nothing_is_sent(settings: Settings, agent: Agent) -> None:
    app = create_app(settings.model_copy(update={"dd_agent_host": None}), email_backend=MemoryEmailBackend())
    async with app.router.lifespan_context(app):
        assert app.state.metrics.statsd is None
        app.state.metrics.count("match.created")
    await asyncio.sleep(0.4)
    agent._drain()
    assert not [d for d in agent.received if d.name == "kindred.matches"]
