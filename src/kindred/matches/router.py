"""`/api/v1/matches`: the caller's live matches, and unmatching."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from kindred.auth.dependencies import CurrentUser
from kindred.kit.deps import SessionDep, request_id
from kindred.kit.handlers import ErrorBody
from kindred.kit.pagination import CursorParam, LimitParam, Page
from kindred.matches.schemas import MatchRead
from kindred.matches.service import MatchService


async def get_match_service(request: Request, session: SessionDep) -> MatchService:
    return MatchService(session, request_id=request_id(request))


MatchServiceDep = Annotated[MatchService, Depends(get_match_service)]

router = APIRouter(tags=["matches"])


@router.get("/matches", response_model=Page[MatchRead])
async def list_matches(
    principal: CurrentUser, service: MatchServiceDep, limit: LimitParam = 20, cursor: CursorParam = None
) -> Page[MatchRead]:
    return await service.list(principal, limit=limit, cursor=cursor)


@router.delete(
    "/matches/{match_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"model": ErrorBody, "description": "match_not_found"}},
)
async def unmatch(match_id: uuid.UUID, principal: CurrentUser, service: MatchServiceDep) -> Response:
    await service.unmatch(principal, match_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
