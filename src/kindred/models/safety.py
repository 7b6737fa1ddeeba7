"""Blocks, reports and the moderation queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kindred.models.base import Base, created_at_column, uuid_pk


class Block(Base):
    __tablename__ = "blocks"
    __table_args__ = (Index("ix_blocks_blocked_id", "blocked_id"),)

    blocker_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    blocked_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    created_at: Mapped[datetime] = created_at_column()


class ReportReason(StrEnum):
    fake_profile = "fake_profile"
    harassment = "harassment"
    inappropriate_photos = "inappropriate_photos"
    spam = "spam"
    underage = "underage"
    scam = "scam"
    other = "other"


class Report(Base):
    __tablename__ = "reports"
    __table_args__ = (
        Index("ix_reports_reported_id_status", "reported_id", "status"),
        Index("ix_reports_reporter_id", "reporter_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    reporter_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reported_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(32))
    details: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[uuid.UUID | None]
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = created_at_column()


class ModerationItem(Base):
    """Work for moderators: raised by the system (e.g. a report threshold), resolved by staff."""

    __tablename__ = "moderation_items"
    __table_args__ = (Index("ix_moderation_items_status_priority", "status", "priority"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    kind: Mapped[str] = mapped_column(String(32))
    subject_user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="open")
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
