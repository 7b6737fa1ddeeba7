"""Dependencies for photo routes: storage, the URL signer and the image-work limiter from app state."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import Depends, Request

from kindred.kit.deps import SessionDep
from kindred.kit.media import MediaSigner
from kindred.kit.storage import Storage
from kindred.photos.service import PhotoService, PhotoUploader

# Decoding a 40 MP photo takes ~0.5 s and ~150 MB: at most this many at once per process.
IMAGE_WORKERS = 2


async def get_storage(request: Request) -> Storage:
    return request.app.state.storage


async def get_media_signer(request: Request) -> MediaSigner:
    """Built once per app in the lifespan from MEDIA_URL_SECRET (development: the generated one under var/)."""
    return request.app.state.media_signer


def _image_limiter(request: Request) -> anyio.CapacityLimiter:
    state = request.app.state
    limiter = getattr(state, "image_limiter", None)
    if limiter is None:
        limiter = state.image_limiter = anyio.CapacityLimiter(IMAGE_WORKERS)
    return limiter


StorageDep = Annotated[Storage, Depends(get_storage)]
MediaSignerDep = Annotated[MediaSigner, Depends(get_media_signer)]


async def get_photo_service(session: SessionDep, storage: StorageDep, signer: MediaSignerDep) -> PhotoService:
    return PhotoService(session, storage, signer)


async def get_photo_uploader(request: Request, storage: StorageDep, signer: MediaSignerDep) -> PhotoUploader:
    state = request.app.state
    return PhotoUploader(state.db, storage, signer, _image_limiter(request), moderation=state.settings.photo_moderation)


PhotoServiceDep = Annotated[PhotoService, Depends(get_photo_service)]
PhotoUploaderDep = Annotated[PhotoUploader, Depends(get_photo_uploader)]
