"""Discovery and cards: who may see whom, ranked by a documented score (docs/discovery.md)."""

from __future__ import annotations

import math
import uuid
from datetime import date, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.discovery.exceptions import LocationRequired, UserNotFound
from kindred.discovery.repository import CandidateRow, DiscoveryRepository, Viewer, Window
from kindred.discovery.schemas import Card, CardPage, PromptRead
from kindred.kit import clock
from kindred.kit.errors import MalformedRequest, SessionRevoked
from kindred.kit.pagination import decode_cursor, encode_cursor
from kindred.photos.service import approved_photos_for_users
from kindred.safety.service import blocked_either_way


def _age(birthdate: date, today: date) -> int:
    return today.year - birthdate.year - ((today.month, today.day) < (birthdate.month, birthdate.day))


def _time(raw: str) -> datetime | None:
    return datetime.fromisoformat(raw) if raw else None


def _write_cursor(as_of: datetime, last: CandidateRow) -> str:
    """Where the next page starts: the feed's as_of, the last card's window and its (rank, id) in it."""
    assert last.window is not None
    upper, floor = last.window.upper, last.window.floor
    return encode_cursor(
        as_of.isoformat(),
        upper.isoformat() if upper else "",
        floor.isoformat() if floor else "",
        last.rank,
        last.user_id,
    )


def _read_cursor(cursor: str) -> tuple[Window, datetime, tuple[int, uuid.UUID]]:
    as_of_raw, upper_raw, floor_raw, rank_raw, id_raw = decode_cursor(cursor, 5)
    try:
        window = Window(upper=_time(upper_raw), floor=_time(floor_raw))
        return window, datetime.fromisoformat(as_of_raw), (int(rank_raw), uuid.UUID(id_raw))
    except ValueError:
        raise MalformedRequest("The cursor is invalid.") from None


class DiscoveryService:
    def __init__(self, session: AsyncSession, *, window_size: int = 500) -> None:
        self.session = session
        self.repo = DiscoveryRepository(session)
        self.window_size = window_size

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
        as_of, window, after = now, None, None
        if cursor:
            window, as_of, after = _read_cursor(cursor)
        if window is None:
            window = Window(upper=None, floor=await self._floor(viewer, as_of, upper=None))
        rows: list[CandidateRow] = []
        while True:  # fill the page, moving to the next (older) window when this one runs out
            rows += await self.repo.candidates(
                viewer, as_of=as_of, window=window, limit=limit + 1 - len(rows), after=after
            )
            if len(rows) > limit or window.floor is None:
                break
            window = Window(upper=window.floor, floor=await self._floor(viewer, as_of, upper=window.floor))
            after = None
        page, more = rows[:limit], len(rows) > limit
        next_cursor = _write_cursor(as_of, page[-1]) if more else None
        return CardPage(items=await self.cards_for(page, now), next_cursor=next_cursor)

    async def _floor(self, viewer: Viewer, as_of: datetime, *, upper: datetime | None) -> datetime | None:
        return await self.repo.window_floor(viewer, as_of=as_of, upper=upper, size=self.window_size)

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
