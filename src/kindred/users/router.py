"""`/api/v1/me`: the caller's own account (later issues add profile, photos, quotas, entitlements)."""

from __future__ import annotations

from fastapi import APIRouter

from kindred.auth.dependencies import CurrentUser
from kindred.auth.service import user_from_state
from kindred.users.schemas import MeRead

router = APIRouter(tags=["me"])


@router.get("/me", response_model=MeRead)
async def get_me(principal: CurrentUser) -> MeRead:
    return MeRead(user=user_from_state(principal.state))
