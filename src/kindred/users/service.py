"""The Me object: the caller's account, profile, photos, quotas and entitlements in one read."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal, user_from_state
from kindred.kit import clock
from kindred.models import Profile
from kindred.photos.service import photos_for
from kindred.profiles.service import profile_read
from kindred.swipes.quotas import entitlements, quotas
from kindred.users.schemas import MeRead


async def me(session: AsyncSession, principal: Principal, profile: Profile) -> MeRead:
    now = clock.now()
    user = user_from_state(principal.state).model_copy(update={"display_name": profile.display_name})
    return MeRead(
        user=user,
        profile=profile_read(profile),
        photos=await photos_for(session, principal.user_id, now=now),
        quotas=await quotas(session, principal.user_id, principal.tier, now),
        entitlements=entitlements(principal.tier),
    )
