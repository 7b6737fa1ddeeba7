"""Match rules: one match per pair made on a mutual like, the caller's live matches, and unmatching."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.discovery.repository import CandidateRow
from kindred.discovery.schemas import Card
from kindred.discovery.service import DiscoveryService
from kindred.kit import clock
from kindred.kit.db import after_commit
from kindred.kit.errors import MalformedRequest, SessionRevoked
from kindred.kit.pagination import Page, decode_cursor, encode_cursor
from kindred.matches.exceptions import MatchNotFound
from kindred.matches.repository import MatchRepository
from kindred.matches.schemas import MatchRead
from kindred.models import Match
from kindred.observability import audit
from kindred.observability.logging import get_logger
from kindred.profiles import geo

log = get_logger(__name__)


async def cards_for(
    session: AsyncSession, principal: Principal, user_ids: list[uuid.UUID], now: datetime
) -> dict[uuid.UUID, Card]:
    """Cards of people the caller already may see (matches, admirers), in one batch: no N+1.

    The caller decides visibility (the queries that produced `user_ids` filter blocks and accounts);
    this only renders, with discovery's Card builder so every Card looks the same.
    """
    discovery = DiscoveryService(session)
    viewer = await discovery.repo.viewer(principal.user_id, now.date())
    if viewer is None:
        raise SessionRevoked()
    found = await MatchRepository(session).profiles_of(user_ids, now)
    rows: list[CandidateRow] = []
    for user_id in user_ids:
        if user_id not in found:
            continue
        profile, birthdate = found[user_id]
        distance = geo.cell_distance_km(viewer.cell_lat, viewer.cell_lng, profile.cell_lat, profile.cell_lng)
        rows.append(CandidateRow(user_id=user_id, birthdate=birthdate, profile=profile, distance_km=distance, rank=0))
    cards = await discovery.cards_for(rows, now)
    return {card.id: card for card in cards}


def match_read(match: Match, card: Card) -> MatchRead:
    return MatchRead(id=match.id, created_at=match.created_at, user=card, last_message=None, unread_count=0)


class MatchService:
    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.session = session
        self.repo = MatchRepository(session)
        self.request_id = request_id

    async def on_mutual_like(self, me: uuid.UUID, other: uuid.UUID, now: datetime) -> Match | None:
        """Exactly one match per pair: INSERT the ordered pair; on conflict load the row that exists.

        The caller holds both people's profile locks, so of two crossing likes the second sees the first.
        Returns the live match, or None if the pair's match was ended before.
        """
        created = await self.repo.insert_pair(me, other, now)
        match = await self.repo.of_pair(me, other)
        if match is None:  # pragma: no cover - inserted or present inside this transaction
            raise RuntimeError("match vanished inside its own transaction")
        if created:
            audit.record(
                self.session, "match.created", actor_id=me, target_type="match", target_id=match.id,
                request_id=self.request_id,
            )  # fmt: skip
            match_id, low, high = str(match.id), str(match.user_low), str(match.user_high)

            async def _log() -> None:
                log.info("match.created", match_id=match_id, user_low=low, user_high=high)

            after_commit(self.session, _log)
        return match if match.unmatched_at is None else None

    async def list(self, principal: Principal, *, limit: int, cursor: str | None) -> Page[MatchRead]:
        now = clock.now()
        after = None
        if cursor:
            at_raw, id_raw = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(at_raw), uuid.UUID(id_raw))
            except ValueError:
                raise MalformedRequest("The cursor is invalid.") from None
        rows = await self.repo.live_for(principal.user_id, now, limit=limit + 1, after=after)
        page = rows[:limit]
        cards = await cards_for(self.session, principal, [other for _, other in page], now)
        items = [match_read(match, cards[other]) for match, other in page if other in cards]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1][0]
            next_cursor = encode_cursor(last.last_activity_at.isoformat(), last.id)
        return Page[MatchRead](items=items, next_cursor=next_cursor)

    async def unmatch(self, principal: Principal, match_id: uuid.UUID) -> None:
        if not await self.repo.unmatch(match_id, principal.user_id, clock.now()):
            raise MatchNotFound()
        audit.record(
            self.session, "match.removed", actor_id=principal.user_id, target_type="match", target_id=match_id,
            request_id=self.request_id,
        )  # fmt: skip
        user_id = str(principal.user_id)

        async def _log() -> None:
            log.info("match.removed", match_id=str(match_id), user_id=user_id)

        after_commit(self.session, _log)
