"""All SQL for swipes and boosts: row locks, the swipe insert, mutual likes, admirers, the last swipe."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, delete, exists, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql import Select

from kindred.matches.repository import live_account
from kindred.models import Boost, Match, Profile, Swipe, SwipeAction, User
from kindred.safety.repository import not_blocked_either_way, not_reported_by

LIKES = (SwipeAction.like.value, SwipeAction.superlike.value)


class SwipeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_profiles(self, *user_ids: uuid.UUID) -> None:
        """Lock the people's profile rows, lowest id first (one global order: no deadlocks).

        PostgreSQL only; SQLite serialises writers anyway (FOR UPDATE is not emitted there).
        """
        for user_id in sorted(set(user_ids)):
            await self.session.execute(select(Profile.user_id).where(Profile.user_id == user_id).with_for_update())

    async def add(self, swipe: Swipe) -> bool:
        """Insert the swipe in a SAVEPOINT; False if (swiper, target) already has one (the constraint decides)."""
        try:
            async with self.session.begin_nested():
                self.session.add(swipe)
                await self.session.flush()
        except IntegrityError:
            return False
        return True

    async def liked(self, swiper_id: uuid.UUID, target_id: uuid.UUID) -> bool:
        """Whether `swiper_id` liked or superliked `target_id`."""
        query = select(
            exists().where(Swipe.swiper_id == swiper_id, Swipe.target_id == target_id, Swipe.action.in_(LIKES))
        )
        return bool(await self.session.scalar(query))

    async def last_by(self, swiper_id: uuid.UUID) -> Swipe | None:
        return await self.session.scalar(
            select(Swipe)
            .where(Swipe.swiper_id == swiper_id)
            .order_by(Swipe.created_at.desc(), Swipe.id.desc())
            .limit(1)
        )

    async def remove(self, swipe_id: uuid.UUID, swiper_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(Swipe)
            .where(Swipe.id == swipe_id, Swipe.swiper_id == swiper_id)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    # ------------------------------------------------------------------ likes received
    def _admirers(self, me: uuid.UUID, now: datetime) -> Select[uuid.UUID, datetime, uuid.UUID]:
        """People who liked me, whom I have not swiped, am not matched with, have not blocked or reported."""
        them = Swipe.swiper_id
        mine = aliased(Swipe)
        return (
            select(them, Swipe.created_at, Swipe.id)
            .join(User, User.id == them)
            .where(
                Swipe.target_id == me,
                Swipe.action.in_(LIKES),
                live_account(now),
                ~exists().where(mine.swiper_id == me, mine.target_id == them),
                ~exists().where(
                    or_(
                        and_(Match.user_low == me, Match.user_high == them),
                        and_(Match.user_low == them, Match.user_high == me),
                    )
                ),
                not_blocked_either_way(me, them),
                not_reported_by(me, them),
            )
        )

    async def admirers_count(self, me: uuid.UUID, now: datetime) -> int:
        return int(await self.session.scalar(select(func.count()).select_from(self._admirers(me, now).subquery())) or 0)

    async def admirers(
        self, me: uuid.UUID, now: datetime, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[tuple[uuid.UUID, datetime, uuid.UUID]]:
        """(admirer id, liked at, swipe id), newest like first."""
        query = self._admirers(me, now)
        if after is not None:
            at, last_id = after
            query = query.where(or_(Swipe.created_at < at, and_(Swipe.created_at == at, Swipe.id > last_id)))
        query = query.order_by(Swipe.created_at.desc(), Swipe.id).limit(limit)
        return [(row[0], row[1], row[2]) for row in (await self.session.execute(query)).all()]

    # ------------------------------------------------------------------ boosts
    async def active_boost(self, user_id: uuid.UUID, now: datetime) -> bool:
        query = select(exists().where(Boost.user_id == user_id, Boost.ends_at > now))
        return bool(await self.session.scalar(query))

    async def add_boost(self, user_id: uuid.UUID, started_at: datetime, ends_at: datetime) -> None:
        self.session.add(Boost(user_id=user_id, started_at=started_at, ends_at=ends_at))
        profile = await self.session.get(Profile, user_id)
        if profile is not None:
            profile.boost_until = ends_at
        await self.session.flush()
