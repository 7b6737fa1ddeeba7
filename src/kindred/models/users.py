"""Accounts and their public profile."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Date, Float, ForeignKey, Index, Integer, String, Text
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
    last_active_at: Mapped[datetime | None] = mapped_column(index=True)  # discovery windows walk it
    deleted_at: Mapped[datetime | None]

    profile: Mapped[Profile] = relationship(back_populates="user", lazy="raise", uselist=False)


class Gender(StrEnum):
    woman = "woman"
    man = "man"
    nonbinary = "nonbinary"


class Profile(Base):
    """What others may see of a person (as a Card), their preferences, and their private location.

    `lat`/`lng` are exact and never leave the service except in the owner's export; `cell_lat`/`cell_lng`
    are the same point snapped to a ~1 km grid, the only position distances and the distance filter use.
    """

    __tablename__ = "profiles"
    __table_args__ = (Index("ix_profiles_discovery", "show_me", "gender", "cell_lat", "cell_lng"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(50))
    bio: Mapped[str] = mapped_column(Text, default="")
    gender: Mapped[str | None] = mapped_column(String(16))
    interested_in: Mapped[list[str]] = mapped_column(JSON, default=list)
    age_min: Mapped[int] = mapped_column(Integer, default=18)
    age_max: Mapped[int] = mapped_column(Integer, default=100)
    max_distance_km: Mapped[int] = mapped_column(Integer, default=50)
    interests: Mapped[list[str]] = mapped_column(JSON, default=list)
    prompts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    height_cm: Mapped[int | None] = mapped_column(Integer)
    job_title: Mapped[str | None] = mapped_column(String(100))
    school: Mapped[str | None] = mapped_column(String(100))
    show_me: Mapped[bool] = mapped_column(Boolean, default=True)
    incognito: Mapped[bool] = mapped_column(Boolean, default=False)
    hide_presence: Mapped[bool] = mapped_column(Boolean, default=False)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    hidden_pending_review: Mapped[bool] = mapped_column(Boolean, default=False)
    lat: Mapped[float | None] = mapped_column(Float)
    lng: Mapped[float | None] = mapped_column(Float)
    cell_lat: Mapped[float | None] = mapped_column(Float)
    cell_lng: Mapped[float | None] = mapped_column(Float)
    location_updated_at: Mapped[datetime | None]
    boost_until: Mapped[datetime | None] = mapped_column(index=True)  # the boosted join the first window
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    user: Mapped[User] = relationship(back_populates="profile", lazy="raise")


class BannedEmail(Base):
    """Addresses refused at registration, stored only as a keyed hash (HMAC with SECRET_KEY)."""

    __tablename__ = "banned_emails"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = created_at_column()
