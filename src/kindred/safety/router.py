"""`/api/v1/blocks` and `/api/v1/reports`."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from kindred.auth.dependencies import CurrentUser
from kindred.kit.deps import SessionDep, request_id
from kindred.kit.handlers import ErrorBody
from kindred.kit.pagination import CursorParam, LimitParam, Page
from kindred.middleware.idempotency import IDEMPOTENCY_409, IDEMPOTENCY_422, Idempotent
from kindred.safety.schemas import BlockCreate, BlockCreated, BlockRead, ReportCreate, ReportCreated
from kindred.safety.service import SafetyService


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in pairs}


async def get_safety_service(request: Request, session: SessionDep) -> SafetyService:
    return SafetyService(session, request_id=request_id(request))


SafetyServiceDep = Annotated[SafetyService, Depends(get_safety_service)]

router = APIRouter(tags=["safety"])


@router.post(
    "/blocks",
    status_code=status.HTTP_201_CREATED,
    response_model=BlockCreated,
    responses=_errors((404, "user_not_found"), (409, IDEMPOTENCY_409), (422, f"validation_error, {IDEMPOTENCY_422}")),
)
async def block_user(
    body: BlockCreate, principal: CurrentUser, _: Idempotent, service: SafetyServiceDep
) -> BlockCreated:
    return await service.block(principal, body.user_id)


@router.delete(
    "/blocks/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_errors((404, "not_found")),
)
async def unblock_user(user_id: uuid.UUID, principal: CurrentUser, service: SafetyServiceDep) -> Response:
    await service.unblock(principal, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/blocks", response_model=Page[BlockRead])
async def list_blocks(
    principal: CurrentUser, service: SafetyServiceDep, limit: LimitParam = 20, cursor: CursorParam = None
) -> Page[BlockRead]:
    return await service.list_blocks(principal, limit=limit, cursor=cursor)


@router.post(
    "/reports",
    status_code=status.HTTP_201_CREATED,
    response_model=ReportCreated,
    responses=_errors((404, "user_not_found"), (409, IDEMPOTENCY_409), (422, f"validation_error, {IDEMPOTENCY_422}")),
)
async def report_user(
    body: ReportCreate, principal: CurrentUser, _: Idempotent, service: SafetyServiceDep
) -> ReportCreated:
    return await service.report(principal, body)
