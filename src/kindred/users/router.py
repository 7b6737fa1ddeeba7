"""`/api/v1/me`: the caller's own account, profile and location."""

from __future__ import annotations

from fastapi import APIRouter, Request, status

from kindred.auth.dependencies import CurrentUser
from kindred.kit.deps import SessionDep
from kindred.profiles.schemas import LocationIn, ProfileUpdate
from kindred.profiles.service import ProfileService
from kindred.users.schemas import MeRead
from kindred.users.service import me

router = APIRouter(tags=["me"])


@router.get("/me", response_model=MeRead)
async def get_me(principal: CurrentUser, session: SessionDep, request: Request) -> MeRead:
    profile = await ProfileService(session, request.app.state.cache).own(principal)
    return await me(session, principal, profile)


@router.patch("/me/profile", response_model=MeRead)
async def update_profile(body: ProfileUpdate, principal: CurrentUser, session: SessionDep, request: Request) -> MeRead:
    profile = await ProfileService(session, request.app.state.cache).update(principal, body)
    return await me(session, principal, profile)


@router.put("/me/location", status_code=status.HTTP_204_NO_CONTENT)
async def set_location(body: LocationIn, principal: CurrentUser, session: SessionDep, request: Request) -> None:
    await ProfileService(session, request.app.state.cache).set_location(principal, body.lat, body.lng)
