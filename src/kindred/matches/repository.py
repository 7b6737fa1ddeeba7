"""All SQL for matches: the ordered-pair insert, the caller's live matches (with their last message and unread
count), a participant's conversation, activity, unmatching, and card rows."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from kindred.chat.repository import last_message_id, unread_count
from kindred.models import AccountStatus, Match, Message, Profile, User
from kindred.safety.repository import not_blocked_either_way


def ordered(a: uuid.UUID, b: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """The pair as stored: `user_low` < `user_high` (Python and PostgreSQL order UUIDs the same way)."""
    return (a, b) if a < b else (b, a)


def live_account(now: datetime) -> ColumnElement[bool]:
    """An account others may see: active, or a suspension that has run out."""
    return or_(
        User.status == AccountStatus.active.value,
        and_(User.status == AccountStatus.suspended.value, User.suspended_until <= now),
    )


class MatchRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _other(self, me: uuid.UUID) -> ColumnElement[uuid.UUID]:
        return case((Match.user_low == me, Match.user_high), else_=Match.user_low)

    async def insert_pair(self, a: uuid.UUID, b: uuid.UUID, now: datetime) -> bool:
        """Insert the match unless the pair has one; True if this call created it."""
        low, high = ordered(a, b)
        values = {"id": uuid.uuid4(), "user_low": low, "user_high": high, "created_at": now, "last_activity_at": now}
        insert_fn = postgresql.insert if self.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        stmt = insert_fn(Match).values(**values).on_conflict_do_nothing(index_elements=["user_low", "user_high"])
        result = await self.session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def of_pair(self, a: uuid.UUID, b: uuid.UUID) -> Match | None:
        low, high = ordered(a, b)
        return await self.session.scalar(select(Match).where(Match.user_low == low, Match.user_high == high))

    async def live_for(
        self, me: uuid.UUID, now: datetime, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[tuple[Match, uuid.UUID, Message | None, int]]:
        """The caller's live matches with a visible account, not blocked either way; newest activity first.

        One query: the page of matches first, then for each of its rows the last message (an index
        lookup on (match_id, created_at, id)) and the caller's unread count (the partial unread index).
        """
        other = self._other(me)
        page_query = (
            select(Match, other.label("other_id"))
            .join(User, User.id == other)
            .where(
                or_(Match.user_low == me, Match.user_high == me),
                Match.unmatched_at.is_(None),
                live_account(now),
                not_blocked_either_way(me, other),
            )
        )
        if after is not None:
            at, last_id = after
            page_query = page_query.where(
                or_(Match.last_activity_at < at, and_(Match.last_activity_at == at, Match.id > last_id))
            )
        page = page_query.order_by(Match.last_activity_at.desc(), Match.id).limit(limit).subquery("page")
        match = aliased(Match, page)
        query = (
            select(match, page.c.other_id, Message, unread_count(page.c.id, me).label("unread"))
            .outerjoin(Message, Message.id == last_message_id(page.c.id))
            .order_by(page.c.last_activity_at.desc(), page.c.id)
        )
        rows = (await self.session.execute(query)).all()
        return [(m, other_id, last, int(unread or 0)) for m, other_id, last, unread in rows]

    async def conversation_of(
        self, match_id: uuid.UUID, me: uuid.UUID, now: datetime, *, lock: bool
    ) -> tuple[Match, uuid.UUID, bool, bool] | None:
        """(match, other person, their account is live, neither blocked the other) if the caller is in it.

        `lock` takes the match row FOR UPDATE (PostgreSQL; SQLite serialises writers anyway): the
        conversation's writes queue behind each other, and an unmatch committed meanwhile is seen.
        """
        other = self._other(me)
        query = (
            select(
                Match,
                other.label("other_id"),
                live_account(now).label("other_live"),
                not_blocked_either_way(me, other).label("not_blocked"),
            )
            .join(User, User.id == other)
            .where(Match.id == match_id, or_(Match.user_low == me, Match.user_high == me))
        )
        if lock:
            query = query.with_for_update(of=Match).execution_options(populate_existing=True)
        row = (await self.session.execute(query)).first()
        if row is None:
            return None
        found, other_id, other_live, not_blocked = row
        return found, other_id, bool(other_live), bool(not_blocked)

    async def touch(self, match_id: uuid.UUID, at: datetime) -> None:
        """Record activity (a message) at `at`; the time only moves forward."""
        await self.session.execute(
            update(Match)
            .where(Match.id == match_id, Match.last_activity_at < at)
            .values(last_activity_at=at)
            .execution_options(synchronize_session=False)
        )

    async def live_of_participant(self, match_id: uuid.UUID, me: uuid.UUID) -> Match | None:
        """The match if the caller takes part in it and it has not been ended."""
        return await self.session.scalar(
            select(Match).where(
                Match.id == match_id,
                or_(Match.user_low == me, Match.user_high == me),
                Match.unmatched_at.is_(None),
            )
        )

    async def unmatch(self, match_id: uuid.UUID, me: uuid.UUID, now: datetime) -> bool:
        """End a live match the caller takes part in; False if there is none (unknown, theirs, or ended)."""
        result = await self.session.execute(
            update(Match)
            .where(
                Match.id == match_id,
                or_(Match.user_low == me, Match.user_high == me),
                Match.unmatched_at.is_(None),
            )
            .values(unmatched_at=now, unmatched_by=me)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))

    async def presence_rows(self, user_ids: list[uuid.UUID]) -> list[tuple[uuid.UUID, datetime | None]]:
        """(user id, last activity) of those among `user_ids` who show their presence."""
        rows = await self.session.execute(
            select(User.id, User.last_active_at)
            .join(Profile, Profile.user_id == User.id)
            .where(User.id.in_(user_ids), Profile.hide_presence.is_(False))
        )
        return [(user_id, last_active_at) for user_id, last_active_at in rows]

    async def profiles_of(self, user_ids: list[uuid.UUID], now: datetime) -> dict[uuid.UUID, tuple[Profile, date]]:
        """Profile and birthdate of each live account among `user_ids` (one query, for cards)."""
        if not user_ids:
            return {}
        rows = (
            await self.session.execute(
                select(Profile, User.birthdate)
                .join(User, User.id == Profile.user_id)
                .where(Profile.user_id.in_(user_ids), live_account(now))
            )
        ).all()
        return {profile.user_id: (profile, birthdate) for profile, birthdate in rows}
