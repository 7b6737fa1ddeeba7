"""All SQL for the caller's own profile."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import Profile


class ProfileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def own(self, user_id: uuid.UUID, *, for_update: bool = False) -> Profile | None:
        query = select(Profile).where(Profile.user_id == user_id)
        if for_update:
            query = query.with_for_update()  # PostgreSQL row lock; SQLite serialises writers anyway
        return await self.session.scalar(query)
