"""What every authenticated request needs about its session and user, cached with safe invalidation.

The state is read from the database once and kept in the cache for SESSION_CACHE_TTL seconds. Writers
never race it back to life: revocation overwrites the entry with a tombstone after commit, and readers
only ever *add* (SET NX) what they loaded, so a reader that loaded a session just before it was revoked
cannot replace the tombstone with its stale copy.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth import exceptions as exc
from kindred.auth.repository import AccountRepository
from kindred.kit import clock
from kindred.kit.cache import Cache
from kindred.kit.db import Database
from kindred.kit.errors import SessionRevoked
from kindred.models import AccountStatus
from kindred.realtime.events import close_user_sessions

PREFIX = "auth:sess:"
_TOMBSTONE = "revoked"


@dataclass(frozen=True)
class SessionState:
    user_id: uuid.UUID
    role: str
    tier: str
    status: str
    suspended_until: datetime | None
    expires_at: datetime
    email: str
    display_name: str
    email_verified: bool
    created_at: datetime

    def dumps(self) -> str:
        return json.dumps(
            {
                "u": str(self.user_id), "r": self.role, "t": self.tier, "s": self.status,
                "su": self.suspended_until.isoformat() if self.suspended_until else None,
                "e": self.expires_at.isoformat(), "m": self.email, "n": self.display_name,
                "v": self.email_verified, "c": self.created_at.isoformat(),
            }
        )  # fmt: skip

    @classmethod
    def loads(cls, raw: str) -> SessionState:
        d = json.loads(raw)
        return cls(
            user_id=uuid.UUID(d["u"]), role=d["r"], tier=d["t"], status=d["s"],
            suspended_until=datetime.fromisoformat(d["su"]) if d["su"] else None,
            expires_at=datetime.fromisoformat(d["e"]), email=d["m"], display_name=d["n"],
            email_verified=d["v"], created_at=datetime.fromisoformat(d["c"]),
        )  # fmt: skip


async def _load(session: AsyncSession, session_id: uuid.UUID) -> SessionState | None:
    found = await AccountRepository(session).session_state_row(session_id)
    if found is None:
        return None
    auth_session, user, display_name = found
    if auth_session.revoked_at is not None:
        return None
    return SessionState(
        user_id=user.id, role=user.role, tier=user.tier, status=user.status, suspended_until=user.suspended_until,
        expires_at=auth_session.expires_at, email=user.email, display_name=display_name,
        email_verified=user.email_verified_at is not None, created_at=user.created_at,
    )  # fmt: skip


async def resolve(db: Database, cache: Cache, session_id: uuid.UUID, user_id: uuid.UUID, ttl: int) -> SessionState:
    """The live state of `session_id`, or SessionRevoked / AccountSuspended. One cache read when warm."""
    key = PREFIX + str(session_id)
    raw = await cache.get(key) if ttl > 0 else None
    if raw == _TOMBSTONE:
        raise SessionRevoked()
    if raw is not None:
        state: SessionState | None = SessionState.loads(raw)
    else:
        async with db.unit_of_work() as session:
            state = await _load(session, session_id)
        if state is not None and ttl > 0:
            await cache.add(key, state.dumps(), ttl=ttl)
    _check(state, user_id)
    assert state is not None
    return state


def _check(state: SessionState | None, user_id: uuid.UUID) -> None:
    """The session must be live and the account allowed in, right now."""
    if state is None or state.user_id != user_id or state.expires_at <= clock.now():
        raise SessionRevoked()
    if state.status in {AccountStatus.banned, AccountStatus.deleted}:
        raise SessionRevoked()
    suspended = state.status == AccountStatus.suspended
    if suspended and (state.suspended_until is None or state.suspended_until > clock.now()):
        raise exc.AccountSuspended(state.suspended_until)


async def mark_revoked(cache: Cache, session_ids: list[uuid.UUID], ttl: int) -> None:
    """After the revocation committed: tombstones that outlive any copy a concurrent reader may add."""
    if ttl <= 0:
        return
    for sid in session_ids:
        await cache.set(PREFIX + str(sid), _TOMBSTONE, ttl=2 * ttl + 30)


async def end_sessions(cache: Cache, user_id: uuid.UUID, session_ids: list[uuid.UUID], ttl: int) -> None:
    """After a revocation committed: the tombstones, then every instance closes those sessions' sockets
    (4001). Tombstones first, so a client reconnecting on its close is refused."""
    await mark_revoked(cache, session_ids, ttl)
    await close_user_sessions(cache, user_id, session_ids)


async def forget(cache: Cache, session_ids: list[uuid.UUID]) -> None:
    """After a committed change to the user's fields: the next request reloads them."""
    if session_ids:
        await cache.delete(*(PREFIX + str(sid) for sid in session_ids))
