"""Cache semantics on memory, Redis and Redis-with-fallback, and the fallback's behaviour under faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from kindred.kit.breaker import CircuitBreaker
from kindred.kit.cache import (
    SUBSCRIPTION_QUEUE_SIZE,
    Cache,
    FallbackCache,
    MemoryCache,
    RedisCache,
    Subscription,
    create_cache,
)
from tests.kit.conftest import delete_prefixed
from tests.support.redis_server import free_port
from tests.support.tcpproxy import TcpProxy

TTL = 0.15  # short enough for quick tests, long enough to survive a round trip on a busy machine
EXPIRED = 0.4


async def next_message(sub: Subscription, timeout: float = 2.0) -> tuple[str, str]:
    return await asyncio.wait_for(anext(sub), timeout)


async def assert_no_message(sub: Subscription, wait: float = 0.2) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(anext(sub), wait)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.05)


def events(logs: list[MutableMapping[str, Any]], name: str) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


def fallback(url: str, prefix: str, *, reset_timeout: float = 0.3, socket_timeout: float = 0.25) -> FallbackCache:
    return FallbackCache(
        RedisCache(url, socket_timeout=socket_timeout, key_prefix=prefix),
        MemoryCache(),
        CircuitBreaker("redis", failure_threshold=3, reset_timeout=reset_timeout),
    )


@pytest.fixture(params=["memory", "redis", "fallback"])
async def cache(request: pytest.FixtureRequest, key_prefix: str) -> AsyncIterator[Cache]:
    """The same semantic tests on every implementation (fallback: with Redis healthy)."""
    if request.param == "memory":
        memory = MemoryCache()
        yield memory
        await memory.close()
        return
    url: str = request.getfixturevalue("redis_url")
    instance: Cache = RedisCache(url, key_prefix=key_prefix) if request.param == "redis" else fallback(url, key_prefix)
    try:
        yield instance
        # Proof that the fallback variant really exercised Redis, not its memory side.
        assert instance.stats()["redis_failures"] == 0
    finally:
        await instance.close()
        await delete_prefixed(url, key_prefix)


async def server_subscribers(cache: Cache, channel: str) -> int | None:
    """Subscribers Redis itself counts on `channel`; None for the memory cache."""
    if isinstance(cache, RedisCache):
        client, prefix = cache.client, cache.key_prefix
    elif isinstance(cache, FallbackCache):
        client, prefix = cache.redis_client, cache._redis.key_prefix
    else:
        return None
    [(_, count)] = await client.pubsub_numsub(prefix + channel)
    return int(count)


# --- semantics, on every implementation ---------------------------------------------------------


async def test_get_of_a_missing_key_returns_none(cache: Cache) -> None:
    assert await cache.get("missing") is None


async def test_set_then_get_returns_the_value(cache: Cache) -> None:
    await cache.set("greeting", "héllo wörld")
    assert await cache.get("greeting") == "héllo wörld"


async def test_set_overwrites_an_existing_value(cache: Cache) -> None:
    await cache.set("k", "one")
    await cache.set("k", "two")
    assert await cache.get("k") == "two"


async def test_add_stores_only_when_the_key_is_absent(cache: Cache) -> None:
    assert await cache.add("k", "first") is True
    assert await cache.add("k", "second") is False
    assert await cache.get("k") == "first"


async def test_add_succeeds_again_once_the_key_expired(cache: Cache) -> None:
    assert await cache.add("k", "first", ttl=TTL) is True
    await asyncio.sleep(EXPIRED)
    assert await cache.add("k", "second") is True
    assert await cache.get("k") == "second"


async def test_a_value_set_with_ttl_expires(cache: Cache) -> None:
    await cache.set("short", "v", ttl=TTL)
    assert await cache.get("short") == "v"
    await asyncio.sleep(EXPIRED)
    assert await cache.get("short") is None


async def test_set_without_ttl_removes_an_earlier_ttl(cache: Cache) -> None:
    await cache.set("k", "v1", ttl=TTL)
    await cache.set("k", "v2")
    await asyncio.sleep(EXPIRED)
    assert await cache.get("k") == "v2"


async def test_delete_removes_every_given_key_and_nothing_else(cache: Cache) -> None:
    for key in ("a", "b", "c"):
        await cache.set(key, key)
    await cache.delete("a", "b", "never-set")
    assert [await cache.get(key) for key in ("a", "b", "c")] == [None, None, "c"]


async def test_delete_without_keys_does_nothing(cache: Cache) -> None:
    await cache.set("kept", "v")
    await cache.delete()
    assert await cache.get("kept") == "v"


async def test_incr_counts_from_zero_and_returns_the_new_value(cache: Cache) -> None:
    assert await cache.incr("n") == 1
    assert await cache.incr("n", 5) == 6
    assert await cache.incr("n", -2) == 4
    assert await cache.get("n") == "4"


async def test_incr_with_ttl_creates_an_expiring_counter(cache: Cache) -> None:
    assert await cache.incr("hits", ttl=TTL) == 1
    assert await cache.incr("hits", ttl=TTL) == 2
    await asyncio.sleep(EXPIRED)
    assert await cache.get("hits") is None
    assert await cache.incr("hits", ttl=TTL) == 1


async def test_incr_ttl_counts_from_creation_and_is_not_extended(cache: Cache) -> None:
    await cache.incr("window", ttl=0.3)
    await asyncio.sleep(0.2)
    await cache.incr("window", ttl=0.3)  # would push expiry to 0.5 s if it were re-applied
    await asyncio.sleep(0.25)
    assert await cache.get("window") is None


async def test_incr_with_ttl_keeps_an_existing_key_without_expiry(cache: Cache) -> None:
    await cache.set("plain", "10")
    assert await cache.incr("plain", ttl=TTL) == 11
    await asyncio.sleep(EXPIRED)
    assert await cache.get("plain") == "11"


async def test_incr_of_a_non_integer_value_raises_value_error(cache: Cache) -> None:
    await cache.set("word", "abc")
    with pytest.raises(ValueError):
        await cache.incr("word")
    assert await cache.get("word") == "abc"


async def test_incr_past_64_bits_raises_value_error(cache: Cache) -> None:
    await cache.set("big", str(2**63 - 1))
    with pytest.raises(ValueError):
        await cache.incr("big")


async def test_expire_makes_an_existing_key_expire(cache: Cache) -> None:
    await cache.set("k", "v")
    await cache.expire("k", TTL)
    assert await cache.get("k") == "v"
    await asyncio.sleep(EXPIRED)
    assert await cache.get("k") is None


async def test_expire_of_a_missing_key_does_not_create_it(cache: Cache) -> None:
    await cache.expire("ghost", 10)
    assert await cache.get("ghost") is None


@pytest.mark.parametrize("ttl", [0, -1, float("nan")])
async def test_a_non_positive_ttl_is_rejected(cache: Cache, ttl: float) -> None:
    await cache.set("k", "1")
    with pytest.raises(ValueError):
        await cache.set("k", "v", ttl=ttl)
    with pytest.raises(ValueError):
        await cache.incr("k", ttl=ttl)
    with pytest.raises(ValueError):
        await cache.expire("k", ttl)
    assert await cache.get("k") == "1"


async def test_get_counts_hits_and_misses(cache: Cache) -> None:
    await cache.set("k", "v")
    await cache.get("k")
    await cache.get("k")
    await cache.get("nope")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"]) == (2, 1)
    assert set(stats) == {"mode", "hits", "misses", "redis_failures", "breaker"}


async def test_ping_succeeds_and_mode_names_the_backend(cache: Cache) -> None:
    await cache.ping()
    assert cache.mode == ("memory" if isinstance(cache, MemoryCache) else "redis")


async def test_a_published_message_reaches_every_subscriber(cache: Cache) -> None:
    async with cache.subscribe("room") as first, cache.subscribe("room") as second:
        await cache.publish("room", "hello")
        assert await next_message(first) == ("room", "hello")
        assert await next_message(second) == ("room", "hello")


async def test_a_subscriber_gets_its_channels_in_order_and_no_others(cache: Cache) -> None:
    async with cache.subscribe("a", "b") as sub:
        await cache.publish("other", "x")
        await cache.publish("a", "1")
        await cache.publish("b", "2")
        await cache.publish("a", "3")
        assert [await next_message(sub) for _ in range(3)] == [("a", "1"), ("b", "2"), ("a", "3")]
        await assert_no_message(sub)


async def test_exiting_the_subscription_ends_iteration(cache: Cache) -> None:
    async with cache.subscribe("room") as sub:
        pass
    await cache.publish("room", "late")
    with pytest.raises(StopAsyncIteration):
        await anext(sub)


async def test_exiting_the_subscription_unsubscribes(cache: Cache) -> None:
    async with cache.subscribe("room"):
        assert await server_subscribers(cache, "room") in (None, 1)
    if isinstance(cache, MemoryCache):
        assert cache._bus == {}
    else:
        await eventually(lambda: _equals(server_subscribers(cache, "room"), 0))


async def test_a_subscription_must_be_entered_before_iterating(cache: Cache) -> None:
    sub = cache.subscribe("room")
    with pytest.raises(RuntimeError):
        await anext(sub)


async def test_subscribing_to_no_channel_is_rejected(cache: Cache) -> None:
    with pytest.raises(ValueError):
        cache.subscribe()


async def _equals(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


# --- memory specifics ---------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_memory_purges_an_expired_key_when_it_is_read() -> None:
    clock = FakeClock()
    memory = MemoryCache(clock=clock)
    await memory.set("k", "v", ttl=1)
    clock.now = 1.0
    assert await memory.get("k") is None
    assert len(memory) == 0


async def test_memory_stays_within_max_entries_dropping_expired_then_oldest() -> None:
    clock = FakeClock()
    memory = MemoryCache(max_entries=10, clock=clock)
    for i in range(5):
        await memory.set(f"old{i}", "v", ttl=1)
    clock.now = 2.0  # the five "old" keys have expired
    for i in range(40):
        await memory.set(f"new{i}", "v")
    assert len(memory) <= 10
    assert await memory.get("new39") == "v"
    assert await memory.get("new0") is None
    assert all([await memory.get(f"old{i}") is None for i in range(5)])


async def test_memory_rewriting_a_key_protects_it_from_eviction() -> None:
    memory = MemoryCache(max_entries=10)
    await memory.set("hot", "1")
    for i in range(9):
        await memory.set(f"k{i}", "v")
    await memory.set("hot", "2")  # now the newest write
    await memory.set("one-more", "v")
    assert await memory.get("hot") == "2"
    assert await memory.get("k0") is None


async def test_memory_subscriber_that_falls_behind_loses_new_messages_not_old_ones() -> None:
    memory = MemoryCache()
    async with memory.subscribe("firehose") as sub:
        for i in range(SUBSCRIPTION_QUEUE_SIZE + 5):
            await memory.publish("firehose", str(i))
        assert sub.dropped == 5
        assert await next_message(sub) == ("firehose", "0")


async def test_closing_the_memory_cache_ends_its_subscriptions() -> None:
    memory = MemoryCache()
    async with memory.subscribe("room") as sub:
        waiting = asyncio.create_task(anext(sub))
        await asyncio.sleep(0)
        await memory.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 1)


# --- plain Redis specifics ----------------------------------------------------------------------


async def test_redis_cache_stores_keys_under_its_prefix(redis_url: str, key_prefix: str, redis_direct: Redis) -> None:
    cache = RedisCache(redis_url, key_prefix=key_prefix)
    try:
        await cache.set("k", "v")
        assert await redis_direct.get(f"{key_prefix}k") == "v"
    finally:
        await cache.close()


async def test_redis_subscription_raises_when_its_connection_breaks(
    proxy: TcpProxy, proxy_url: str, key_prefix: str
) -> None:
    cache = RedisCache(proxy_url, key_prefix=key_prefix)
    try:
        async with cache.subscribe("room") as sub:
            await proxy.cut()
            with pytest.raises(RedisConnectionError):
                await next_message(sub)
        assert cache.stats()["redis_failures"] >= 1
    finally:
        await cache.close()


async def test_redis_cache_errors_propagate_when_redis_is_down(
    proxy: TcpProxy, proxy_url: str, key_prefix: str
) -> None:
    cache = RedisCache(proxy_url, key_prefix=key_prefix)
    try:
        await proxy.cut()
        with pytest.raises(RedisConnectionError):
            await cache.get("k")
        with pytest.raises(RedisConnectionError):
            await cache.ping()
    finally:
        await cache.close()


# --- the fallback under faults ------------------------------------------------------------------


async def test_create_cache_without_a_url_returns_memory() -> None:
    cache = create_cache(None)
    assert isinstance(cache, MemoryCache)
    assert cache.mode == "memory"
    await cache.close()


async def test_create_cache_with_a_url_returns_the_fallback_cache(redis_url: str, key_prefix: str) -> None:
    cache = create_cache(redis_url, key_prefix=key_prefix)
    try:
        assert isinstance(cache, FallbackCache)
        assert isinstance(cache.redis_client, Redis)
        await cache.ping()
        assert cache.mode == "redis"
    finally:
        await cache.close()


async def test_fallback_round_trips_values_through_redis_while_reachable(
    proxy_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    cache = fallback(proxy_url, key_prefix)
    try:
        await cache.set("written-by-cache", "1")
        assert cache.mode == "redis"
        assert await redis_direct.get(f"{key_prefix}written-by-cache") == "1"
        await redis_direct.set(f"{key_prefix}written-directly", "2")
        assert await cache.get("written-directly") == "2"
        assert await cache.incr("counter", ttl=10) == 1
        assert 0 < await redis_direct.pttl(f"{key_prefix}counter") <= 10_000
        assert cache.stats() == {
            "mode": "redis",
            "hits": 1,
            "misses": 0,
            "redis_failures": 0,
            "breaker": "closed",
        }
    finally:
        await cache.close()


async def test_after_a_cut_calls_are_served_from_memory_with_one_warning(
    proxy: TcpProxy, proxy_url: str, key_prefix: str
) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=30)
    try:
        await cache.ping()
        with capture_logs() as logs:
            await proxy.cut()
            await cache.set("k", "v")
            assert await cache.get("k") == "v"
            assert await cache.incr("n", ttl=10) == 1
            assert await cache.incr("n") == 2
            await cache.publish("room", "still works")
            for _ in range(20):
                await cache.get("k")
        assert cache.mode == "memory"
        assert len(events(logs, "cache.redis_unavailable")) == 1
        assert events(logs, "cache.redis_unavailable")[0]["log_level"] == "warning"
        stats = cache.stats()
        assert stats["mode"] == "memory"
        assert stats["breaker"] == "open"
        assert stats["redis_failures"] == 3  # the threshold; after that Redis is not tried
    finally:
        await cache.close()


async def test_while_open_calls_do_not_wait_on_a_hung_redis(proxy: TcpProxy, proxy_url: str, key_prefix: str) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=30, socket_timeout=0.1)
    try:
        await cache.ping()
        proxy.stall()  # Redis accepts but never answers: only timeouts can tell
        started = time.monotonic()
        assert await cache.get("k") is None
        first_call = time.monotonic() - started
        assert 0.08 <= first_call < 1.0  # bounded by socket_timeout, not hanging
        while cache.breaker.state != "open":
            await cache.get("k")
        failures = cache.stats()["redis_failures"]
        started = time.monotonic()
        for i in range(50):
            await cache.set(f"k{i}", "v")
            await cache.get(f"k{i}")
        assert time.monotonic() - started < 0.5
        assert cache.stats()["redis_failures"] == failures  # Redis was not even tried
    finally:
        await cache.close()


async def test_after_restore_and_the_reset_timeout_it_returns_to_redis(
    proxy: TcpProxy, proxy_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=0.3)
    try:
        await cache.ping()
        with capture_logs() as logs:
            await proxy.cut()
            for _ in range(3):
                await cache.get("k")
            assert cache.breaker.state == "open"
            proxy.restore()
            await cache.get("k")  # still within the reset timeout: memory, no Redis attempt
            assert cache.mode == "memory"
            await asyncio.sleep(0.35)
            await cache.set("after", "recovery")
        assert cache.mode == "redis"
        assert cache.breaker.state == "closed"
        assert await redis_direct.get(f"{key_prefix}after") == "recovery"
        assert len(events(logs, "cache.redis_unavailable")) == 1
        assert len(events(logs, "cache.redis_recovered")) == 1
    finally:
        await cache.close()


async def test_a_failed_trial_keeps_serving_from_memory(proxy: TcpProxy, proxy_url: str, key_prefix: str) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=0.2)
    try:
        await cache.ping()
        with capture_logs() as logs:
            await proxy.cut()
            for _ in range(3):
                await cache.get("k")
            await asyncio.sleep(0.25)
            await cache.set("k", "v")  # the half-open trial: fails, served by memory
            assert await cache.get("k") == "v"
        assert cache.breaker.state == "open"
        assert cache.stats()["redis_failures"] == 4
        assert len(events(logs, "cache.redis_unavailable")) == 1
    finally:
        await cache.close()


async def test_values_written_during_an_outage_are_dropped_on_recovery(
    proxy: TcpProxy, proxy_url: str, key_prefix: str
) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=0.2)
    try:
        await cache.ping()
        await proxy.cut()
        await cache.set("k", "outage-only")
        for _ in range(3):
            await cache.get("k")
        proxy.restore()
        await asyncio.sleep(0.25)
        await eventually(lambda: _ping_mode(cache, "redis"))
        assert await cache.get("k") is None  # from Redis, which never saw the write
        await proxy.cut()
        for _ in range(3):
            await cache.ping()
        assert await cache.get("k") is None  # memory no longer holds the stale value either
    finally:
        await cache.close()


async def _ping_mode(cache: Cache, mode: str) -> bool:
    await cache.ping()
    return cache.mode == mode


async def test_redis_down_at_start_starts_in_memory_and_recovers(
    proxy: TcpProxy, proxy_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    await proxy.cut()
    cache = create_cache(proxy_url, key_prefix=key_prefix)
    try:
        assert cache.mode == "memory"
        with capture_logs() as logs:
            await cache.set("k", "v")
            assert await cache.get("k") == "v"
        assert cache.mode == "memory"
        assert len(events(logs, "cache.redis_unavailable")) == 1
        proxy.restore()
        await cache.set("k", "from-redis")  # two failures so far: the breaker is still closed
        assert cache.mode == "redis"
        assert await redis_direct.get(f"{key_prefix}k") == "from-redis"
    finally:
        await cache.close()


async def test_the_warning_names_the_server_but_never_the_password(key_prefix: str) -> None:
    port = free_port()  # nothing listens there
    cache = fallback(f"redis://:hunter2-secret@127.0.0.1:{port}/3", key_prefix)
    try:
        with capture_logs() as logs:
            assert await cache.get("k") is None
        [warning] = events(logs, "cache.redis_unavailable")
        assert warning["redis"] == f"127.0.0.1:{port}/3"
        assert "hunter2" not in repr(logs)
    finally:
        await cache.close()


async def test_a_command_redis_refuses_raises_without_tripping_the_breaker(redis_url: str, key_prefix: str) -> None:
    cache = fallback(redis_url, key_prefix)
    try:
        await cache.set("word", "abc")
        for _ in range(5):
            with pytest.raises(ValueError):
                await cache.incr("word")
        assert cache.mode == "redis"
        assert cache.breaker.state == "closed"
        assert cache.stats()["redis_failures"] == 0
    finally:
        await cache.close()
        await delete_prefixed(redis_url, key_prefix)


async def test_same_instance_messages_are_delivered_once_when_redis_is_healthy(redis_url: str, key_prefix: str) -> None:
    cache = fallback(redis_url, key_prefix)
    try:
        await cache.ping()
        async with cache.subscribe("room") as sub:
            await cache.publish("room", "once")
            assert await next_message(sub) == ("room", "once")
            await assert_no_message(sub, 0.3)
    finally:
        await cache.close()


async def test_a_subscriber_hears_other_instances_through_redis(
    redis_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    cache = fallback(redis_url, key_prefix)
    try:
        await cache.ping()
        async with cache.subscribe("room") as sub:
            await redis_direct.publish(f"{key_prefix}room", "from elsewhere")
            assert await next_message(sub) == ("room", "from elsewhere")
    finally:
        await cache.close()


async def test_a_subscriber_keeps_receiving_through_an_outage_and_redis_again_after(
    proxy: TcpProxy, proxy_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=0.3)
    try:
        await cache.ping()
        async with cache.subscribe("room") as sub:
            await redis_direct.publish(f"{key_prefix}room", "before")
            assert await next_message(sub) == ("room", "before")

            await proxy.cut()
            await cache.publish("room", "during 1")
            assert await next_message(sub) == ("room", "during 1")
            for _ in range(3):
                await cache.get("k")
            assert cache.breaker.state == "open"
            await cache.publish("room", "during 2")
            assert await next_message(sub) == ("room", "during 2")
            await assert_no_message(sub, 0.1)

            proxy.restore()
            await eventually(lambda: _ping_mode(cache, "redis"))
            await eventually(lambda: _equals(server_subscribers(cache, "room"), 1))
            await redis_direct.publish(f"{key_prefix}room", "after")
            assert await next_message(sub) == ("room", "after")
            await cache.publish("room", "after, from here")
            assert await next_message(sub) == ("room", "after, from here")
            await assert_no_message(sub, 0.2)
    finally:
        await cache.close()


async def test_subscribing_while_redis_is_down_delivers_locally_then_through_redis(
    proxy: TcpProxy, proxy_url: str, key_prefix: str, redis_direct: Redis
) -> None:
    cache = fallback(proxy_url, key_prefix, reset_timeout=0.3)
    try:
        await proxy.cut()
        for _ in range(3):
            await cache.ping()
        started = time.monotonic()
        async with cache.subscribe("room") as sub:
            assert time.monotonic() - started < 0.1  # no waiting on Redis while the breaker is open
            await cache.publish("room", "local")
            assert await next_message(sub) == ("room", "local")
            proxy.restore()
            await eventually(lambda: _equals(server_subscribers(cache, "room"), 1))
            await redis_direct.publish(f"{key_prefix}room", "remote")
            assert await next_message(sub) == ("room", "remote")
        assert cache.mode == "redis"
    finally:
        await cache.close()


async def test_closing_the_fallback_cache_ends_its_subscriptions(redis_url: str, key_prefix: str) -> None:
    cache = fallback(redis_url, key_prefix)
    async with cache.subscribe("room") as sub:
        await cache.close()
        with pytest.raises(StopAsyncIteration):
            await next_message(sub)
