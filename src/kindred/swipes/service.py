"""Swipe rules: visibility, one swipe per target, daily quotas, the mutual like, undo, admirers, boosts."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.discovery.exceptions import UserNotFound
from kindred.discovery.service import DiscoveryService
from kindred.kit import clock
from kindred.kit.errors import MalformedRequest
from kindred.kit.pagination import decode_cursor, encode_cursor
from kindred.matches.service import MatchService, cards_for, match_read, with_presence
from kindred.models import Swipe, SwipeAction
from kindred.observability.logging import get_logger
from kindred.swipes.exceptions import AlreadySwiped, BoostActive, NothingToUndo, PremiumRequired, QuotaExhausted
from kindred.swipes.quotas import exhausted_until, plan_for, quotas
from kindred.swipes.repository import LIKES, SwipeRepository
from kindred.swipes.schemas import BoostCreated, LikesReceivedPage, SwipeCreate, SwipeCreated, UndoRead

log = get_logger(__name__)

BOOST_LENGTH = timedelta(minutes=30)


class SwipeService:
    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.session = session
        self.repo = SwipeRepository(session)
        self.request_id = request_id

    async def swipe(self, principal: Principal, body: SwipeCreate) -> SwipeCreated:
        me, target = principal.user_id, body.target_id
        # Exactly GET /users/{id}'s rule: unknown, invisible, blocked or self -> 404 user_not_found.
        card = await DiscoveryService(self.session).card(principal, target)
        # Both rows, lowest id first: the quota count sees every earlier like of mine, and of two crossing
        # likes the one that commits second waits here and then sees the other's swipe.
        await self.repo.lock_profiles(me, target)
        now = clock.now()
        resets_at = await exhausted_until(self.session, me, principal.tier, body.action, now)
        if resets_at is not None:
            raise QuotaExhausted(resets_at, now)
        swipe = Swipe(id=uuid.uuid4(), swiper_id=me, target_id=target, action=body.action, comment=body.comment,
                      created_at=now)  # fmt: skip
        if not await self.repo.add(swipe):
            raise AlreadySwiped()
        log.info("swipe.created", swipe_id=str(swipe.id), user_id=str(me), target_id=str(target), action=body.action)
        match = None
        if body.action in LIKES and await self.repo.liked(target, me):
            made = await MatchService(self.session, request_id=self.request_id).on_mutual_like(me, target, now)
            if made is not None:
                await with_presence(self.session, {card.id: card}, now)  # a match's card, as in GET /matches
                match = match_read(made, card)
        return SwipeCreated(swipe_id=swipe.id, match=match, quotas=await quotas(self.session, me, principal.tier, now))

    async def undo(self, principal: Principal) -> UndoRead:
        if not plan_for(principal.tier).undo:
            raise PremiumRequired()
        me = principal.user_id
        await self.repo.lock_profiles(me)
        last = await self.repo.last_by(me)
        if last is None or last.action != SwipeAction.pass_.value:
            raise NothingToUndo()
        try:
            card = await DiscoveryService(self.session).card(principal, last.target_id)
        except UserNotFound:
            raise NothingToUndo() from None  # they are gone or blocked: nothing to go back to
        await self.repo.remove(last.id, me)
        log.info("swipe.undone", swipe_id=str(last.id), user_id=str(me))
        return UndoRead(target=card)

    async def likes_received(self, principal: Principal, *, limit: int, cursor: str | None) -> LikesReceivedPage:
        now = clock.now()
        me = principal.user_id
        count = await self.repo.admirers_count(me, now)
        if not plan_for(principal.tier).likes_received:
            return LikesReceivedPage(count=count, items=[], next_cursor=None)
        after = None
        if cursor:
            at_raw, id_raw = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(at_raw), uuid.UUID(id_raw))
            except ValueError:
                raise MalformedRequest("The cursor is invalid.") from None
        rows = await self.repo.admirers(me, now, limit=limit + 1, after=after)
        page = rows[:limit]
        cards = await cards_for(self.session, principal, [user_id for user_id, _, _ in page], now)
        items = [cards[user_id] for user_id, _, _ in page if user_id in cards]
        next_cursor = None
        if len(rows) > limit:
            _, at, swipe_id = page[-1]
            next_cursor = encode_cursor(at.isoformat(), swipe_id)
        return LikesReceivedPage(count=count, items=items, next_cursor=next_cursor)

    async def boost(self, principal: Principal) -> BoostCreated:
        if not plan_for(principal.tier).boosts:
            raise PremiumRequired()
        me = principal.user_id
        await self.repo.lock_profiles(me)  # one active boost, also under concurrent requests
        now = clock.now()
        if await self.repo.active_boost(me, now):
            raise BoostActive()
        ends_at = now + BOOST_LENGTH
        await self.repo.add_boost(me, now, ends_at)
        log.info("boost.started", user_id=str(me))
        return BoostCreated(ends_at=ends_at)
