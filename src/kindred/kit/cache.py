"""One async cache and pub/sub interface: in-process memory, Redis, or Redis with a memory fallback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from types import TracebackType
from typing import Any, Protocol, TypeVar, runtime_checkable

import structlog
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError, PubSubError, ReadOnlyError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from kindred.kit.breaker import CircuitBreaker

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Messages buffered per subscription; past it new ones are dropped, so one stalled consumer cannot
# grow memory without bound or slow the publisher (Redis disconnects slow subscribers likewise).
SUBSCRIPTION_QUEUE_SIZE = 1000

_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_RESUBSCRIBE_MIN_DELAY = 0.05
_RESUBSCRIBE_MAX_DELAY = 2.0


def _check_ttl(ttl: float) -> float:
    if not 0 < ttl < math.inf:
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
    return ttl


def _ttl_ms(ttl: float) -> int:
    # Round up: a 0.0001 s ttl must not become PX 0, which Redis rejects.
    return max(1, math.ceil(_check_ttl(ttl) * 1000))


def _is_outage(exc: BaseException) -> bool:
    """True when Redis cannot serve us now; False when it answered and refused one command."""
    if isinstance(exc, ReadOnlyError):
        return True  # a replica after a failover: no write succeeds until the topology settles
    if isinstance(exc, ResponseError | DataError | PubSubError):
        return False
    # OSError covers the builtin TimeoutError, which asyncio.TimeoutError is since Python 3.11.
    return isinstance(exc, RedisError | OSError)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Subscription:
    """Messages published on some channels between `async with` entry and exit.

    `async with cache.subscribe("a", "b") as sub: async for channel, message in sub: ...`
    Iteration ends when the subscription is exited or its cache closed; it raises the error that
    broke a plain Redis subscription (FallbackCache subscriptions survive outages instead).
    """

    def __init__(
        self,
        channels: tuple[str, ...],
        opener: Callable[[Subscription], Awaitable[Callable[[], Awaitable[None]]]],
    ) -> None:
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        self.channels = channels
        self.dropped = 0
        self._opener = opener
        self._closer: Callable[[], Awaitable[None]] | None = None
        # None is a wake-up marker: it unblocks a waiting consumer to notice closing or an error.
        self._queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(SUBSCRIPTION_QUEUE_SIZE)
        self._closed = False
        self._error: BaseException | None = None

    async def __aenter__(self) -> Subscription:
        if self._closer is not None or self._closed:
            raise RuntimeError("a subscription can be entered only once")
        self._closer = await self._opener(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        closer, self._closer = self._closer, None
        self._end()
        if closer is not None:
            await closer()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, str]:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._closer is None:
                raise RuntimeError("enter the subscription with `async with` before iterating it")
            if self._error is not None and self._queue.empty():
                raise self._error
            item = await self._queue.get()
            if item is not None:
                return item

    def _put(self, channel: str, message: str) -> None:
        if self._closed:
            return
        try:
            self._queue.put_nowait((channel, message))
        except asyncio.QueueFull:
            self.dropped += 1
            if self.dropped == 1:
                log.warning("cache.subscriber_overflow", channels=list(self.channels))

    def _fail(self, error: BaseException) -> None:
        self._error = error
        self._wake()

    def _end(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        # A full queue means the consumer is not blocked: it sees the flag on its next read.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


@runtime_checkable
class Cache(Protocol):
    """The app's cache and pub/sub. Values are strings; ttl is in seconds and must be positive."""

    @property
    def mode(self) -> str:
        """Where calls are served right now: "redis" or "memory"."""
        ...

    async def get(self, key: str) -> str | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        """Values of `keys`, in order (None where absent): one round trip (MGET)."""
        ...

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        """Store `value`; without ttl the key does not expire (and loses any earlier expiry)."""
        ...

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store `value` only if `key` is absent (SET NX); True when stored."""
        ...

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add `amount` (a missing key counts as 0); `ttl` is applied only when the key is created.

        Raises ValueError when the stored value is not a 64-bit integer or the result overflows.
        """
        ...

    async def expire(self, key: str, ttl: float) -> None:
        """Set the expiry of an existing key; a missing key stays missing."""
        ...

    async def publish(self, channel: str, message: str) -> None: ...

    def subscribe(self, *channels: str) -> Subscription: ...

    async def ping(self) -> None:
        """Raise if the cache cannot serve calls."""
        ...

    def stats(self) -> dict[str, Any]:
        """{"mode", "hits", "misses", "redis_failures", "breaker"}; breaker is None without one."""
        ...

    async def close(self) -> None: ...


# Key in `AsyncSession.info` under which the app's lifespan puts its cache (read-through caches in domains).
CACHE_INFO_KEY = "cache"


class MemoryCache:
    """Per-process cache and pub/sub bus: the embedded default, and the fallback while Redis is down."""

    def __init__(self, *, max_entries: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        # key -> (value, monotonic expiry or None); dict order is write order (see _store).
        self._data: dict[str, tuple[str, float | None]] = {}
        self._bus: dict[str, set[Subscription]] = {}
        self._hits = 0
        self._misses = 0

    @property
    def mode(self) -> str:
        return "memory"

    def __len__(self) -> int:
        return len(self._data)

    def _live(self, key: str) -> tuple[str, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[1] is not None and entry[1] <= self._clock():
            del self._data[key]  # lazy purge: expired keys go when touched
            return None
        return entry

    def _store(self, key: str, value: str, expires_at: float | None) -> None:
        # Re-insert at the end, so the oldest writes come first when room must be made.
        self._data.pop(key, None)
        if len(self._data) >= self._max_entries:
            self._make_room()
        self._data[key] = (value, expires_at)

    def _make_room(self) -> None:
        now = self._clock()
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]
        # Then drop the oldest writes down to 90 %: the O(n) scan above runs at most once per
        # max_entries / 10 writes instead of on every write to a full cache.
        excess = len(self._data) - int(self._max_entries * 0.9)
        for key in list(itertools.islice(self._data, max(excess, 0))):
            del self._data[key]

    async def get(self, key: str) -> str | None:
        entry = self._live(key)
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        return entry[0]

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        expires_at = None if ttl is None else self._clock() + _check_ttl(ttl)
        self._store(key, value, expires_at)

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        expires_at = None if ttl is None else self._clock() + _check_ttl(ttl)
        if self._live(key) is not None:
            return False
        self._store(key, value, expires_at)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        if ttl is not None:
            _check_ttl(ttl)
        entry = self._live(key)
        if entry is None:
            current, expires_at = 0, None if ttl is None else self._clock() + ttl
        else:
            if not _INTEGER.fullmatch(entry[0]):
                raise ValueError("value is not an integer or out of range")
            current, expires_at = int(entry[0]), entry[1]
        value = current + amount
        if not _INT64_MIN <= value <= _INT64_MAX:  # Redis counters are signed 64-bit
            raise ValueError("increment or decrement would overflow")
        if entry is None:
            self._store(key, str(value), expires_at)
        else:
            self._data[key] = (str(value), expires_at)
        return value

    async def expire(self, key: str, ttl: float) -> None:
        _check_ttl(ttl)
        entry = self._live(key)
        if entry is not None:
            self._data[key] = (entry[0], self._clock() + ttl)

    async def publish(self, channel: str, message: str) -> None:
        self._fanout(channel, message)

    def subscribe(self, *channels: str) -> Subscription:
        return Subscription(channels, self._open_subscription)

    async def _open_subscription(self, sub: Subscription) -> Callable[[], Awaitable[None]]:
        self._attach(sub)

        async def close() -> None:
            self._detach(sub)

        return close

    def _attach(self, sub: Subscription) -> None:
        for channel in set(sub.channels):
            self._bus.setdefault(channel, set()).add(sub)

    def _detach(self, sub: Subscription) -> None:
        for channel in set(sub.channels):
            subs = self._bus.get(channel)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._bus[channel]

    def _fanout(self, channel: str, message: str) -> None:
        for sub in self._bus.get(channel, ()):
            sub._put(channel, message)

    async def ping(self) -> None:
        return None

    def clear(self) -> None:
        """Drop every stored value (subscriptions stay)."""
        self._data.clear()

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "memory",
            "hits": self._hits,
            "misses": self._misses,
            "redis_failures": 0,
            "breaker": None,
        }

    async def close(self) -> None:
        self._data.clear()
        for subs in self._bus.values():
            for sub in subs:
                sub._end()
        self._bus.clear()


class RedisCache:
    """Redis-backed cache; its errors propagate (FallbackCache turns them into a memory fallback)."""

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = 0.25,
        key_prefix: str = "",
        max_connections: int | None = None,
    ) -> None:
        self._pool: ConnectionPool = ConnectionPool.from_url(
            url,
            decode_responses=True,
            # redis-py waits forever by default: a hung Redis would hang every request with it.
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # No retries: a failure must reach the caller (and FallbackCache's breaker) at once.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
        )
        self._client = Redis(connection_pool=self._pool)
        self.socket_timeout = socket_timeout
        self.key_prefix = key_prefix
        self._hits = 0
        self._misses = 0
        self._failures = 0
        self._subscriptions: dict[Subscription, Callable[[], Awaitable[None]]] = {}

    @property
    def mode(self) -> str:
        return "redis"

    @property
    def client(self) -> Redis:
        """The redis.asyncio client on this cache's pool (keys are not prefixed through it)."""
        return self._client

    @property
    def target(self) -> str:
        """host:port/db for logs: never the URL, which may carry a password."""
        kwargs = self._pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return f"{where}/{kwargs.get('db', 0)}"

    def _key(self, key: str) -> str:
        return self.key_prefix + key

    async def _run(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except Exception as exc:
            if _is_outage(exc):
                self._failures += 1
            raise

    async def get(self, key: str) -> str | None:
        # decode_responses=True: Redis answers str, whatever redis-py's stubs say.
        value: str | None = await self._run(self._client.get(self._key(key)))  # type: ignore[arg-type]
        if value is None:
            self._misses += 1
        else:
            self._hits += 1
        return value

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        values: list[str | None] = await self._run(self._client.mget([self._key(key) for key in keys]))  # type: ignore[arg-type]
        found = sum(value is not None for value in values)
        self._hits += found
        self._misses += len(values) - found
        return values

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        px = None if ttl is None else _ttl_ms(ttl)
        await self._run(self._client.set(self._key(key), value, px=px))

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        px = None if ttl is None else _ttl_ms(ttl)
        return bool(await self._run(self._client.set(self._key(key), value, px=px, nx=True)))

    async def delete(self, *keys: str) -> None:
        if keys:  # DEL without arguments is an error
            await self._run(self._client.delete(*map(self._key, keys)))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        name = self._key(key)
        try:
            if ttl is None:
                return int(await self._run(self._client.incrby(name, amount)))
            px = _ttl_ms(ttl)
            async with self._client.pipeline(transaction=True) as pipe:
                # Create the key with its expiry only if absent, then add: one atomic round trip,
                # and INCRBY keeps the expiry, so the ttl runs from the key's creation.
                pipe.set(name, 0, px=px, nx=True)
                pipe.incrby(name, amount)
                _, value = await self._run(pipe.execute())
            return int(value)
        except ResponseError as exc:
            message = str(exc)
            if "not an integer" in message or "overflow" in message:
                raise ValueError(message) from exc
            raise

    async def expire(self, key: str, ttl: float) -> None:
        await self._run(self._client.pexpire(self._key(key), _ttl_ms(ttl)))

    async def publish(self, channel: str, message: str) -> None:
        await self._run(self._client.publish(self._key(channel), message))

    def subscribe(self, *channels: str) -> Subscription:
        return Subscription(channels, self._open_subscription)

    async def _open_subscription(self, sub: Subscription) -> Callable[[], Awaitable[None]]:
        names = {self._key(channel): channel for channel in sub.channels}
        pubsub = self._client.pubsub()
        try:
            await self._run(self._subscribe_confirmed(pubsub, names))
        except BaseException:
            await pubsub.aclose()
            raise
        task = asyncio.create_task(self._pump(pubsub, names, sub), name="kindred.cache.subscription")

        async def close() -> None:
            self._subscriptions.pop(sub, None)
            task.cancel()
            await asyncio.wait([task])  # unlike `await task`, never swallows our own cancellation
            await pubsub.aclose()

        self._subscriptions[sub] = close
        return close

    async def _subscribe_confirmed(self, pubsub: PubSub, names: dict[str, str]) -> None:
        await pubsub.subscribe(*names)
        # Wait for Redis' acknowledgements, so a message published once `async with` has returned
        # is delivered.
        pending = set(names)
        while pending:
            message = await pubsub.get_message(timeout=self.socket_timeout)
            if message is None:
                raise RedisTimeoutError("Redis did not acknowledge SUBSCRIBE")
            if message["type"] == "subscribe":
                pending.discard(message["channel"])

    async def _pump(self, pubsub: PubSub, names: dict[str, str], sub: Subscription) -> None:
        try:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is not None and message["type"] == "message":
                    sub._put(names.get(message["channel"], message["channel"]), message["data"])
        except Exception as exc:  # handed to the consumer: its `async for` raises it
            if _is_outage(exc):
                self._failures += 1
            sub._fail(exc)

    async def ping(self) -> None:
        await self._run(self._client.ping())

    def stats(self) -> dict[str, Any]:
        return {
            "mode": "redis",
            "hits": self._hits,
            "misses": self._misses,
            "redis_failures": self._failures,
            "breaker": None,
        }

    async def close(self) -> None:
        for sub, close in list(self._subscriptions.items()):
            sub._end()
            await close()
        await self._client.aclose(close_connection_pool=True)


class FallbackCache:
    """Redis while it answers, memory while it does not: the app's cache when REDIS_URL is set.

    Every call goes to Redis while the breaker allows; a connection error or timeout records a
    failure and the call is served by memory. While the breaker is open calls go straight to
    memory. The first failure after Redis worked logs one `cache.redis_unavailable` warning; the
    first success after that logs `cache.redis_recovered`. Subscriptions hear both Redis (every
    instance's messages) and the in-process bus (this instance's messages during an outage).
    """

    def __init__(self, redis: RedisCache, memory: MemoryCache, breaker: CircuitBreaker) -> None:
        self._redis = redis
        self._memory = memory
        self._breaker = breaker
        self._healthy = False  # no Redis call has succeeded yet: report "memory" until one does
        self._warned = False  # a warning went out, and memory has served calls since
        # Bumped on every failure: a success from a call that started before the latest failure
        # says nothing about Redis now, and must not close the breaker or report a recovery.
        self._epoch = 0
        self._failures = 0
        self._recovered = asyncio.Event()
        self._fan_in = _RedisFanIn(self)

    @property
    def mode(self) -> str:
        return "redis" if self._healthy else "memory"

    @property
    def redis_client(self) -> Redis:
        """The redis.asyncio client (shared pool; keys not prefixed), e.g. for the rate limiter."""
        return self._redis.client

    @property
    def breaker(self) -> CircuitBreaker:
        return self._breaker

    def _redis_succeeded(self, epoch: int) -> None:
        if epoch != self._epoch:
            return
        self._breaker.record_success()
        if self._healthy:
            return
        self._healthy = True
        self._recovered.set()
        if self._warned:
            self._warned = False
            # Values written to memory during the outage are in neither Redis nor other instances;
            # drop them so a later outage cannot bring them back stale.
            self._memory.clear()
            log.info("cache.redis_recovered", redis=self._redis.target)
        else:
            log.info("cache.redis_connected", redis=self._redis.target)

    def _redis_failed(self, exc: BaseException) -> None:
        self._epoch += 1
        self._failures += 1
        self._breaker.record_failure()
        self._healthy = False
        self._recovered.clear()
        if not self._warned:
            self._warned = True
            log.warning(
                "cache.redis_unavailable",
                redis=self._redis.target,
                error=_describe(exc),
                fallback="memory",
            )

    async def _call(
        self,
        on_redis: Callable[[], Awaitable[T]],
        on_memory: Callable[[], Awaitable[T]],
    ) -> T:
        if self._breaker.allow():
            epoch = self._epoch
            try:
                result = await on_redis()
            except Exception as exc:
                if not _is_outage(exc):
                    if isinstance(exc, ResponseError | ValueError):
                        self._redis_succeeded(epoch)  # Redis answered; it refused this one command
                    raise
                self._redis_failed(exc)
            else:
                self._redis_succeeded(epoch)
                return result
        return await on_memory()

    async def get(self, key: str) -> str | None:
        return await self._call(partial(self._redis.get, key), partial(self._memory.get, key))

    async def get_many(self, keys: Sequence[str]) -> list[str | None]:
        return await self._call(partial(self._redis.get_many, keys), partial(self._memory.get_many, keys))

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        # Invalid arguments fail here, before a Redis call whose ValueError would count as an answer.
        if ttl is not None:
            _check_ttl(ttl)
        await self._call(partial(self._redis.set, key, value, ttl), partial(self._memory.set, key, value, ttl))

    async def add(self, key: str, value: str, ttl: float | None = None) -> bool:
        if ttl is not None:
            _check_ttl(ttl)
        return await self._call(partial(self._redis.add, key, value, ttl), partial(self._memory.add, key, value, ttl))

    async def delete(self, *keys: str) -> None:
        await self._call(partial(self._redis.delete, *keys), partial(self._memory.delete, *keys))

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        if ttl is not None:
            _check_ttl(ttl)
        return await self._call(
            partial(self._redis.incr, key, amount, ttl), partial(self._memory.incr, key, amount, ttl)
        )

    async def expire(self, key: str, ttl: float) -> None:
        _check_ttl(ttl)
        await self._call(partial(self._redis.expire, key, ttl), partial(self._memory.expire, key, ttl))

    async def publish(self, channel: str, message: str) -> None:
        async def via_redis() -> None:
            await self._redis.publish(channel, message)
            if not self._fan_in.confirmed(channel):
                # This instance's subscribers are not (yet, or no longer) subscribed at Redis:
                # hand the message over directly rather than lose it.
                self._memory._fanout(channel, message)

        await self._call(via_redis, partial(self._memory.publish, channel, message))

    def subscribe(self, *channels: str) -> Subscription:
        return Subscription(channels, self._open_subscription)

    async def _open_subscription(self, sub: Subscription) -> Callable[[], Awaitable[None]]:
        self._memory._attach(sub)
        try:
            await self._fan_in.add(sub.channels)
        except BaseException:
            self._memory._detach(sub)
            self._fan_in.release(sub.channels)
            raise

        async def close() -> None:
            self._memory._detach(sub)
            self._fan_in.release(sub.channels)
            await self._fan_in.sync()

        return close

    async def ping(self) -> None:
        """Probe Redis when the breaker allows; never raises while memory can serve (see `mode`)."""
        await self._call(self._redis.ping, self._memory.ping)

    def stats(self) -> dict[str, Any]:
        redis, memory = self._redis.stats(), self._memory.stats()
        return {
            "mode": self.mode,
            "hits": redis["hits"] + memory["hits"],
            "misses": redis["misses"] + memory["misses"],
            "redis_failures": self._failures,
            "breaker": self._breaker.state,
        }

    async def close(self) -> None:
        await self._fan_in.close()
        await self._memory.close()
        await self._redis.close()


class _RedisFanIn:
    """One Redis pub/sub connection shared by all of a FallbackCache's subscriptions.

    Messages from Redis go onto the memory bus, where the subscriptions listen anyway (for what this
    instance publishes while Redis is down). A background task, started by the first subscription
    and stopped by close(), connects with backoff whenever the connection is lost (respecting the
    breaker) and subscribes every channel that has a local subscriber.
    """

    def __init__(self, owner: FallbackCache) -> None:
        self._owner = owner
        self._refs: Counter[str] = Counter()  # channel -> local subscriptions
        self._sent: set[str] = set()  # SUBSCRIBE sent on the current connection
        self._confirmed: set[str] = set()  # ... and acknowledged by Redis
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def confirmed(self, channel: str) -> bool:
        return channel in self._confirmed

    async def add(self, channels: tuple[str, ...]) -> None:
        self._refs.update(channels)
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="kindred.cache.pubsub")
        if self._owner._breaker.state != "closed":
            return  # Redis is known to be failing: the task subscribes once it is back
        loop = asyncio.get_running_loop()
        waiters = []
        for channel in set(channels) - self._confirmed:
            if channel not in self._waiters:
                self._waiters[channel] = loop.create_future()
            waiters.append(self._waiters[channel])
        if not waiters:
            return
        await self.sync()
        # Wait briefly for Redis' acknowledgement, so a message another instance publishes once
        # `async with` has returned is delivered; on timeout local delivery still works.
        await asyncio.wait(waiters, timeout=2 * self._owner._redis.socket_timeout)

    def release(self, channels: tuple[str, ...]) -> None:
        self._refs.subtract(channels)
        for channel in set(channels):
            if self._refs[channel] <= 0:
                del self._refs[channel]

    async def sync(self) -> None:
        """Make the connection's subscriptions match the channels that have local subscribers."""
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                return
            prefix = self._owner._redis.key_prefix
            wanted = set(self._refs)
            drop, add = self._sent - wanted, wanted - self._sent
            # Marked before sending: the reader may see the acknowledgement before the send returns.
            self._sent = (self._sent - drop) | add
            self._confirmed -= drop
            try:
                if drop:
                    await pubsub.unsubscribe(*(prefix + channel for channel in drop))
                if add:
                    await pubsub.subscribe(*(prefix + channel for channel in add))
            except Exception as exc:
                # The connection is broken: the reader task fails on it too, and reconnects.
                log.debug("cache.pubsub_sync_failed", error=_describe(exc))

    async def _run(self) -> None:
        owner = self._owner
        delay = _RESUBSCRIBE_MIN_DELAY
        while True:
            if owner._breaker.allow():
                epoch = owner._epoch
                pubsub = owner._redis.client.pubsub()
                try:
                    try:
                        await pubsub.connect()
                        owner._redis_succeeded(epoch)
                        delay = _RESUBSCRIBE_MIN_DELAY
                        self._pubsub = pubsub
                        await self.sync()
                        await self._read(pubsub)
                    finally:
                        self._disconnected()
                        await pubsub.aclose()
                except Exception as exc:
                    if _is_outage(exc):
                        owner._redis_failed(exc)
                    else:
                        log.exception("cache.pubsub_failed")
                await asyncio.sleep(delay)
            else:
                # Breaker open: sleep until the next look, or until a cache call finds Redis back.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(owner._recovered.wait(), delay)
            delay = min(delay * 2, _RESUBSCRIBE_MAX_DELAY)

    async def _read(self, pubsub: PubSub) -> None:
        prefix_length = len(self._owner._redis.key_prefix)
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is None:
                continue
            kind = message["type"]
            channel = message["channel"][prefix_length:]
            if kind == "message":
                self._owner._memory._fanout(channel, message["data"])
            elif kind == "subscribe" and channel in self._sent:
                self._confirmed.add(channel)
                waiter = self._waiters.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif kind == "unsubscribe":
                self._confirmed.discard(channel)

    def _disconnected(self) -> None:
        self._pubsub = None
        self._sent.clear()
        self._confirmed.clear()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])


def create_cache(redis_url: str | None, *, socket_timeout: float = 0.25, key_prefix: str = "") -> Cache:
    """The app's cache: memory without a Redis URL, else Redis with a memory fallback.

    Nothing connects here, so a Redis that is down at start-up fails nothing: the cache serves
    from memory and switches to Redis on the first call that reaches it.
    """
    if not redis_url:
        return MemoryCache()
    redis = RedisCache(redis_url, socket_timeout=socket_timeout, key_prefix=key_prefix)
    return FallbackCache(redis, MemoryCache(), CircuitBreaker("redis"))
