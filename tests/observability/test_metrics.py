"""/metrics: HTTP metrics by route template, in-flight, pool, cache, active users, event-loop lag, privacy."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.observability.metrics import ActiveUsers, Metrics
from kindred.settings import Settings
from tests.observability.helpers import scrape, total, value
from tests.support.factories import verified_account

_UUID = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", re.I)

EXPECTED_FAMILIES = {
    "kindred_http_requests_total",
    "kindred_http_request_duration_seconds_bucket",
    "kindred_http_requests_in_flight",
    "kindred_db_pool_in_use",
    "kindred_db_pool_idle",
    "kindred_db_pool_overflow",
    "kindred_db_pool_capacity",
    "kindred_db_pool_waiting",
    "kindred_cache_hits_total",
    "kindred_cache_misses_total",
    "kindred_cache_redis_failures_total",
    "kindred_cache_mode",
    "kindred_signups_total",
    "kindred_matches_total",
    "kindred_messages_total",
    "kindred_premium_conversions_total",
    "kindred_photo_uploads_total",
    "kindred_active_users",
    "kindred_event_loop_lag_seconds_bucket",
    "kindred_event_loop_lag_last_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "python_gc_collections_total",
}


async def _wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_every_metric_family_is_exported(client: httpx.AsyncClient, app: FastAPI) -> None:
    await client.get("/health")
    names = {sample.name for sample in await scrape(client)}
    assert names >= EXPECTED_FAMILIES, EXPECTED_FAMILIES - names


async def test_requests_are_counted_by_route_template_method_and_status(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    for _ in range(2):
        assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200
    someone = uuid.uuid4()
    card = await client.get(f"/api/v1/users/{someone}", headers=account.headers)
    assert (await client.get("/no/such/path")).status_code == 404
    samples = await scrape(client)

    assert value(samples, "kindred_http_requests_total", route="/api/v1/me", method="GET", status="200") == 2
    assert (
        value(
            samples,
            "kindred_http_requests_total",
            route="/api/v1/users/{user_id}",
            method="GET",
            status=str(card.status_code),
        )
        == 1
    )
    assert value(samples, "kindred_http_requests_total", route="<unmatched>", method="GET", status="404") == 1
    assert value(samples, "kindred_http_requests_total", route="/api/v1/auth/register", status="202") == 1
    # The latency histogram: by route and method, every request in the +Inf bucket, a positive sum.
    count = value(samples, "kindred_http_request_duration_seconds_count", route="/api/v1/me", method="GET")
    inf = value(samples, "kindred_http_request_duration_seconds_bucket", route="/api/v1/me", method="GET", le="+Inf")
    assert count == inf == 2
    assert (value(samples, "kindred_http_request_duration_seconds_sum", route="/api/v1/me", method="GET") or 0) > 0
    routes = {s.labels["route"] for s in samples if s.name == "kindred_http_requests_total"}
    assert not any(str(someone) in route for route in routes)


async def test_an_unknown_method_is_labelled_other(client: httpx.AsyncClient) -> None:
    response = await client.request("BREW", "/health")
    samples = await scrape(client)
    assert (
        value(samples, "kindred_http_requests_total", route="/health", method="other", status=str(response.status_code))
        == 1
    )
    assert not any(s.labels.get("method") == "BREW" for s in samples)


async def test_in_flight_counts_requests_being_served_and_returns_to_zero(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    release = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"email": "'
        await release.wait()  # the app is inside the request, reading its body
        yield b'nobody"}'

    slow = asyncio.create_task(
        client.post("/api/v1/auth/login", content=slow_body(), headers={"content-type": "application/json"})
    )
    await _wait_for(lambda: app.state.metrics.in_flight == 1)
    # The scrape is itself in flight while it is collected: 1 (the scrape) + 1 (the slow request).
    assert value(await scrape(client), "kindred_http_requests_in_flight") == 2
    release.set()
    assert (await slow).status_code == 422
    assert value(await scrape(client), "kindred_http_requests_in_flight") == 1
    assert app.state.metrics.in_flight == 0


async def test_pool_and_cache_values_are_read_at_scrape(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    before = await scrape(client)
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200
    samples = await scrape(client)

    pool = app.state.db.pool_stats()
    assert (
        value(samples, "kindred_db_pool_capacity")
        == pool["capacity"]
        == (1 if settings.is_sqlite else settings.db_pool_size + settings.db_max_overflow)
    )
    assert value(samples, "kindred_db_pool_in_use") == 0  # nothing holds a connection between requests
    assert (value(samples, "kindred_db_pool_idle") or 0) >= 1  # the requests above opened one
    assert value(samples, "kindred_db_pool_waiting") == 0
    assert value(samples, "kindred_db_pool_overflow") == 0

    mode = "redis" if settings.redis_url else "memory"
    assert value(samples, "kindred_cache_mode", mode=mode) == 1
    assert value(samples, "kindred_cache_mode", mode={"redis": "memory", "memory": "redis"}[mode]) == 0
    stats = app.state.cache.stats()
    assert value(samples, "kindred_cache_hits_total") == stats["hits"]
    assert value(samples, "kindred_cache_misses_total") == stats["misses"]
    reads = lambda s: (value(s, "kindred_cache_hits_total") or 0) + (value(s, "kindred_cache_misses_total") or 0)  # noqa: E731
    assert reads(samples) > reads(before)  # an authenticated request reads its session state from the cache
    assert value(samples, "kindred_cache_redis_failures_total") == 0


async def test_pool_waiting_counts_checkouts_queued_for_a_connection(settings: Settings) -> None:
    small = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    app = create_app(small, email_backend=MemoryEmailBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            engine = app.state.db.engine
            held = await engine.connect()
            try:

                async def second() -> None:
                    async with engine.connect():
                        pass

                waiter = asyncio.create_task(second())
                await _wait_for(lambda: app.state.metrics.pool()["waiting"] == 1)
                samples = await scrape(client)
                assert value(samples, "kindred_db_pool_waiting") == 1
                assert value(samples, "kindred_db_pool_in_use") == 1
                assert value(samples, "kindred_db_pool_capacity") == 1
            finally:
                await held.close()
            await asyncio.wait_for(waiter, 5)
            assert value(await scrape(client), "kindred_db_pool_waiting") == 0


async def test_event_loop_lag_is_sampled_and_sane(client: httpx.AsyncClient, app: FastAPI) -> None:
    metrics: Metrics = app.state.metrics
    metrics.lag_interval = 0.05
    await _wait_for(lambda: _count(metrics) >= 2)
    samples = await scrape(client)
    last = value(samples, "kindred_event_loop_lag_last_seconds")
    assert last is not None and 0 <= last < 30  # a sane number of seconds (a loaded machine may starve the loop)
    assert (value(samples, "kindred_event_loop_lag_seconds_count") or 0) >= 2

    seen = _count(metrics)
    time.sleep(0.3)  # block the event loop on purpose: the sampler's timer fires ~0.25 s late
    await _wait_for(lambda: _count(metrics) >= seen + 2)
    samples = await scrape(client)
    slow = (value(samples, "kindred_event_loop_lag_seconds_count") or 0) - (
        value(samples, "kindred_event_loop_lag_seconds_bucket", le="0.1") or 0
    )
    assert slow >= 1


def _count(metrics: Metrics) -> float:
    return next(s.value for m in metrics.loop_lag.collect() for s in m.samples if s.name.endswith("_count"))


async def test_active_users_counts_distinct_signed_in_users(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    first, second = await verified_account(client, mail), await verified_account(client, mail)
    for account in (first, second, first):
        assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200
    await client.get("/health")  # anonymous: not a user
    samples = await scrape(client)
    assert value(samples, "kindred_active_users", window="5m") == 2
    assert value(samples, "kindred_active_users", window="24h") == 2


def test_active_users_windows_forget_the_old_and_cap_memory() -> None:
    now = [0.0]
    active = ActiveUsers(max_tracked=3, clock=lambda: now[0])
    active.seen("a")
    now[0] = 200.0
    active.seen("b")
    now[0] = 400.0
    assert active.counts() == {"5m": 1, "24h": 2}  # a was last seen 400 s ago
    active.seen("a")
    assert active.counts() == {"5m": 2, "24h": 2}  # seen again: counted once, now recent
    now[0] = 200.0 + 86_400 + 1
    assert active.counts() == {"5m": 0, "24h": 1}  # b is past 24 h and forgotten; a is not yet
    for user in ("c", "d", "e"):
        active.seen(user)
    assert active.counts()["24h"] == 3  # at most max_tracked remembered: the oldest went first


async def test_metrics_carry_no_personal_data(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await client.get("/api/v1/me", headers=account.headers)
    await client.get(f"/api/v1/users/{account.id}", headers=account.headers)
    await client.get(f"/api/v1/blocks/{account.id}?ref=x", headers=account.headers)  # 405, still a template
    response = await client.get("/metrics")
    text = response.text
    assert account.email not in text and "@" not in text
    assert account.id not in text and not _UUID.search(text)
    routes = {s.labels["route"] for s in await scrape(client) if "route" in s.labels}
    assert {"/api/v1/me", "/api/v1/users/{user_id}", "/api/v1/blocks/{user_id}"} <= routes


async def test_two_apps_in_one_process_do_not_share_counters(
    client: httpx.AsyncClient, settings: Settings, mail: MemoryEmailBackend
) -> None:
    other = create_app(settings, email_backend=MemoryEmailBackend())
    async with other.router.lifespan_context(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other_client:
            account = await verified_account(client, mail)  # on the first app only
            await client.get("/api/v1/me", headers=account.headers)
            mine, theirs = await scrape(client), await scrape(other_client)
    assert value(mine, "kindred_http_requests_total", route="/api/v1/me", method="GET", status="200") == 1
    assert value(mine, "kindred_signups_total", stage="verified") == 1
    assert value(theirs, "kindred_http_requests_total", route="/api/v1/me") is None
    assert value(theirs, "kindred_signups_total", stage="verified") == 0
    assert value(theirs, "kindred_signups_total", stage="registered") == 0
    assert total(theirs, "kindred_http_requests_total") == 0  # its own scrape is counted after it answers
    assert value(theirs, "kindred_active_users", window="24h") == 0
