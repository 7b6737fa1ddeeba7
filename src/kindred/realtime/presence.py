"""Presence: online while a socket is open, shown to matches only as a coarse bucket.

`presence:{user_id}` in the cache counts the instances holding at least one socket of the user; each
instance counts its own sockets in memory and moves the shared counter only when its first socket opens
or its last one closes. The key has a TTL (PRESENCE_TTL) that open sockets refresh, so an instance that
crashes leaves it behind for at most that long. `users.last_active_at` is written at most once a minute
per user (a cache key throttles it across instances).

Buckets: `online` (the key is there), `today` (last active within 24 h), `this_week` (7 days), `earlier`.
Matches get `presence {user_id, bucket}` when someone comes online (first socket anywhere) and goes
offline (last socket anywhere) — never when that person set `hide_presence`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from kindred.kit import clock
from kindred.kit.cache import Cache
from kindred.kit.db import Database
from kindred.observability.logging import get_logger
from kindred.realtime.events import publish
from kindred.realtime.repository import RealtimeRepository

log = get_logger(__name__)

Bucket = Literal["online", "today", "this_week", "earlier"]

PRESENCE_TTL = 60.0  # seconds the key outlives the last refresh (a crashed instance's sockets)
PRESENCE_REFRESH = 20.0  # how often an open socket refreshes it
LAST_ACTIVE_EVERY = 60.0  # at most one users.last_active_at write per user per this many seconds
PRESENCE_EVENT = "presence"


def presence_key(user_id: uuid.UUID | str) -> str:
    return f"presence:{user_id}"


def _touch_key(user_id: uuid.UUID | str) -> str:
    return f"presence:seen:{user_id}"


def bucket_for(online: bool, last_active_at: datetime | None, now: datetime) -> Bucket:
    if online:
        return "online"
    if last_active_at is None:
        return "earlier"
    age = now - last_active_at
    if age <= timedelta(hours=24):
        return "today"
    if age <= timedelta(days=7):
        return "this_week"
    return "earlier"


async def is_online(cache: Cache, user_id: uuid.UUID) -> bool:
    raw = await cache.get(presence_key(user_id))
    try:
        return raw is not None and int(raw) > 0
    except ValueError:
        return False


async def buckets(
    cache: Cache, rows: Iterable[tuple[uuid.UUID, datetime | None]], *, now: datetime | None = None
) -> dict[uuid.UUID, Bucket]:
    """The bucket of each `(user_id, last_active_at)`; cache reads run concurrently (one per user).

    Privacy is the caller's: leave out people who set `hide_presence` (their Card has no bucket).
    """
    pairs = dict(rows)
    now = now or clock.now()
    online = await asyncio.gather(*(is_online(cache, user_id) for user_id in pairs))
    return {
        user_id: bucket_for(up, last_active_at, now)
        for (user_id, last_active_at), up in zip(pairs.items(), online, strict=True)
    }


class Presence:
    """This instance's sockets per user, the shared presence key, and `presence` events to matches."""

    def __init__(self, db: Database, cache: Cache) -> None:
        self._db = db
        self._cache = cache
        self._local: Counter[uuid.UUID] = Counter()
        self._holding: set[uuid.UUID] = set()  # users for whom this instance added its 1 to the counter
        # Serialises one user's first-open / last-close transitions on this instance, so a socket
        # opening while the previous one is closing cannot leave the shared counter one short.
        self._locks: dict[uuid.UUID, asyncio.Lock] = {}

    def local_sockets(self, user_id: uuid.UUID) -> int:
        return self._local[user_id]

    def _lock(self, user_id: uuid.UUID) -> asyncio.Lock:
        lock = self._locks.get(user_id)
        if lock is None:
            lock = self._locks[user_id] = asyncio.Lock()
        return lock

    async def connected(self, user_id: uuid.UUID) -> None:
        """A socket of the user opened here (after auth). Announces `online` if it is their first anywhere."""
        self._local[user_id] += 1  # before waiting: a closing socket then sees it and keeps the key
        came_online = False
        async with self._lock(user_id):
            if self._local[user_id] > 0 and user_id not in self._holding:
                self._holding.add(user_id)
                came_online = await self._cache.incr(presence_key(user_id), 1, ttl=PRESENCE_TTL) == 1
        await self.seen(user_id)
        if came_online:
            await self._announce(user_id, "online")

    async def disconnected(self, user_id: uuid.UUID) -> None:
        """A socket opened by `connected` closed. Announces offline if it was their last anywhere."""
        self._local[user_id] -= 1
        went_offline = False
        lock = self._lock(user_id)
        async with lock:
            if self._local[user_id] <= 0 and user_id in self._holding:
                self._holding.discard(user_id)
                key = presence_key(user_id)
                if await self._cache.incr(key, -1) <= 0:
                    await self._cache.delete(key)
                    went_offline = True
        if self._local[user_id] <= 0:
            self._local.pop(user_id, None)
            if not lock.locked():
                self._locks.pop(user_id, None)
        await self.seen(user_id)
        if went_offline:
            await self._announce(user_id, None)

    async def refresh(self, user_id: uuid.UUID) -> None:
        """Keep the key alive while a socket is open; put it back if it was lost (Redis restarted)."""
        key = presence_key(user_id)
        async with self._lock(user_id):
            if user_id not in self._holding:
                return
            if await self._cache.get(key) is None:
                await self._cache.incr(key, 1, ttl=PRESENCE_TTL)
            else:
                await self._cache.expire(key, PRESENCE_TTL)
        await self.seen(user_id)

    async def seen(self, user_id: uuid.UUID) -> None:
        """The user did something: `users.last_active_at` moves, at most once a minute per user."""
        if not await self._cache.add(_touch_key(user_id), "1", ttl=LAST_ACTIVE_EVERY):
            return
        async with self._db.unit_of_work() as session:
            await RealtimeRepository(session).touch_last_active(user_id, clock.now())

    async def _announce(self, user_id: uuid.UUID, bucket: Bucket | None) -> None:
        """`presence {user_id, bucket}` to the user's live matches, unless they hide it. None = offline:
        the bucket their last activity (just now) gives, i.e. `today`."""
        now = clock.now()
        async with self._db.unit_of_work() as session:
            repo = RealtimeRepository(session)
            if await repo.hides_presence(user_id):
                return
            partners = await repo.open_match_partners(user_id, now)
        if partners:
            shown = bucket or bucket_for(False, now, now)
            await publish(self._cache, partners, PRESENCE_EVENT, {"user_id": str(user_id), "bucket": shown})
