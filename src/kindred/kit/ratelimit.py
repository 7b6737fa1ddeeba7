"""Rate limiting on the `limits` library: a sliding window counter in Redis, in memory while Redis is down.

Redis storage shares the cache's redis-py connection pool (and its short socket timeouts). A Redis error
records a failure in the limiter's own circuit breaker and the decision falls back to an in-process
`MemoryStorage`, so an outage degrades limits to per-instance budgets instead of failing requests or
waving everything through. The breaker lets a trial call through after a few seconds and Redis takes
over again as soon as it answers.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from kindred.kit.breaker import CircuitBreaker
from kindred.observability.logging import get_logger

if TYPE_CHECKING:
    from redis.asyncio import ConnectionPool, Redis

log = get_logger(__name__)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int  # whole seconds until the window has room again (≥ 1 when refused)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_after).encode()),
        ]


def rate(text: str) -> RateLimitItem:
    """`100/15minutes` -> a limits item; raises ValueError for anything `limits` cannot parse."""
    return parse(text)


class Limiter:
    def __init__(self, *, redis_pool: ConnectionPool | None = None, key_prefix: str = "kindred:rl") -> None:
        self._memory = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._redis: SlidingWindowCounterRateLimiter | None = None
        # limits' own redis-py client over the shared pool; tracing instruments it like the cache's.
        self.redis_client: Redis | None = None
        if redis_pool is not None:
            storage = RedisStorage(
                "async+redis://",  # the pool carries the address, credentials and timeouts
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=key_prefix,
                connection_pool=redis_pool,  # type: ignore[arg-type]
            )
            self._redis = SlidingWindowCounterRateLimiter(storage)
            assert isinstance(storage.bridge, RedispyBridge)  # implementation="redispy"
            self.redis_client = storage.bridge.storage
        self.breaker = CircuitBreaker("ratelimit", failure_threshold=3, reset_timeout=5.0)
        self._warned = False

    @property
    def mode(self) -> str:
        return "memory" if self._redis is None or self.breaker.state == "open" else "redis"

    async def hit(self, item: RateLimitItem, *key: str) -> Decision:
        """Count one request against `item` for `key`; refused requests are not counted."""
        if self._redis is not None and self.breaker.allow():
            try:
                decision = await self._decide(self._redis, item, key)
            except StorageError as exc:
                self.breaker.record_failure()
                if not self._warned:
                    self._warned = True
                    log.warning("ratelimit.redis_unavailable", error=type(exc.storage_error).__name__)
            else:
                self.breaker.record_success()
                if self._warned:
                    self._warned = False
                    log.info("ratelimit.redis_recovered")
                return decision
        return await self._decide(self._memory, item, key)

    async def _decide(
        self, strategy: SlidingWindowCounterRateLimiter, item: RateLimitItem, key: tuple[str, ...]
    ) -> Decision:
        allowed = await strategy.hit(item, *key)
        stats = await strategy.get_window_stats(item, *key)
        reset_after = max(math.ceil(stats.reset_time - time.time()), 1 if not allowed else 0)
        return Decision(allowed=allowed, limit=item.amount, remaining=max(stats.remaining, 0), reset_after=reset_after)

    async def clear(self, item: RateLimitItem, *key: str) -> None:
        """Forget `key`'s count (tests, and operators lifting a limit by hand)."""
        for strategy in (self._redis, self._memory):
            if strategy is not None:
                with contextlib.suppress(StorageError):
                    await strategy.clear(item, *key)
