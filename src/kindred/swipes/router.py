"""`/api/v1/swipes`, `/api/v1/swipes/undo`, `/api/v1/likes/received` and `/api/v1/boosts`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, status

from kindred.auth.dependencies import CurrentUser
from kindred.kit.deps import SessionDep, request_id
from kindred.kit.handlers import ErrorBody
from kindred.kit.pagination import CursorParam, LimitParam
from kindred.middleware.idempotency import IDEMPOTENCY_409, IDEMPOTENCY_422, Idempotent
from kindred.swipes.schemas import BoostCreated, LikesReceivedPage, SwipeCreate, SwipeCreated, UndoRead
from kindred.swipes.service import SwipeService


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in pairs}


async def get_swipe_service(request: Request, session: SessionDep) -> SwipeService:
    return SwipeService(session, request_id=request_id(request))


SwipeServiceDep = Annotated[SwipeService, Depends(get_swipe_service)]

router = APIRouter(tags=["swipes"])


@router.post(
    "/swipes",
    status_code=status.HTTP_201_CREATED,
    response_model=SwipeCreated,
    responses=_errors(
        (404, "user_not_found"),
        (409, f"already_swiped, {IDEMPOTENCY_409}"),
        (422, f"validation_error, {IDEMPOTENCY_422}"),
        (429, "quota_exhausted (details.resets_at, Retry-After)"),
    ),
)
async def swipe(body: SwipeCreate, principal: CurrentUser, _: Idempotent, service: SwipeServiceDep) -> SwipeCreated:
    return await service.swipe(principal, body)


@router.post(
    "/swipes/undo",
    response_model=UndoRead,
    responses=_errors((403, "premium_required"), (409, "nothing_to_undo")),
)
async def undo_swipe(principal: CurrentUser, service: SwipeServiceDep) -> UndoRead:
    return await service.undo(principal)


@router.get("/likes/received", response_model=LikesReceivedPage)
async def likes_received(
    principal: CurrentUser, service: SwipeServiceDep, limit: LimitParam = 20, cursor: CursorParam = None
) -> LikesReceivedPage:
    return await service.likes_received(principal, limit=limit, cursor=cursor)


@router.post(
    "/boosts",
    status_code=status.HTTP_201_CREATED,
    response_model=BoostCreated,
    responses=_errors(
        (403, "premium_required"),
        (409, f"boost_active, {IDEMPOTENCY_409}"),
        (422, f"validation_error, {IDEMPOTENCY_422}"),
    ),
)
async def boost(principal: CurrentUser, _: Idempotent, service: SwipeServiceDep) -> BoostCreated:
    return await service.boost(principal)
