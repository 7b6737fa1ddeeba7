"""Photo rules: type and size checks, re-encoding off the event loop, the 6-photo limit, order, deletion."""

from __future__ import annotations

import functools
import json
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import anyio
import anyio.to_thread
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.kit.cache import CACHE_INFO_KEY, Cache
from kindred.kit.db import Database, after_commit
from kindred.kit.media import MEDIA_SIGNER, MediaSigner, cache_control
from kindred.kit.storage import InvalidKey, Storage
from kindred.models import Photo, PhotoStatus
from kindred.observability.logging import get_logger
from kindred.observability.metrics import count_after_commit
from kindred.photos import imaging
from kindred.photos.exceptions import (
    ImageInvalid,
    MediaNotFound,
    MediaSignatureInvalid,
    PhotoLimitReached,
    PhotoNotFound,
    PhotoOrderInvalid,
    UnsupportedImageType,
)
from kindred.photos.repository import PhotoRepository
from kindred.photos.schemas import PhotoRead, PhotoUrls

log = get_logger(__name__)

MAX_PHOTOS = 6
MAX_FILE_BYTES = 10 * 1024 * 1024
_CONTENT_TYPES = {"webp": "image/webp", "jpg": "image/jpeg", "png": "image/png"}


def file_key(storage_key: str, size: str) -> str:
    """The stored object of one size of a photo: `{random key}_{size}.webp`."""
    return f"{storage_key}_{size}.{imaging.OUTPUT_EXTENSION}"


def file_keys(storage_key: str) -> list[str]:
    return [file_key(storage_key, size) for size in imaging.SIZES]


def photo_read(photo: Photo, signer: MediaSigner, now: datetime, *, position: int | None = None) -> PhotoRead:
    urls = {size: signer.sign(file_key(photo.storage_key, size), now) for size in imaging.SIZES}
    return PhotoRead(
        id=photo.id,
        position=photo.position if position is None else position,
        status=PhotoStatus(photo.status),
        urls=PhotoUrls(**urls),
    )


async def photos_for(
    session: AsyncSession, user_id: uuid.UUID, *, now: datetime, signer: MediaSigner | None = None
) -> list[PhotoRead]:
    """A user's photos in order, with URLs signed at `now` (for the Me object and Cards).

    The signer defaults to the one the app's lifespan put in the session's `info`. Every status is
    returned: callers showing someone else's photos filter to `approved` as their rules say.
    """
    signer = signer or session_signer(session)
    photos = await PhotoRepository(session).photos_of(user_id)
    return [photo_read(photo, signer, now) for photo in photos]


# Cards' photo lists are read-through cached per person: `card-photos:{id}` holds the approved photos'
# (id, position, storage key) for CARD_PHOTOS_TTL; URLs are signed per request. Every write to a person's
# photos replaces the entry with a short tombstone after commit, and readers only ever add (SET NX), so a
# read that loaded the old list just before the write committed cannot put it back.
CARD_PHOTOS_TTL = 300
_STALE = "stale"
_STALE_TTL = 2.0  # longer than a read takes from its query to its add; caching resumes after it


def _card_photos_key(user_id: uuid.UUID) -> str:
    return f"card-photos:{user_id}"


async def approved_photos_for_users(
    session: AsyncSession, user_ids: list[uuid.UUID], *, now: datetime
) -> dict[uuid.UUID, list[PhotoRead]]:
    """Approved photos of many people (Cards): what others may see of them, in order.

    One cache round trip for the page, one query for the people not cached.
    """
    signer = session_signer(session)
    cache: Cache | None = session.info.get(CACHE_INFO_KEY)
    rows: dict[uuid.UUID, list[tuple[str, int, str]]] = {}
    if cache is not None and user_ids:
        cached = await cache.get_many([_card_photos_key(user_id) for user_id in user_ids])
        for user_id, raw in zip(user_ids, cached, strict=True):
            if raw is not None and raw != _STALE:
                rows[user_id] = [(str(pid), int(pos), str(key)) for pid, pos, key in json.loads(raw)]
    missing = [user_id for user_id in user_ids if user_id not in rows]
    if missing:
        loaded: dict[uuid.UUID, list[tuple[str, int, str]]] = {user_id: [] for user_id in missing}
        for photo in await PhotoRepository(session).approved_photos_of_users(missing):
            loaded[photo.user_id].append((str(photo.id), photo.position, photo.storage_key))
        rows.update(loaded)
        if cache is not None:
            for user_id, photos in loaded.items():
                await cache.add(_card_photos_key(user_id), json.dumps(photos), ttl=CARD_PHOTOS_TTL)
    return {user_id: [_approved_read(*photo, signer, now) for photo in rows[user_id]] for user_id in user_ids}


def _approved_read(photo_id: str, position: int, storage_key: str, signer: MediaSigner, now: datetime) -> PhotoRead:
    urls = {size: signer.sign(file_key(storage_key, size), now) for size in imaging.SIZES}
    return PhotoRead(id=uuid.UUID(photo_id), position=position, status=PhotoStatus.approved, urls=PhotoUrls(**urls))


async def forget_card_photos(cache: Cache, user_id: uuid.UUID) -> None:
    """After a committed change to someone's photos: others see the new list on their next read."""
    await cache.set(_card_photos_key(user_id), _STALE, ttl=_STALE_TTL)


def forget_card_photos_after_commit(session: AsyncSession, user_id: uuid.UUID) -> None:
    cache: Cache | None = session.info.get(CACHE_INFO_KEY)
    if cache is not None:
        after_commit(session, functools.partial(forget_card_photos, cache, user_id))


def session_signer(session: AsyncSession) -> MediaSigner:
    signer = session.info.get(MEDIA_SIGNER)
    if not isinstance(signer, MediaSigner):
        raise RuntimeError("no media signer on this session: pass signer= or use the app's sessions")
    return signer


class PhotoUploader:
    """Upload owns its transaction: files are written first and must be removed if the commit fails."""

    def __init__(
        self,
        db: Database,
        storage: Storage,
        signer: MediaSigner,
        limiter: anyio.CapacityLimiter,
        *,
        moderation: str,
    ) -> None:
        self.db = db
        self.storage = storage
        self.signer = signer
        self.limiter = limiter
        self.status = PhotoStatus.approved if moderation == "post" else PhotoStatus.pending

    async def upload(self, user_id: uuid.UUID, data: bytes, *, now: datetime) -> PhotoRead:
        fmt = imaging.sniff(data)
        if fmt is None:
            raise UnsupportedImageType()
        # Cheap early answer for a full gallery, before any decoding; the locked count below decides.
        async with self.db.unit_of_work() as session:
            if len(await PhotoRepository(session).photos_of(user_id)) >= MAX_PHOTOS:
                raise PhotoLimitReached()
        try:
            rendered = await anyio.to_thread.run_sync(imaging.render, data, fmt, limiter=self.limiter)
        except imaging.ImageRejected as exc:
            log.info("photo.rejected", user_id=str(user_id), reason=str(exc))
            raise ImageInvalid() from None

        storage_key = secrets.token_urlsafe(24)
        written: list[str] = []
        try:
            for rendition in rendered.renditions:
                key = file_key(storage_key, rendition.name)
                await self.storage.put(key, rendition.data, imaging.OUTPUT_CONTENT_TYPE)
                written.append(key)
            large = next(r for r in rendered.renditions if r.name == "large")
            async with self.db.unit_of_work() as session:
                repo = PhotoRepository(session)
                await repo.lock_owner(user_id)
                photos = await repo.photos_of(user_id)
                if len(photos) >= MAX_PHOTOS:
                    raise PhotoLimitReached()
                position = min(set(range(MAX_PHOTOS)) - {p.position for p in photos})
                photo = Photo(
                    user_id=user_id,
                    position=position,
                    status=self.status.value,
                    storage_key=storage_key,
                    width=large.width,
                    height=large.height,
                )
                await repo.add(photo)
                count_after_commit(session, "photo.uploaded")
                forget_card_photos_after_commit(session, user_id)
            # The unit of work has committed here; anything that failed above, commit included, lands below.
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._discard(written)
            raise
        log.info("photo.uploaded", user_id=str(user_id), photo_id=str(photo.id), position=position)
        return photo_read(photo, self.signer, now)

    async def _discard(self, keys: Sequence[str]) -> None:
        if not keys:
            return
        try:
            await self.storage.delete(*keys)
        except Exception as exc:  # the original failure matters more; the orphan is logged for cleanup
            log.warning("photo.orphaned_files", count=len(keys), error=type(exc).__name__)


class PhotoService:
    def __init__(self, session: AsyncSession, storage: Storage, signer: MediaSigner) -> None:
        self.session = session
        self.repo = PhotoRepository(session)
        self.storage = storage
        self.signer = signer

    async def reorder(self, user_id: uuid.UUID, photo_ids: list[uuid.UUID], *, now: datetime) -> list[PhotoRead]:
        await self.repo.lock_owner(user_id)
        photos = {photo.id: photo for photo in await self.repo.photos_of(user_id)}
        if len(photo_ids) != len(set(photo_ids)) or set(photo_ids) != set(photos):
            raise PhotoOrderInvalid()
        await self.repo.set_positions(user_id, {photo_id: index for index, photo_id in enumerate(photo_ids)})
        forget_card_photos_after_commit(self.session, user_id)
        return [photo_read(photos[pid], self.signer, now, position=index) for index, pid in enumerate(photo_ids)]

    async def delete(self, user_id: uuid.UUID, photo_id: uuid.UUID) -> None:
        await self.repo.lock_owner(user_id)
        photo = await self.repo.photo_of(user_id, photo_id)
        if photo is None:
            raise PhotoNotFound()
        await self.repo.remove(photo)
        forget_card_photos_after_commit(self.session, user_id)
        remaining = [p for p in await self.repo.photos_of(user_id) if p.id != photo.id]
        await self.repo.set_positions(
            user_id, {p.id: index for index, p in enumerate(remaining) if p.position != index}
        )
        # Files go only once the row is gone for good (a rolled-back delete keeps a working photo), and only
        # with the last row that uses them (demo members share a few stored images).
        if not await self.repo.storage_key_in_use(photo.storage_key):
            after_commit(self.session, functools.partial(self.storage.delete, *file_keys(photo.storage_key)))
        log.info("photo.deleted", user_id=str(user_id), photo_id=str(photo_id))


@dataclass(frozen=True)
class MediaFile:
    data: bytes
    content_type: str
    cache_control: str


async def open_media(
    storage: Storage, signer: MediaSigner, key: str, exp: str | None, sig: str | None, *, now: datetime
) -> MediaFile:
    """The bytes behind a signed URL; the signature is checked before storage is touched."""
    expires = signer.verify(key, exp, sig, now)
    if expires is None:
        raise MediaSignatureInvalid()
    try:
        data = await storage.get(key)
    except InvalidKey:
        data = None
    if data is None:
        raise MediaNotFound()
    extension = key.rsplit(".", 1)[-1].lower()
    return MediaFile(
        data=data,
        content_type=_CONTENT_TYPES.get(extension, "application/octet-stream"),
        cache_control=cache_control(expires, now),
    )
