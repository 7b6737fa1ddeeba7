"""Response bodies of `/me`."""

from __future__ import annotations

from pydantic import BaseModel

from kindred.auth.schemas import UserRead


class MeRead(BaseModel):
    user: UserRead
