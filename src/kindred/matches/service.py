"""Match rules: one match per pair made on a mutual like, the caller's live matches, a participant's
conversation, unmatching, and the `match.new` / `match.removed` events."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.chat.schemas import MessageRead
from kindred.discovery.repository import CandidateRow
from kindred.discovery.schemas import Card
from kindred.discovery.service import DiscoveryService
from kindred.kit import clock
from kindred.kit.cache import Cache
from kindred.kit.db import after_commit
from kindred.kit.errors import MalformedRequest, SessionRevoked
from kindred.kit.pagination import Page, decode_cursor, encode_cursor
from kindred.matches.exceptions import MatchNotFound
from kindred.matches.repository import MatchRepository
from kindred.matches.schemas import MatchRead, MatchRemoved
from kindred.models import Match, Message
from kindred.observability import audit
from kindred.observability.logging import get_logger
from kindred.observability.metrics import count_after_commit
from kindred.profiles import geo
from kindred.realtime import presence
from kindred.realtime.events import EVENT_BUS, emit

log = get_logger(__name__)

MATCH_NEW = "match.new"
MATCH_REMOVED = "match.removed"


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


async def pair_cards(session: AsyncSession, a: uuid.UUID, b: uuid.UUID, now: datetime) -> dict[uuid.UUID, Card]:
    """Each person's card as the other sees it (the distance is the same both ways): two queries."""
    found = await MatchRepository(session).profiles_of([a, b], now)
    if a not in found or b not in found:
        return {}
    (profile_a, birthdate_a), (profile_b, birthdate_b) = found[a], found[b]
    distance = geo.cell_distance_km(profile_a.cell_lat, profile_a.cell_lng, profile_b.cell_lat, profile_b.cell_lng)
    rows = [
        CandidateRow(user_id=a, birthdate=birthdate_a, profile=profile_a, distance_km=distance, rank=0),
        CandidateRow(user_id=b, birthdate=birthdate_b, profile=profile_b, distance_km=distance, rank=0),
    ]
    return {card.id: card for card in await DiscoveryService(session).cards_for(rows, now)}


async def with_presence(session: AsyncSession, cards: dict[uuid.UUID, Card], now: datetime) -> None:
    """Fill `last_active_bucket` on match cards of people who have not hidden it (API.md Card)."""
    bus: Cache | None = session.info.get(EVENT_BUS)  # the app's cache: presence keys live there
    if bus is None or not cards:
        return
    shown = await MatchRepository(session).presence_rows(list(cards))
    for user_id, bucket in (await presence.buckets(bus, shown, now=now)).items():
        cards[user_id].last_active_bucket = bucket


def match_read(match: Match, card: Card, last_message: Message | None = None, unread_count: int = 0) -> MatchRead:
    last = None if last_message is None else MessageRead.model_validate(last_message, from_attributes=True)
    return MatchRead(id=match.id, created_at=match.created_at, user=card, last_message=last, unread_count=unread_count)


@dataclass(frozen=True)
class Conversation:
    """A match as one of its two people sees it, for chat."""

    match: Match
    other_id: uuid.UUID
    closed: bool  # unmatched, blocked either way, or the other account is deleted, banned or suspended


class MatchService:
    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.session = session
        self.repo = MatchRepository(session)
        self.request_id = request_id

    async def on_mutual_like(self, me: uuid.UUID, other: uuid.UUID, now: datetime) -> Match | None:
        """Exactly one match per pair: INSERT the ordered pair; on conflict load the row that exists.

        The caller holds both people's profile locks, so of two crossing likes the second sees the first.
        Returns the live match, or None if the pair's match was ended before. A new match is announced
        to both people (`match.new`, each with the other's card) once the transaction commits.
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
            count_after_commit(self.session, "match.created")
            await self._announce(match, now)
        return match if match.unmatched_at is None else None

    async def _announce(self, match: Match, now: datetime) -> None:
        cards = await pair_cards(self.session, match.user_low, match.user_high, now)
        await with_presence(self.session, cards, now)
        for viewer, other in ((match.user_low, match.user_high), (match.user_high, match.user_low)):
            if other in cards:
                data = {"match": match_read(match, cards[other]).model_dump(mode="json")}
                emit(self.session, [viewer], MATCH_NEW, data)

    def _announce_removed(self, match: Match) -> None:
        data = MatchRemoved(match_id=match.id).model_dump(mode="json")
        emit(self.session, [match.user_low, match.user_high], MATCH_REMOVED, data)

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
        cards = await cards_for(self.session, principal, [other for _, other, _, _ in page], now)
        await with_presence(self.session, cards, now)
        items = [match_read(match, cards[other], last, unread) for match, other, last, unread in page if other in cards]
        next_cursor = None
        if len(rows) > limit:
            last_match = page[-1][0]
            next_cursor = encode_cursor(last_match.last_activity_at.isoformat(), last_match.id)
        return Page[MatchRead](items=items, next_cursor=next_cursor)

    async def conversation(self, user_id: uuid.UUID, match_id: uuid.UUID, *, lock: bool = False) -> Conversation:
        """The match for chat; 404 `match_not_found` unless `user_id` is one of its two people.

        `lock=True` holds the match row until commit (sends in one conversation queue up behind it).
        """
        row = await self.repo.conversation_of(match_id, user_id, clock.now(), lock=lock)
        if row is None:
            raise MatchNotFound()
        match, other_id, other_live, not_blocked = row
        closed = match.unmatched_at is not None or not other_live or not not_blocked
        return Conversation(match=match, other_id=other_id, closed=closed)

    async def touch(self, match_id: uuid.UUID, at: datetime) -> None:
        """New activity (a message) at `at`: the match moves to the top of both people's lists."""
        await self.repo.touch(match_id, at)

    async def unmatch(self, principal: Principal, match_id: uuid.UUID) -> None:
        me = principal.user_id
        match = await self.repo.live_of_participant(match_id, me)
        if match is None or not await self.repo.unmatch(match_id, me, clock.now()):
            raise MatchNotFound()
        audit.record(
            self.session, "match.removed", actor_id=me, target_type="match", target_id=match_id,
            request_id=self.request_id,
        )  # fmt: skip
        user_id = str(me)

        async def _log() -> None:
            log.info("match.removed", match_id=str(match_id), user_id=user_id)

        after_commit(self.session, _log)
        self._announce_removed(match)

    async def on_block(self, blocker_id: uuid.UUID, blocked_id: uuid.UUID) -> None:
        """A new block ends the pair's match for good (an unblock does not bring it back) and closes its
        chat: both people get `match.removed`. Ending it updates the match row, so a message being sent
        at the same moment (it locks that row) is ordered before or after the block, never half-way."""
        match = await self.repo.of_pair(blocker_id, blocked_id)
        if match is not None and match.unmatched_at is None:
            await self.repo.unmatch(match.id, blocker_id, clock.now())
            audit.record(
                self.session, "match.removed", actor_id=blocker_id, target_type="match", target_id=match.id,
                reason="block", request_id=self.request_id,
            )  # fmt: skip
            self._announce_removed(match)
