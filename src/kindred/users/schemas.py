"""Response bodies of `/me`."""

from __future__ import annotations

from pydantic import BaseModel

from kindred.auth.schemas import UserRead
from kindred.photos.schemas import PhotoRead
from kindred.profiles.schemas import ProfileRead
from kindred.swipes.quotas import EntitlementsRead, QuotasRead


class MeRead(BaseModel):
    user: UserRead
    profile: ProfileRead
    photos: list[PhotoRead]
    quotas: QuotasRead
    entitlements: EntitlementsRead
