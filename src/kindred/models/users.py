"""Accounts and their public profile."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kindred.models.base import Base, created_at_column, utcnow, uuid_pk


class Role(StrEnum):
    user = "user"
    moderator = "moderator"
    admin = "admin"


class Tier(StrEnum):
    free = "free"
    premium = "premium"


class AccountStatus(StrEnum):
    active = "active"
    suspended = "suspended"
    banned = "banned"
    deleted = "deleted"


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    birthdate: Mapped[date] = mapped_column(Date())
    role: Mapped[str] = mapped_column(String(16), default=Role.user.value)
    tier: Mapped[str] = mapped_column(String(16), default=Tier.free.value)
    status: Mapped[str] = mapped_column(String(16), default=AccountStatus.active.value, index=True)
    suspended_until: Mapped[datetime | None]
    terms_version: Mapped[str] = mapped_column(String(32))
    email_verified_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_active_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    profile: Mapped[Profile] = relationship(back_populates="user", lazy="raise", uselist=False)


class Profile(Base):
    __tablename__ = "profiles"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(50))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="profile", lazy="raise")


class BannedEmail(Base):
    """Addresses refused at registration, stored only as a keyed hash (HMAC with SECRET_KEY)."""

    __tablename__ = "banned_emails"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at_column()
