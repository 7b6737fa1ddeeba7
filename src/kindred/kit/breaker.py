"""Circuit breaker: stop calling a failing dependency, then let one trial call probe it after a pause."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Consecutive-failure circuit breaker; no I/O, so it fits any dependency (Redis, the database).

    closed: every call is allowed; `failure_threshold` consecutive failures open the breaker.
    open: calls are refused (the caller answers at once instead of waiting on timeouts) until
    `reset_timeout` has passed; then it is half-open and `allow()` lets exactly one trial through.
    The trial's `record_success()` closes the breaker; its `record_failure()` opens it for another
    full `reset_timeout`.

    Not thread-safe: meant for one event loop, where nothing runs between `allow()` and the call.
    """

    def __init__(
        self,
        name: str,
        failure_threshold: int = 3,
        reset_timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if not reset_timeout > 0:
            raise ValueError("reset_timeout must be positive")
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_started_at: float | None = None

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._trial_started_at is not None or self._clock() - self._opened_at >= self.reset_timeout:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether the caller may use the dependency now; in half-open, True for one trial only."""
        if self._opened_at is None:
            return True
        now = self._clock()
        if now - self._opened_at < self.reset_timeout:
            return False
        # A trial whose caller was cancelled never reports back; presume it failed after another
        # reset_timeout so the breaker cannot stay half-open (refusing everything) forever.
        if self._trial_started_at is not None and now - self._trial_started_at < self.reset_timeout:
            return False
        self._trial_started_at = now
        return True

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_started_at = None

    def release(self) -> None:
        """The caller never reached the dependency: free a half-open trial slot without a verdict."""
        self._trial_started_at = None

    def record_failure(self) -> None:
        now = self._clock()
        if self._opened_at is not None:
            # A failed trial (or a call that started before the breaker opened) restarts the pause.
            self._opened_at = now
            self._trial_started_at = None
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._opened_at = now

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r})"
