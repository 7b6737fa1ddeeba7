"""Request and response bodies of the auth API."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, EmailStr, Field


def _lower(value: str) -> str:
    return value.strip().lower()


def _iso_date(value: object) -> date:
    """Only a `YYYY-MM-DD` string is a date here: no timestamps, no other formats (strict input)."""
    if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("must be a date written as YYYY-MM-DD")
    return date.fromisoformat(value)


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


Email = Annotated[EmailStr, AfterValidator(_lower), Field(max_length=320)]
Password = Annotated[str, Field(min_length=1, max_length=256)]
Secret = Annotated[str, Field(min_length=1, max_length=256)]


class Input(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class RegisterIn(Input):
    email: Email
    password: Password
    birthdate: Annotated[IsoDate, Field(description="YYYY-MM-DD")]
    display_name: Annotated[str, Field(min_length=1, max_length=50)]
    accepted_terms_version: Annotated[str, Field(min_length=1, max_length=32)]


class EmailIn(Input):
    email: Email


class TokenIn(Input):
    token: Secret


class LoginIn(Input):
    email: Email
    password: Password
    session: Literal["token", "cookie"] = "token"


class RefreshIn(Input):
    refresh_token: Secret | None = None


class ResetPasswordIn(Input):
    token: Secret
    new_password: Password


class ChangePasswordIn(Input):
    current_password: Password
    new_password: Password


class ChangeEmailIn(Input):
    password: Password
    new_email: Email


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    display_name: str
    role: Literal["user", "moderator", "admin"]
    tier: Literal["free", "premium"]
    email_verified: bool
    created_at: datetime


class TokenPair(BaseModel):
    user: UserRead
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserEnvelope(BaseModel):
    user: UserRead


class Accepted(BaseModel):
    status: str


class CsrfOut(BaseModel):
    csrf_token: str


class SessionRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    user_agent: str | None
    current: bool
