"""Idempotency keys: one row per (user, key), holding the first response of an unsafe POST for 24 h."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from kindred.models.base import Base, created_at_column


class IdempotencyState(StrEnum):
    in_progress = "in_progress"
    completed = "completed"


class IdempotencyKey(Base):
    """Keys are scoped per user: the primary key is (user_id, key), so two users' keys never meet.

    `lock_token` names the request that owns an in-progress row; every claim or takeover writes a new
    one and every later write is conditional on it, so a request that lost its claim cannot overwrite
    the new owner's row. `created_at` bounds the 24 h lifetime (indexed so operators can purge).
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    lock_token: Mapped[uuid.UUID]
    locked_at: Mapped[datetime]
    created_at: Mapped[datetime] = created_at_column()
    completed_at: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_content_type: Mapped[str | None] = mapped_column(String(255))
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
