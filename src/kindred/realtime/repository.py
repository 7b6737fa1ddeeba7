"""All SQL the socket layer needs: who may receive typing and presence, and last activity."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.elements import ColumnElement

from kindred.models import AccountStatus, Match, Profile, User
from kindred.safety.repository import not_blocked_either_way


def _live_account(now: datetime) -> ColumnElement[bool]:
    """An account others may see: active, or a suspension that has run out."""
    return or_(
        User.status == AccountStatus.active.value,
        and_(User.status == AccountStatus.suspended.value, User.suspended_until <= now),
    )


@dataclass(frozen=True)
class Conversation:
    """A match seen from one participant: the other person, and whether they may still talk."""

    other_id: uuid.UUID
    open: bool


class RealtimeRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _other(self, me: uuid.UUID) -> ColumnElement[uuid.UUID]:
        return case((Match.user_low == me, Match.user_high), else_=Match.user_low)

    async def conversation(self, match_id: uuid.UUID, me: uuid.UUID, now: datetime) -> Conversation | None:
        """The match if `me` takes part in it (else None); open = not unmatched, not blocked either way,
        and the other account still live. One query."""
        other = self._other(me)
        is_open = and_(Match.unmatched_at.is_(None), not_blocked_either_way(me, other), _live_account(now))
        row = (
            await self.session.execute(
                select(other.label("other_id"), case((is_open, True), else_=False).label("open"))
                .select_from(Match)
                .join(User, User.id == other)
                .where(Match.id == match_id, or_(Match.user_low == me, Match.user_high == me))
            )
        ).first()
        return None if row is None else Conversation(other_id=row.other_id, open=bool(row.open))

    async def hides_presence(self, user_id: uuid.UUID) -> bool:
        hidden = await self.session.scalar(select(Profile.hide_presence).where(Profile.user_id == user_id))
        return bool(hidden)

    async def open_match_partners(self, me: uuid.UUID, now: datetime) -> list[uuid.UUID]:
        """The other person of each of my live matches: not unmatched, not blocked either way, account live."""
        other = self._other(me)
        rows = await self.session.scalars(
            select(other)
            .select_from(Match)
            .join(User, User.id == other)
            .where(
                or_(Match.user_low == me, Match.user_high == me),
                Match.unmatched_at.is_(None),
                not_blocked_either_way(me, other),
                _live_account(now),
            )
        )
        return list(rows)

    async def touch_last_active(self, user_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(
            update(User)
            .where(User.id == user_id, or_(User.last_active_at.is_(None), User.last_active_at < now))
            .values(last_active_at=now)
            .execution_options(synchronize_session=False)
        )
