"""Audit trail: one row per security-relevant action, written in the request's transaction, and logged."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import AuditEntry
from kindred.observability.logging import get_logger

log = get_logger("kindred.audit")


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
    log.info(
        "audit." + action,
        actor_id=str(actor_id) if actor_id else None,
        target_type=target_type,
        target_id=entry.target_id,
        request_id=request_id,
    )
    return entry
