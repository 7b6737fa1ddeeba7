"""Application metrics: Prometheus families on the app's own registry, mirrored to DogStatsD when configured.

One `Metrics` per app (created by create_app, never a module global), so apps living side by side in
one process (tests) never share a counter. What is exported, and what each number means, is listed in
docs/operations.md ("Metrics").

- HTTP: requests by route template, method and status; latency by route template and method; in flight
  (recorded by kindred.middleware.metrics).
- Business events, counted once their transaction committed: `count_after_commit(session, event)` from
  a service, `count_now(...)` outside a request (operator jobs).
- Read at scrape time by a collector: database pool, cache hits/misses/mode, active users, in flight.
- Event-loop lag, measured by a background task the lifespan starts (`start`) and stops (`close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.util.queue import AsyncAdaptedQueue

from kindred.kit.db import after_commit
from kindred.observability.logging import get_logger

if TYPE_CHECKING:
    from datadog.dogstatsd.base import DogStatsd
    from sqlalchemy.ext.asyncio import AsyncSession

    from kindred.settings import Settings

log = get_logger(__name__)

# Key in `AsyncSession.info` under which the lifespan puts the app's Metrics (like EVENT_BUS).
APP_METRICS = "app_metrics"

BusinessEvent = Literal[
    "signup.registered",  # an account was created (POST /auth/register with a new address)
    "signup.verified",  # that account's email address was verified for the first time
    "match.created",
    "message.sent",  # a new message (a client_id retry is not counted again)
    "premium.converted",  # a member's tier went from free to premium
    "photo.uploaded",
]

# DogStatsD name and tags of each business event (Prometheus: the counters in Metrics.__init__).
STATSD_NAMES: dict[str, tuple[str, list[str]]] = {
    "signup.registered": ("kindred.signups", ["stage:registered"]),
    "signup.verified": ("kindred.signups", ["stage:verified"]),
    "match.created": ("kindred.matches", []),
    "message.sent": ("kindred.messages", []),
    "premium.converted": ("kindred.premium_conversions", []),
    "photo.uploaded": ("kindred.photo_uploads", []),
}

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LOOP_LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
LOOP_LAG_INTERVAL = 0.5  # seconds between event-loop lag samples
STATSD_QUEUE_SIZE = 1024  # datagrams waiting for the sender thread; when full the oldest is dropped
STATSD_STOP_TIMEOUT = 2.0  # seconds shutdown waits for the sender to drain
STATSD_PUSH_INTERVAL = 10.0  # seconds between DogStatsD gauge pushes (pool, cache, active users, in flight)
ACTIVE_WINDOWS = (("5m", 300.0), ("24h", 86_400.0))  # label, seconds; the last one is the longest
ACTIVE_MAX_TRACKED = 100_000  # distinct users remembered per instance (≈20 MB at most); oldest dropped first


class ActiveUsers:
    """Distinct authenticated users this instance served, by window; ids stay in memory, never exported.

    Ordered by last request, so recording is O(1), pruning pops from the old end and a short window is
    counted from the new end without touching older entries.
    """

    def __init__(self, *, max_tracked: int = ACTIVE_MAX_TRACKED, clock: Any = time.monotonic) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._max = max_tracked
        self._clock = clock

    def seen(self, user_id: str) -> None:
        seen = self._seen
        seen[user_id] = self._clock()
        seen.move_to_end(user_id)
        if len(seen) > self._max:
            seen.popitem(last=False)

    def prune(self) -> None:
        """Forget users not seen within the longest window."""
        seen, cutoff = self._seen, self._clock() - ACTIVE_WINDOWS[-1][1]
        while seen:
            oldest = next(iter(seen.values()))
            if oldest >= cutoff:
                break
            seen.popitem(last=False)

    def counts(self) -> dict[str, int]:
        self.prune()
        now, counts = self._clock(), {ACTIVE_WINDOWS[-1][0]: len(self._seen)}
        for label, seconds in ACTIVE_WINDOWS[:-1]:
            cutoff, n = now - seconds, 0
            for last in reversed(self._seen.values()):
                if last < cutoff:
                    break
                n += 1
            counts[label] = n
        return counts


def pool_waiters(pool: Any) -> int | None:
    """Checkouts queued for a pooled connection right now, or None where that cannot be known.

    SQLAlchemy exposes size, checked-in, checked-out and overflow, but no waiter count. Its asyncio
    pool (AsyncAdaptedQueuePool, which both our dialects use) keeps idle connections in an asyncio.Queue;
    a checkout that finds the pool and overflow exhausted waits on that queue's `get()`. We count those
    waiting futures. The queue is created lazily: reading the memoised attribute from `__dict__` does
    not create it (no queue yet means nobody waits).
    """
    queue = getattr(pool, "_pool", None)
    if not isinstance(queue, AsyncAdaptedQueue):
        return None
    inner = queue.__dict__.get("_queue")
    if inner is None:
        return 0
    getters = getattr(inner, "_getters", None)
    if getters is None:  # asyncio internals changed: say nothing rather than something wrong
        return None
    return sum(1 for waiter in getters if not waiter.done())


class _HttpChildren(NamedTuple):
    requests: Any  # Counter child
    latency: Any  # Histogram child
    tags: list[str]  # DogStatsD tags: route, method, status
    latency_tags: list[str]  # route, method


def _statsd_client(settings: Settings) -> DogStatsd:
    """UDP, with no socket work on the event loop: metrics are packed into datagrams (flushed every 0.3 s
    by the client's flush thread, or when one is full) and handed to its sender thread through a bounded
    queue that drops its oldest datagram rather than wait when full. The socket is non-blocking (timeout 0)."""
    from datadog.dogstatsd.base import DogStatsd

    _quiet_client_warnings()
    return DogStatsd(
        host=settings.dd_agent_host,
        port=settings.dd_dogstatsd_port,
        disable_buffering=False,
        disable_background_sender=False,
        sender_queue_size=STATSD_QUEUE_SIZE,
        sender_queue_timeout=0,
        disable_telemetry=True,
        socket_timeout=0,
    )


def _open_statsd(settings: Settings) -> DogStatsd:
    client = _statsd_client(settings)
    try:
        client.get_socket()
    except OSError as exc:  # the agent's name does not resolve yet: the sender thread retries per datagram
        log.warning("metrics.statsd_unavailable", error=type(exc).__name__)
    return client


def _close_statsd(client: DogStatsd) -> None:
    """Blocking: hand what is buffered to the sender, stop the flush thread, drain the sender, close."""
    client.flush()
    client.disable_buffering = True  # stops the flush thread (after at most one 0.3 s sleep)
    client.stop(timeout=STATSD_STOP_TIMEOUT)


class _OncePerMinute(logging.Filter):
    """The client warns on every datagram it cannot send (agent down: every 0.3 s): keep one a minute."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -60.0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        if now - self._last < 60.0:
            return False
        self._last = now
        return True


def _quiet_client_warnings() -> None:
    client_log = logging.getLogger("datadog.dogstatsd")
    if not any(isinstance(f, _OncePerMinute) for f in client_log.filters):
        client_log.addFilter(_OncePerMinute())


class Metrics:
    """The app's metric families and its optional DogStatsD client."""

    def __init__(self, registry: CollectorRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.lag_interval = LOOP_LAG_INTERVAL
        self.push_interval = STATSD_PUSH_INTERVAL
        self.statsd: DogStatsd | None = None
        self.in_flight = 0  # the middleware adds and subtracts; exported by the collector at scrape
        self.active_users = ActiveUsers()
        self._state: Any = None  # app.state once started: db and cache for the collector
        self._task: asyncio.Task[None] | None = None
        self._http: dict[tuple[str, str, int], _HttpChildren] = {}
        self._cache_sent = (0, 0)  # hits, misses already sent to DogStatsD as counts

        self.http_requests = Counter(
            "kindred_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.http_latency = Histogram(
            "kindred_http_request_duration_seconds",
            "Time from the request reaching the app to the end of its response, by route template and method.",
            ["route", "method"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )
        self.signups = Counter(
            "kindred_signups",
            "Accounts created (stage=registered) and email addresses verified for the first time (stage=verified).",
            ["stage"],
            registry=registry,
        )
        self.matches = Counter("kindred_matches", "Matches created.", registry=registry)
        self.messages = Counter("kindred_messages", "Chat messages sent (retries not counted).", registry=registry)
        self.premium_conversions = Counter(
            "kindred_premium_conversions", "Members whose tier changed from free to premium.", registry=registry
        )
        self.photo_uploads = Counter("kindred_photo_uploads", "Photos uploaded and stored.", registry=registry)
        self.loop_lag = Histogram(
            "kindred_event_loop_lag_seconds",
            f"How late the event loop ran a timer that was due, sampled every {LOOP_LAG_INTERVAL} s.",
            buckets=LOOP_LAG_BUCKETS,
            registry=registry,
        )
        self.loop_lag_last = Gauge(
            "kindred_event_loop_lag_last_seconds", "The latest event-loop lag sample.", registry=registry
        )
        counters = {
            "signup.registered": self.signups.labels("registered"),
            "signup.verified": self.signups.labels("verified"),
            "match.created": self.matches,
            "message.sent": self.messages,
            "premium.converted": self.premium_conversions,
            "photo.uploaded": self.photo_uploads,
        }
        self._business = {event: (counter, *STATSD_NAMES[event]) for event, counter in counters.items()}
        registry.register(_LiveCollector(self))

    # ------------------------------------------------------------------ recording
    def request_finished(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._http.get(key)
        if children is None:  # once per (route, method, status): label lookups are not free
            tags = [f"route:{route}", f"method:{method}", f"status:{status}"]
            children = self._http[key] = _HttpChildren(
                self.http_requests.labels(route, method, str(status)),
                self.http_latency.labels(route, method),
                tags,
                tags[:2],
            )
        children.requests.inc()
        children.latency.observe(seconds)
        statsd = self.statsd
        if statsd is not None:
            statsd.increment("kindred.http.requests", tags=children.tags)
            statsd.histogram("kindred.http.request.duration", seconds, tags=children.latency_tags)

    def count(self, event: BusinessEvent) -> None:
        counter, name, tags = self._business[event]
        counter.inc()
        if self.statsd is not None:
            self.statsd.increment(name, tags=tags)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, state: Any) -> None:
        """Called by the lifespan once db and cache exist: the collector can read them, sampling begins."""
        self._state = state
        if self.settings.dd_agent_host:
            self.statsd = await asyncio.to_thread(_open_statsd, self.settings)  # file and name lookups
        self._task = asyncio.create_task(self._sample(), name="kindred-metrics-sampler")

    async def close(self) -> None:
        """Stop sampling; flush and close DogStatsD. For `app.state.flush_on_shutdown`."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        statsd, self.statsd = self.statsd, None
        if statsd is not None:
            self._push_gauges(statsd)
            await asyncio.to_thread(_close_statsd, statsd)

    async def _sample(self) -> None:
        """Event-loop lag every `lag_interval`: how much later than due a sleep's timer fired."""
        last_push = time.perf_counter()
        while True:
            interval = self.lag_interval
            started = time.perf_counter()
            await asyncio.sleep(interval)
            now = time.perf_counter()
            try:
                lag = max(0.0, now - started - interval)
                self.loop_lag.observe(lag)
                self.loop_lag_last.set(lag)
                statsd = self.statsd
                if statsd is not None:
                    statsd.histogram("kindred.event_loop.lag", lag)
                if now - last_push >= self.push_interval:
                    last_push = now
                    self.active_users.prune()
                    if statsd is not None:
                        self._push_gauges(statsd)
            except Exception as exc:  # a metrics hiccup must never end the sampling
                log.warning("metrics.sample_failed", error=type(exc).__name__)

    def _push_gauges(self, statsd: DogStatsd) -> None:
        """What Prometheus reads at scrape time, sent to DogStatsD every `push_interval` instead."""
        statsd.gauge("kindred.http.requests.in_flight", self.in_flight)
        for window, n in self.active_users.counts().items():
            statsd.gauge("kindred.active_users", n, tags=[f"window:{window}"])
        pool = self.pool()
        if pool is not None:
            for key in ("in_use", "idle", "overflow", "waiting"):
                if pool.get(key) is not None:
                    statsd.gauge(f"kindred.db.pool.{key}", pool[key])
        cache = self.cache()
        if cache is not None:
            hits, misses = int(cache.get("hits", 0)), int(cache.get("misses", 0))
            sent_hits, sent_misses = self._cache_sent
            statsd.count("kindred.cache.hits", hits - sent_hits if hits >= sent_hits else hits)
            statsd.count("kindred.cache.misses", misses - sent_misses if misses >= sent_misses else misses)
            self._cache_sent = (hits, misses)
            statsd.gauge("kindred.cache.redis", 1 if cache.get("mode") == "redis" else 0)

    # ------------------------------------------------------------------ read at scrape
    def pool(self) -> dict[str, Any] | None:
        db = getattr(self._state, "db", None)
        if db is None:
            return None
        stats = dict(db.pool_stats())
        stats["waiting"] = pool_waiters(db.engine.pool)
        return stats

    def cache(self) -> dict[str, Any] | None:
        cache = getattr(self._state, "cache", None)
        return None if cache is None else dict(cache.stats())


class _LiveCollector(Collector):
    """Values that exist elsewhere (pool, cache, in-flight count, active users), read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return list(self._families(live=False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(live=True))

    def _families(self, *, live: bool) -> Iterator[Metric]:
        m = self._metrics
        pool, cache = (m.pool(), m.cache()) if live else (None, None)
        in_flight = GaugeMetricFamily(
            "kindred_http_requests_in_flight", "HTTP requests being served right now (WebSockets not included)."
        )
        active = GaugeMetricFamily(
            "kindred_active_users",
            "Distinct signed-in users this instance served an HTTP request to within the window (per instance).",
            labels=["window"],
        )
        if live:
            in_flight.add_metric([], m.in_flight)
            for window, n in m.active_users.counts().items():
                active.add_metric([window], n)
        yield in_flight
        yield active
        gauges = {
            "in_use": "Pooled database connections checked out now.",
            "idle": "Pooled database connections open and idle now.",
            "overflow": "Connections open beyond the pool size (counted in in_use or idle).",
            "capacity": "Most connections this instance may open: pool size + max overflow.",
            "waiting": "Checkouts waiting for a connection because the pool and overflow are exhausted.",
        }
        for key, text in gauges.items():
            family = GaugeMetricFamily(f"kindred_db_pool_{key}", text)
            if pool is not None and pool.get(key) is not None:
                family.add_metric([], pool[key])
            yield family
        hits = CounterMetricFamily("kindred_cache_hits", "Cache reads that found a value (Redis and memory).")
        misses = CounterMetricFamily("kindred_cache_misses", "Cache reads that found nothing.")
        failures = CounterMetricFamily(
            "kindred_cache_redis_failures", "Redis calls that failed and were served from memory instead."
        )
        mode = GaugeMetricFamily(
            "kindred_cache_mode",
            "1 for the cache's current mode: redis, or memory (embedded or fallback).",
            labels=["mode"],
        )
        if cache is not None:
            hits.add_metric([], cache.get("hits", 0))
            misses.add_metric([], cache.get("misses", 0))
            failures.add_metric([], cache.get("redis_failures", 0))
            for name in ("redis", "memory"):
                mode.add_metric([name], 1.0 if cache.get("mode") == name else 0.0)
        yield from (hits, misses, failures, mode)


# ---------------------------------------------------------------------------------------------- counting


def count_after_commit(session: AsyncSession, event: BusinessEvent) -> None:
    """Count `event` once `session`'s transaction commits (never if it rolls back).

    The app's Metrics rides in the session's info (put there by the lifespan, like the event bus);
    sessions made outside the app count nothing.
    """
    metrics: Metrics | None = session.info.get(APP_METRICS)
    if metrics is None:
        return

    async def bump() -> None:
        metrics.count(event)

    after_commit(session, bump)


async def count_now(settings: Settings, event: BusinessEvent, metrics: Metrics | None = None) -> None:
    """Count a committed event outside a request: on `metrics` when the caller runs inside an app; else,
    in an operator process (the CLI) that nobody scrapes, through a one-off DogStatsD datagram when
    DD_AGENT_HOST is set — and nowhere otherwise."""
    if metrics is not None:
        metrics.count(event)
        return
    if not settings.dd_agent_host:
        return
    from datadog.dogstatsd.base import DogStatsd

    name, tags = STATSD_NAMES[event]

    def send() -> None:
        client = DogStatsd(
            host=settings.dd_agent_host, port=settings.dd_dogstatsd_port, disable_telemetry=True, socket_timeout=0
        )
        try:
            client.increment(name, tags=tags)
        finally:
            client.close_socket()

    try:
        await asyncio.to_thread(send)
    except OSError as exc:
        log.warning("metrics.statsd_unavailable", error=type(exc).__name__)
