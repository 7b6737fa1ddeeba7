"""Discovery and cards: who may see whom, ranked by a documented score (docs/discovery.md)."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.discovery.exceptions import LocationRequired, UserNotFound
from kindred.discovery.repository import CandidateRow, DiscoveryRepository, Viewer
from kindred.discovery.schemas import Card, CardPage, PromptRead
from kindred.kit import clock
from kindred.kit.errors import MalformedRequest, SessionRevoked
from kindred.kit.pagination import decode_cursor, encode_cursor
from kindred.photos.service import approved_photos_for_users
from kindred.safety.service import blocked_either_way


def _age(birthdate: date, today: date) -> int:
    return today.year - birthdate.year - ((today.month, today.day) < (birthdate.month, birthdate.day))


class DiscoveryService:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.repo = DiscoveryRepository(session)

    async def _viewer(self, principal: Principal, now: datetime) -> Viewer:
        viewer = await self.repo.viewer(principal.user_id, now.date())
        if viewer is None:
            raise SessionRevoked()
        return viewer

    async def cards_for(self, rows: list[CandidateRow], now: datetime) -> list[Card]:
        """Cards for rows of people, photos loaded in one query (the one Card builder, also for matches)."""
        photos = await approved_photos_for_users(self.session, [row.user_id for row in rows], now=now)
        return [
            Card(
                id=row.user_id,
                display_name=row.profile.display_name,
                age=_age(row.birthdate, now.date()),
                bio=row.profile.bio,
                gender=row.profile.gender,
                interests=list(row.profile.interests or []),
                prompts=[PromptRead(**p) for p in row.profile.prompts or []],
                photos=photos[row.user_id],
                # whole kilometres between both snapped cells, at least 1 (docs/privacy.md)
                distance_km=None if row.distance_km is None else max(1, math.ceil(row.distance_km)),
                verified=row.profile.verified,
            )
            for row in rows
        ]

    async def discover(self, principal: Principal, *, limit: int, cursor: str | None) -> CardPage:
        now = clock.now()
        viewer = await self._viewer(principal, now)
        if viewer.cell_lat is None or viewer.cell_lng is None:
            raise LocationRequired()
        if viewer.gender is None or not viewer.interested_in:
            return CardPage(items=[], next_cursor=None)  # preferences not set yet: nobody matches both ways
        as_of, after = now, None
        if cursor:
            as_of_raw, rank_raw, id_raw = decode_cursor(cursor, 3)
            try:
                as_of, after = datetime.fromisoformat(as_of_raw), (int(rank_raw), uuid.UUID(id_raw))
            except ValueError:
                raise MalformedRequest("The cursor is invalid.") from None
        rows = await self.repo.candidates(viewer, as_of=as_of, limit=limit + 1, after=after)
        page, more = rows[:limit], len(rows) > limit
        next_cursor = encode_cursor(as_of.isoformat(), page[-1].rank, page[-1].user_id) if more else None
        return CardPage(items=await self.cards_for(page, now), next_cursor=next_cursor)

    async def card(self, principal: Principal, other_id: uuid.UUID) -> Card:
        """A match, someone who liked me, or a compatible visible candidate; else 404 (never say why)."""
        now = clock.now()
        viewer = await self._viewer(principal, now)
        me = principal.user_id
        if (
            other_id == me
            or await blocked_either_way(self.session, me, other_id)
            or await self.repo.reported_by(me, other_id)
        ):
            raise UserNotFound()
        row: CandidateRow | None = None
        if await self.repo.matched_or_liked_me(me, other_id):
            row = await self.repo.account_row(viewer, other_id, now)
        elif None not in (viewer.cell_lat, viewer.cell_lng, viewer.gender) and viewer.interested_in:
            row = await self.repo.card_row(viewer, other_id, now)
        if row is None:
            raise UserNotFound()
        return (await self.cards_for([row], now))[0]
