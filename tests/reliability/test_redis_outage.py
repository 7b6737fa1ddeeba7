"""Redis goes away (or never came): the API keeps answering from memory, says so, and returns to Redis.

The app talks to Redis through a TCP proxy we can cut, stall and restore. Behind the proxy is a private
redis-server started for this module, or the TEST_REDIS_URL server (touched only under this test's own
key prefix). The machine's shared Redis is never stopped.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis

from kindred.kit.email import MemoryEmailBackend
from kindred.settings import Settings
from tests.reliability.conftest import Running, StartApp, eventually, log_events, with_netloc
from tests.support.factories import verified_account
from tests.support.redis_server import shared_or_private_redis
from tests.support.tcpproxy import TcpProxy

# Without TEST_REDIS_URL this module starts its own redis-server: skipped (or failed under
# KINDRED_REQUIRE_ALL=1) where it is not installed.
pytestmark = [] if os.environ.get("TEST_REDIS_URL") else [pytest.mark.needs("redis-server")]

# The app's Redis breaker waits 5 s before a trial call. The tests shorten it on the live breaker so a
# recovery takes about a second; the mechanism (open → half-open → closed) is the same.
RESET_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def redis_target() -> Iterator[str]:
    with shared_or_private_redis() as url:
        yield url


@pytest.fixture
async def proxy(redis_target: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(redis_target)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as tcp_proxy:
        yield tcp_proxy


@pytest.fixture
async def redis_direct(redis_target: str) -> AsyncIterator[Redis]:
    """A client that bypasses the proxy: to see what really reached Redis, and to clean up."""
    client = Redis.from_url(redis_target, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def outage_settings(
    settings: Settings, proxy: TcpProxy, redis_target: str, redis_direct: Redis
) -> AsyncIterator[Settings]:
    prefix = f"kt-outage:{uuid.uuid4().hex[:12]}:"
    yield settings.model_copy(
        update={"redis_url": with_netloc(redis_target, "127.0.0.1", proxy.port), "cache_key_prefix": prefix}
    )
    keys = [key async for key in redis_direct.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await redis_direct.delete(*keys)


@pytest.fixture
def start_app(outage_settings: Settings, start_app: StartApp) -> StartApp:
    """The shared `start_app`, set up after (so torn down before) the proxy the apps talk through."""
    return start_app


async def _start(start_app: StartApp, settings: Settings) -> Running:
    running = await start_app(settings)
    running.app.state.cache.breaker.reset_timeout = RESET_TIMEOUT
    return running


async def _cache_check(client: httpx.AsyncClient) -> tuple[int, dict]:
    response = await client.get("/health/detailed")
    body = response.json()
    return response.status_code, body


async def _assert_degraded_to_memory(client: httpx.AsyncClient) -> None:
    status, body = await _cache_check(client)
    assert status == 200, body  # a cache outage is degraded service, never "down"
    assert body["status"] == "degraded", body
    assert body["checks"]["cache"]["mode"] == "memory", body
    assert body["checks"]["cache"]["status"] == "degraded", body
    assert body["checks"]["cache"]["configured"] == "redis", body
    assert body["checks"]["database"]["status"] == "ok", body


async def _wait_for_redis_mode(client: httpx.AsyncClient) -> None:
    async def back() -> bool:
        status, body = await _cache_check(client)
        return status == 200 and body["checks"]["cache"]["mode"] == "redis"

    await eventually(back, RESET_TIMEOUT + 5, "cache back in redis mode after the proxy was restored")
    _, body = await _cache_check(client)
    assert body["status"] == "ok", body
    assert body["checks"]["cache"]["status"] == "ok", body


async def _sign_up_and_read_me(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == account.email


async def test_a_redis_outage_falls_back_to_memory_and_recovers(
    start_app: StartApp,
    outage_settings: Settings,
    proxy: TcpProxy,
    redis_direct: Redis,
    mail: MemoryEmailBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = await _start(start_app, outage_settings)
    client = running.client

    status, body = await _cache_check(client)
    assert status == 200
    assert body["checks"]["cache"]["mode"] == "redis", body
    assert body["checks"]["cache"]["status"] == "ok", body
    before = await verified_account(client, mail)
    assert (await client.get("/api/v1/me", headers=before.headers)).status_code == 200
    prefix = outage_settings.cache_key_prefix
    assert [key async for key in redis_direct.scan_iter(match=f"{prefix}*")], "nothing reached Redis"

    await proxy.cut()

    started = time.monotonic()
    me = await client.get("/api/v1/me", headers=before.headers)  # a signed-in user carries on
    assert me.status_code == 200, me.text
    await _sign_up_and_read_me(client, mail)  # and a new one can register, verify, sign in
    assert time.monotonic() - started < 5, "requests waited on the dead Redis"
    await _assert_degraded_to_memory(client)
    assert (await client.get("/ready")).status_code == 200  # Redis is not a readiness dependency
    warnings = log_events(caplog, "cache.redis_unavailable")
    assert len(warnings) == 1, warnings  # one warning for the outage, not one per call

    proxy.restore()
    await _wait_for_redis_mode(client)
    assert log_events(caplog, "cache.redis_recovered")
    assert (await client.get("/api/v1/me", headers=before.headers)).status_code == 200
    await _sign_up_and_read_me(client, mail)


async def test_the_app_starts_and_serves_with_redis_down(
    start_app: StartApp, outage_settings: Settings, proxy: TcpProxy, mail: MemoryEmailBackend
) -> None:
    await proxy.cut()
    running = await _start(start_app, outage_settings)
    client = running.client

    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/live")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text
    await _sign_up_and_read_me(client, mail)
    await _assert_degraded_to_memory(client)

    proxy.restore()
    await _wait_for_redis_mode(client)
    await _sign_up_and_read_me(client, mail)


async def test_a_hung_redis_costs_a_socket_timeout_not_a_hung_request(
    start_app: StartApp, outage_settings: Settings, proxy: TcpProxy, mail: MemoryEmailBackend
) -> None:
    running = await _start(start_app, outage_settings)
    client = running.client
    account = await verified_account(client, mail)
    _, body = await _cache_check(client)
    assert body["checks"]["cache"]["mode"] == "redis", body

    cache = running.app.state.cache
    cache.breaker.reset_timeout = 30  # no half-open trial in the middle of the measurements
    proxy.stall()  # Redis accepts and reads, but never answers: only timeouts can tell
    try:
        slow = []
        while cache.breaker.state != "open" and len(slow) < 5:
            started = time.monotonic()
            me = await client.get("/api/v1/me", headers=account.headers)
            slow.append(time.monotonic() - started)
            assert me.status_code == 200, me.text
        assert cache.breaker.state == "open", slow
        # Each of these paid at most a socket timeout (0.25 s) per cache call, never a hang.
        assert max(slow) < 2.0, slow

        failures = cache.stats()["redis_failures"]
        for _ in range(3):
            started = time.monotonic()
            me = await client.get("/api/v1/me", headers=account.headers)
            assert me.status_code == 200, me.text
            assert time.monotonic() - started < 1.0
        assert cache.stats()["redis_failures"] == failures, "calls still went to the hung Redis"
        await _assert_degraded_to_memory(client)
    finally:
        cache.breaker.reset_timeout = RESET_TIMEOUT
        proxy.restore()
    await _wait_for_redis_mode(client)
