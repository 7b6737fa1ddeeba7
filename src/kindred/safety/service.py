"""Safety rules: blocks, reports, and hiding a profile once enough established reporters agree."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.kit import clock
from kindred.kit.errors import MalformedRequest
from kindred.kit.pagination import Page, decode_cursor, encode_cursor
from kindred.models import AccountStatus, ModerationItem, Report
from kindred.observability import audit
from kindred.observability.logging import get_logger
from kindred.safety.exceptions import BlockNotFound, CannotTargetSelf, UserNotFound
from kindred.safety.repository import REPORT_THRESHOLD_KIND, SafetyRepository
from kindred.safety.schemas import BlockCreated, BlockRead, ReportCreate, ReportCreated

log = get_logger(__name__)

REPORT_THRESHOLD = 5
ESTABLISHED_AGE = timedelta(hours=24)
THRESHOLD_PRIORITY = 100


async def blocked_either_way(session: AsyncSession, a: uuid.UUID, b: uuid.UUID) -> bool:
    """Whether either user has blocked the other (for cards, matches and chat)."""
    return await SafetyRepository(session).blocked_either_way(a, b)


def is_established(created_at: datetime, email_verified_at: datetime | None, status: str, at: datetime) -> bool:
    """An account whose report counts towards the threshold: verified and older than 24 h at `at`.

    Banned and deleted reporters never count, so throwaway accounts cannot take anyone down.
    """
    if status in {AccountStatus.banned.value, AccountStatus.deleted.value}:
        return False
    return email_verified_at is not None and email_verified_at <= at and created_at <= at - ESTABLISHED_AGE


class SafetyService:
    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.session = session
        self.repo = SafetyRepository(session)
        self.request_id = request_id

    async def _require_other_user(self, principal: Principal, user_id: uuid.UUID) -> None:
        if user_id == principal.user_id:
            raise CannotTargetSelf()
        if not await self.repo.live_user_exists(user_id):
            raise UserNotFound()

    # ------------------------------------------------------------------ blocks
    async def block(self, principal: Principal, user_id: uuid.UUID) -> BlockCreated:
        await self._require_other_user(principal, user_id)
        created = await self.repo.add_block(principal.user_id, user_id, clock.now())
        block = await self.repo.block_of(principal.user_id, user_id)
        if block is None:  # pragma: no cover - the row was just written or already there
            raise RuntimeError("block vanished inside its own transaction")
        if created:
            audit.record(
                self.session,
                "safety.block",
                actor_id=principal.user_id,
                target_type="user",
                target_id=user_id,
                request_id=self.request_id,
            )
            log.info("safety.blocked", user_id=str(principal.user_id), blocked_id=str(user_id))
            # Imported here: matches -> discovery -> safety would make a module-level import circular.
            from kindred.matches.service import MatchService

            await MatchService(self.session, request_id=self.request_id).on_block(principal.user_id, user_id)
        return BlockCreated(user_id=user_id, created_at=block.created_at)

    async def unblock(self, principal: Principal, user_id: uuid.UUID) -> None:
        if not await self.repo.remove_block(principal.user_id, user_id):
            raise BlockNotFound()
        audit.record(
            self.session,
            "safety.unblock",
            actor_id=principal.user_id,
            target_type="user",
            target_id=user_id,
            request_id=self.request_id,
        )
        log.info("safety.unblocked", user_id=str(principal.user_id), blocked_id=str(user_id))

    async def list_blocks(self, principal: Principal, *, limit: int, cursor: str | None) -> Page[BlockRead]:
        after = None
        if cursor:
            created, blocked = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(created), uuid.UUID(blocked))
            except ValueError:
                raise MalformedRequest("The cursor is invalid.") from None
        rows = await self.repo.blocks_by(principal.user_id, limit=limit + 1, after=after)
        items = [BlockRead(user_id=r[0], display_name=r[1], created_at=r[2]) for r in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last[2].isoformat(), last[0])
        return Page[BlockRead](items=items, next_cursor=next_cursor)

    # ------------------------------------------------------------------ reports
    async def report(self, principal: Principal, body: ReportCreate) -> ReportCreated:
        await self._require_other_user(principal, body.user_id)
        now = clock.now()
        # Lock first: the count below and the moderation item must see every earlier report.
        subject = await self.repo.lock_subject(body.user_id)
        report = Report(
            reporter_id=principal.user_id,
            reported_id=body.user_id,
            reason=body.reason,
            details=body.details,
            message_id=body.message_id,
            status="open",
            created_at=now,
        )
        await self.repo.add_report(report)
        # The reason code only: the free-text details are personal data and stay in the reports table.
        audit.record(
            self.session,
            "safety.report",
            actor_id=principal.user_id,
            target_type="user",
            target_id=body.user_id,
            reason=body.reason,
            request_id=self.request_id,
        )
        log.info(
            "safety.reported",
            report_id=str(report.id),
            user_id=str(principal.user_id),
            reported_id=str(body.user_id),
            reason=body.reason,
        )
        if subject is not None and await self._threshold_reached(body.user_id):
            subject.hidden_pending_review = True
            await self._raise_moderation_item(body.user_id, now=now)
        return ReportCreated(id=report.id)

    async def _threshold_reached(self, reported_id: uuid.UUID) -> bool:
        """5 distinct reporters who were established when they reported; repeat reports count once."""
        rows = await self.repo.open_reporters_of(reported_id)
        counted = {
            reporter_id
            for reporter_id, created_at, verified_at, status, reported_at in rows
            if is_established(created_at, verified_at, status, reported_at)
        }
        return len(counted) >= REPORT_THRESHOLD

    async def _raise_moderation_item(self, reported_id: uuid.UUID, *, now: datetime) -> None:
        """One high-priority item per subject while it is open: the 6th report adds nothing."""
        if await self.repo.open_threshold_item_exists(reported_id):
            return
        await self.repo.add_moderation_item(
            ModerationItem(
                kind=REPORT_THRESHOLD_KIND,
                subject_user_id=reported_id,
                priority=THRESHOLD_PRIORITY,
                status="open",
                created_at=now,
            )
        )
        audit.record(
            self.session,
            "safety.hidden_pending_review",
            target_type="user",
            target_id=reported_id,
            reason=REPORT_THRESHOLD_KIND,
            request_id=self.request_id,
        )
        log.info("safety.hidden_pending_review", user_id=str(reported_id))
