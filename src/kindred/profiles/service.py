"""Rules for the caller's own profile and private location."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal, forget_user_sessions
from kindred.kit import clock
from kindred.kit.cache import Cache
from kindred.kit.errors import SessionRevoked, ValidationFailed
from kindred.models import Profile, Tier
from kindred.observability.logging import get_logger
from kindred.profiles import geo
from kindred.profiles.exceptions import ImplausibleLocation, InvalidPreferences, PremiumRequired
from kindred.profiles.repository import ProfileRepository
from kindred.profiles.schemas import NULLABLE_FIELDS, ProfileRead, ProfileUpdate

log = get_logger(__name__)


def profile_read(profile: Profile) -> ProfileRead:
    return ProfileRead(
        display_name=profile.display_name, bio=profile.bio, gender=profile.gender,
        interested_in=profile.interested_in, age_min=profile.age_min, age_max=profile.age_max,
        max_distance_km=profile.max_distance_km, interests=profile.interests, prompts=profile.prompts,
        height_cm=profile.height_cm, job_title=profile.job_title, school=profile.school, show_me=profile.show_me,
        incognito=profile.incognito, hide_presence=profile.hide_presence, has_location=profile.lat is not None,
    )  # fmt: skip


class ProfileService:
    def __init__(self, session: AsyncSession, cache: Cache) -> None:
        self.session = session
        self.repo = ProfileRepository(session)
        self.cache = cache

    async def own(self, principal: Principal, *, for_update: bool = False) -> Profile:
        profile = await self.repo.own(principal.user_id, for_update=for_update)
        if profile is None:
            raise SessionRevoked()
        return profile

    async def update(self, principal: Principal, changes: ProfileUpdate) -> Profile:
        values: dict[str, Any] = changes.model_dump(exclude_unset=True, mode="json")
        bad = [name for name, value in values.items() if value is None and name not in NULLABLE_FIELDS]
        if bad:
            raise ValidationFailed(details={"fields": [{"loc": ["body", n], "msg": "may not be null"} for n in bad]})
        if values.get("incognito") and principal.tier != Tier.premium.value:
            raise PremiumRequired()
        profile = await self.own(principal, for_update=True)
        age_min = values.get("age_min", profile.age_min)
        age_max = values.get("age_max", profile.age_max)
        if age_min > age_max:
            raise InvalidPreferences(
                details={"fields": [{"loc": ["body", "age_min"], "msg": "must not be greater than age_max"}]}
            )
        for name, value in values.items():
            setattr(profile, name, value)
        if "display_name" in values:  # shown by GET /me from the cached session state
            await forget_user_sessions(self.session, self.cache, principal.user_id)
        log.info("profile.updated", user_id=str(principal.user_id), fields=sorted(values))
        return profile

    async def set_location(self, principal: Principal, lat: float, lng: float) -> None:
        profile = await self.own(principal, for_update=True)
        now = clock.now()
        if profile.lat is not None and profile.lng is not None and profile.location_updated_at is not None:
            moved_km = geo.haversine_km(profile.lat, profile.lng, lat, lng)
            elapsed = (now - profile.location_updated_at).total_seconds()
            if geo.implausible(moved_km, elapsed):
                raise ImplausibleLocation()
        profile.lat, profile.lng = lat, lng
        profile.cell_lat, profile.cell_lng = geo.snap(lat, lng)
        profile.location_updated_at = now
        log.info("profile.location_updated", user_id=str(principal.user_id))  # never the coordinates
