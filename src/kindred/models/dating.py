"""Photos, swipes, matches, boosts: the dating core's tables."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kindred.models.base import Base, created_at_column, uuid_pk


class PhotoStatus(StrEnum):
    approved = "approved"
    pending = "pending"
    rejected = "rejected"


class Photo(Base):
    __tablename__ = "photos"
    __table_args__ = (Index("ix_photos_user_id_position", "user_id", "position"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=PhotoStatus.approved.value, index=True)
    # Not unique: demo data shares a few stored images; files are deleted only with their last photo row.
    storage_key: Mapped[str] = mapped_column(String(64), index=True)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()


class SwipeAction(StrEnum):
    like = "like"
    pass_ = "pass"
    superlike = "superlike"


class Swipe(Base):
    __tablename__ = "swipes"
    __table_args__ = (
        UniqueConstraint("swiper_id", "target_id"),
        Index("ix_swipes_target_id_action", "target_id", "action"),
        Index("ix_swipes_swiper_id_created_at", "swiper_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    swiper_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = created_at_column()


class Match(Base):
    """One row per pair, ever: `user_low` < `user_high` makes a concurrent mutual like collide on the key."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("user_low", "user_high"),
        CheckConstraint("user_low < user_high", name="ordered_pair"),
        Index("ix_matches_user_high", "user_high"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    user_low: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_high: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = created_at_column()
    last_activity_at: Mapped[datetime] = created_at_column()
    unmatched_at: Mapped[datetime | None]
    unmatched_by: Mapped[uuid.UUID | None]


class Boost(Base):
    __tablename__ = "boosts"
    __table_args__ = (Index("ix_boosts_user_id_ends_at", "user_id", "ends_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = created_at_column()
    ends_at: Mapped[datetime]
