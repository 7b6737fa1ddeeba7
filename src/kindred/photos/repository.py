"""All SQL for photos; every read is scoped to the owner."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import Photo, PhotoStatus, User


class PhotoRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_owner(self, user_id: uuid.UUID) -> None:
        """Serialise one user's photo writes: concurrent uploads must not both take the 6th slot.

        PostgreSQL locks the user's row until commit; SQLite has a single writer, so its transactions
        are serialised already (FOR UPDATE is not emitted there).
        """
        await self.session.execute(select(User.id).where(User.id == user_id).with_for_update())

    async def photos_of(self, user_id: uuid.UUID) -> Sequence[Photo]:
        result = await self.session.scalars(
            select(Photo).where(Photo.user_id == user_id).order_by(Photo.position, Photo.created_at)
        )
        return result.all()

    async def approved_photos_of_users(self, user_ids: Sequence[uuid.UUID]) -> Sequence[Photo]:
        if not user_ids:
            return []
        query = (
            select(Photo)
            .where(Photo.user_id.in_(user_ids), Photo.status == PhotoStatus.approved.value)
            .order_by(Photo.user_id, Photo.position)
        )
        return (await self.session.scalars(query)).all()

    async def storage_key_in_use(self, storage_key: str) -> bool:
        return await self.session.scalar(select(Photo.id).where(Photo.storage_key == storage_key).limit(1)) is not None

    async def photo_of(self, user_id: uuid.UUID, photo_id: uuid.UUID) -> Photo | None:
        return await self.session.scalar(select(Photo).where(Photo.id == photo_id, Photo.user_id == user_id))

    async def add(self, photo: Photo) -> None:
        self.session.add(photo)
        await self.session.flush()

    async def remove(self, photo: Photo) -> None:
        await self.session.execute(delete(Photo).where(Photo.id == photo.id, Photo.user_id == photo.user_id))

    async def set_positions(self, user_id: uuid.UUID, positions: dict[uuid.UUID, int]) -> None:
        for photo_id, position in positions.items():
            await self.session.execute(
                update(Photo)
                .where(Photo.id == photo_id, Photo.user_id == user_id)
                .values(position=position)
                .execution_options(synchronize_session=False)
            )
