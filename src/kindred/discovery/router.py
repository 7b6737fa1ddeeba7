"""`/api/v1/discover` and `/api/v1/users/{id}`."""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from kindred.auth.dependencies import CurrentUser
from kindred.discovery.schemas import Card, CardPage
from kindred.discovery.service import DiscoveryService
from kindred.kit.deps import SessionDep, SettingsDep
from kindred.kit.pagination import CursorParam, LimitParam

router = APIRouter(tags=["discovery"])


@router.get("/discover", response_model=CardPage)
async def discover(
    principal: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
) -> CardPage:
    service = DiscoveryService(session, window_size=settings.discovery_window)
    return await service.discover(principal, limit=limit, cursor=cursor)


@router.get("/users/{user_id}", response_model=Card)
async def get_user(user_id: uuid.UUID, principal: CurrentUser, session: SessionDep) -> Card:
    return await DiscoveryService(session).card(principal, user_id)
