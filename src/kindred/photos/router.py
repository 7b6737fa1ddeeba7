"""`/api/v1/me/photos` (upload, reorder, delete) and `/media/{key}` (signed, no /api/v1 prefix)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, Response, UploadFile, status
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Message

from kindred.auth.dependencies import CurrentUser
from kindred.kit import clock
from kindred.kit.handlers import ErrorBody
from kindred.middleware.idempotency import IDEMPOTENCY_409, IDEMPOTENCY_422, Idempotent
from kindred.photos.dependencies import MediaSignerDep, PhotoServiceDep, PhotoUploaderDep, StorageDep
from kindred.photos.exceptions import FileTooLarge
from kindred.photos.schemas import PhotoOrderIn, PhotoRead
from kindred.photos.service import MAX_FILE_BYTES, open_media

# Room for the multipart boundaries and part headers around a file of the maximum size.
MAX_BODY_BYTES = MAX_FILE_BYTES + 64 * 1024
_CHUNK = 256 * 1024


class CappedBodyRoute(APIRoute):
    """Refuse a body over MAX_BODY_BYTES before and while it streams in (413 `file_too_large`).

    The Content-Length is checked up front and the bytes actually received are counted, so neither a
    lying header nor a chunked body can make the server spool more than the cap.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def capped(request: Request) -> Response:
            length = request.headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
                raise FileTooLarge()
            received = 0
            upstream = request.receive

            async def receive() -> Message:
                nonlocal received
                message = await upstream()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > MAX_BODY_BYTES:
                        raise FileTooLarge()
                return message

            try:
                return await handler(Request(request.scope, receive))
            except HTTPException as exc:
                # FastAPI reports any failure while parsing a form as a 400; ours is the real answer.
                if isinstance(exc.__cause__, FileTooLarge):
                    raise exc.__cause__ from None
                raise

        return capped


def _errors(*pairs: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in pairs}


router = APIRouter(tags=["photos"], route_class=CappedBodyRoute)
media_router = APIRouter(tags=["media"])


async def _read_capped(file: UploadFile) -> bytes:
    """At most MAX_FILE_BYTES, counted as read: one byte more is 413, never an unbounded read."""
    chunks: list[bytes] = []
    total = 0
    while chunk := await file.read(_CHUNK):
        total += len(chunk)
        if total > MAX_FILE_BYTES:
            raise FileTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/me/photos",
    status_code=status.HTTP_201_CREATED,
    response_model=PhotoRead,
    responses=_errors(
        (409, f"photo_limit_reached, {IDEMPOTENCY_409}"),
        (413, "file_too_large"),
        (415, "unsupported_media_type"),
        (422, f"image_invalid, validation_error, {IDEMPOTENCY_422}"),
    ),
)
async def upload_photo(
    principal: CurrentUser,
    _: Idempotent,
    uploader: PhotoUploaderDep,
    file: Annotated[UploadFile, File(description="JPEG, PNG or WebP (HEIC when supported), at most 10 MB.")],
) -> PhotoRead:
    try:
        data = await _read_capped(file)
    finally:
        await file.close()
    return await uploader.upload(principal.user_id, data, now=clock.now())


@router.put("/me/photos/order", response_model=list[PhotoRead], responses=_errors((422, "validation_error")))
async def reorder_photos(principal: CurrentUser, body: PhotoOrderIn, service: PhotoServiceDep) -> list[PhotoRead]:
    return await service.reorder(principal.user_id, body.photo_ids, now=clock.now())


@router.delete(
    "/me/photos/{photo_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_errors((404, "photo_not_found")),
)
async def delete_photo(principal: CurrentUser, photo_id: uuid.UUID, service: PhotoServiceDep) -> Response:
    await service.delete(principal.user_id, photo_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@media_router.get(
    "/media/{key}",
    response_class=Response,
    responses={
        200: {"content": {"image/webp": {}}, "description": "The stored image bytes."},
        **_errors((403, "media_signature_invalid"), (404, "not_found")),
    },
)
async def get_media(
    key: str,
    storage: StorageDep,
    signer: MediaSignerDep,
    exp: Annotated[str | None, Query(description="Expiry, Unix seconds (covered by sig).")] = None,
    sig: Annotated[str | None, Query(description="URL signature.")] = None,
) -> Response:
    media = await open_media(storage, signer, key, exp, sig, now=clock.now())
    return Response(
        content=media.data,
        media_type=media.content_type,
        headers={"Cache-Control": media.cache_control, "X-Content-Type-Options": "nosniff"},
    )
