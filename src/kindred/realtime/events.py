"""Events for users' sockets: `{"type", "data"}` frames on `user:{id}` channels, sent after commit.

Every instance subscribes its own sockets' users to their channels on the cache's pub/sub (Redis in
production, in-process on the embedded stack, in-process fallback while Redis is down), so an event
published by any instance reaches every socket of the user. Events go out only once the transaction
that caused them committed: a client told about a message can always fetch it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import structlog

from kindred.kit.db import after_commit

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from kindred.kit.cache import Cache

log = structlog.get_logger(__name__)

# Key in `AsyncSession.info` under which the app's lifespan puts the cache whose pub/sub carries events.
EVENT_BUS = "event_bus"

# Internal frames (never forwarded to clients) start with this prefix.
INTERNAL_PREFIX = "_"
SESSION_REVOKED = "_session.revoked"  # data: {"session_ids": [...]} or {"all": true}


def user_channel(user_id: uuid.UUID | str) -> str:
    return f"user:{user_id}"


def frame(event_type: str, data: dict[str, Any]) -> str:
    return json.dumps({"type": event_type, "data": data}, default=str, separators=(",", ":"))


async def publish(bus: Cache, user_ids: Iterable[uuid.UUID | str], event_type: str, data: dict[str, Any]) -> None:
    """Publish now (the caller made sure anything it refers to is committed). Never raises."""
    message = frame(event_type, data)
    for user_id in dict.fromkeys(str(u) for u in user_ids):
        try:
            await bus.publish(user_channel(user_id), message)
        except Exception as exc:  # delivery is best effort; clients catch up from the database
            log.warning("events.publish_failed", event=event_type, error=type(exc).__name__)


def emit(session: AsyncSession, user_ids: Iterable[uuid.UUID | str], event_type: str, data: dict[str, Any]) -> None:
    """Queue an event for these users' sockets, published once `session`'s transaction commits."""
    bus: Cache | None = session.info.get(EVENT_BUS)
    if bus is None:  # a session outside the app (CLI, tests of a repository): nobody to tell
        return
    targets = list(user_ids)

    async def send() -> None:
        await publish(bus, targets, event_type, data)

    after_commit(session, send)


def parse(message: str) -> tuple[str, dict[str, Any]] | None:
    """`(type, data)` of a published frame, or None when it is not one (never forwarded then)."""
    try:
        value = json.loads(message)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    data = value.get("data")
    return value["type"], data if isinstance(data, dict) else {}


def is_internal(event_type: str) -> bool:
    return event_type.startswith(INTERNAL_PREFIX)


async def close_user_sessions(
    bus: Cache, user_id: uuid.UUID | str, session_ids: Iterable[uuid.UUID | str] | None = None
) -> None:
    """Close the sockets of these sessions of the user (all of the user's sockets when None) with 4001,
    on every instance at once. Call it after the change that ended them committed. Never raises.

    The one path for every reason a session ends: logout, logout-all, password change or reset, a
    reused refresh token, and (when they arrive) suspension, ban and deletion.
    """
    data: dict[str, Any] = {"all": True} if session_ids is None else {"session_ids": [str(s) for s in session_ids]}
    await publish(bus, [user_id], SESSION_REVOKED, data)
