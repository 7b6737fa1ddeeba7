"""`/api/v1/matches/{id}/messages` and `/api/v1/matches/{id}/read`: a match's conversation over REST."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response, status

from kindred.auth.dependencies import CurrentUser
from kindred.chat.schemas import MessageCreate, MessageRead, ReadCreate
from kindred.chat.service import ChatService
from kindred.kit.deps import SessionDep, request_id
from kindred.kit.handlers import ErrorBody
from kindred.kit.pagination import CursorParam, LimitParam, Page


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in pairs}


async def get_chat_service(request: Request, session: SessionDep) -> ChatService:
    return ChatService(session, request_id=request_id(request))


ChatServiceDep = Annotated[ChatService, Depends(get_chat_service)]
AfterParam = Annotated[
    uuid.UUID | None,
    Query(description="Catch-up: the messages newer than this one (of this conversation), oldest first."),
]

router = APIRouter(tags=["chat"])

_CONVERSATION_ERRORS = ((403, "conversation_closed"), (404, "match_not_found"))


@router.get(
    "/matches/{match_id}/messages",
    response_model=Page[MessageRead],
    responses=_errors(*_CONVERSATION_ERRORS, (422, "validation_error (also: `after` is not a message of this match)")),
)
async def list_messages(
    match_id: uuid.UUID,
    principal: CurrentUser,
    service: ChatServiceDep,
    limit: LimitParam = 20,
    cursor: CursorParam = None,
    after: AfterParam = None,
) -> Page[MessageRead]:
    return await service.history(principal, match_id, limit=limit, cursor=cursor, after=after)


@router.post(
    "/matches/{match_id}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageRead,
    responses={
        200: {"model": MessageRead, "description": "The same client_id again: the first message, nothing added."},
        **_errors(*_CONVERSATION_ERRORS, (422, "validation_error")),
    },
)
async def send_message(
    match_id: uuid.UUID, body: MessageCreate, principal: CurrentUser, service: ChatServiceDep, response: Response
) -> MessageRead:
    message, created = await service.send(principal, match_id, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return message


@router.post(
    "/matches/{match_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_errors(*_CONVERSATION_ERRORS, (422, "validation_error (also: `up_to` is not a message of this match)")),
)
async def mark_read(match_id: uuid.UUID, body: ReadCreate, principal: CurrentUser, service: ChatServiceDep) -> Response:
    await service.mark_read(principal, match_id, body)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
