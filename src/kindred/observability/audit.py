"""Audit trail: one row per security-relevant action, written in the request's transaction, and logged.

The row and the `kindred.audit` log line tell the same story: the line is written when the transaction
commits, and dropped when it rolls back, so the log never records an action that did not happen.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from kindred.models import AuditEntry
from kindred.observability.logging import get_logger

log = get_logger("kindred.audit")

_PENDING = "audit_log_pending"


def record(
    session: AsyncSession,
    action: str,
    *,
    actor_id: uuid.UUID | None = None,
    target_type: str | None = None,
    target_id: uuid.UUID | str | None = None,
    reason: str | None = None,
    request_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        actor_id=actor_id,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        reason=reason,
        request_id=request_id,
        meta=meta,
    )
    session.add(entry)
    fields = {
        "actor_id": str(actor_id) if actor_id else None,
        "target_type": target_type,
        "target_id": entry.target_id,
        "request_id": request_id,
    }
    pending: list[Callable[[], None]] = session.info.setdefault(_PENDING, [])
    pending.append(lambda: log.info("audit." + action, **fields))
    return entry


# Session-level events fire for the outermost transaction only: a SAVEPOINT neither writes nor drops lines.
@event.listens_for(Session, "after_commit")
def _write_lines(session: Session) -> None:
    for write in session.info.pop(_PENDING, []):
        write()


@event.listens_for(Session, "after_rollback")
def _drop_lines(session: Session) -> None:
    session.info.pop(_PENDING, None)
