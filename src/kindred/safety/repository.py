"""All SQL for safety, plus the NOT EXISTS clauses other domains use to hide blocked and reported people."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import AccountStatus, Block, ModerationItem, Profile, Report, User

REPORT_THRESHOLD_KIND = "report_threshold"


def not_blocked_either_way(viewer_id: uuid.UUID, other_id_column: Any) -> ColumnElement[bool]:
    """True where neither the viewer blocked the row's user nor the row's user blocked the viewer.

    Two anti-joins rather than one with an OR inside: each is a primary-key lookup (or a hash of the
    viewer's few blocks), whatever the planner guesses about how many rows reach it.
    """
    return and_(
        ~exists().where(Block.blocker_id == viewer_id, Block.blocked_id == other_id_column),
        ~exists().where(Block.blocker_id == other_id_column, Block.blocked_id == viewer_id),
    )


def not_reported_by(viewer_id: uuid.UUID, other_id_column: Any) -> ColumnElement[bool]:
    """True where the viewer has never reported the row's user (a report hides them from the reporter)."""
    return ~exists().where(Report.reporter_id == viewer_id, Report.reported_id == other_id_column)


class SafetyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ users
    async def live_user_exists(self, user_id: uuid.UUID) -> bool:
        """A user others may block or report: present and not deleted."""
        found = await self.session.scalar(
            select(User.id).where(
                User.id == user_id, User.status != AccountStatus.deleted.value, User.deleted_at.is_(None)
            )
        )
        return found is not None

    async def user(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    # ------------------------------------------------------------------ blocks
    async def add_block(self, blocker_id: uuid.UUID, blocked_id: uuid.UUID, now: datetime) -> bool:
        """Insert the block unless it exists; True if this call created it (safe under concurrent calls)."""
        values = {"blocker_id": blocker_id, "blocked_id": blocked_id, "created_at": now}
        dialect = self.session.get_bind().dialect.name
        insert_fn = postgresql.insert if dialect == "postgresql" else sqlite.insert
        result = await self.session.execute(insert_fn(Block).values(**values).on_conflict_do_nothing())
        return bool(getattr(result, "rowcount", 0))

    async def block_of(self, blocker_id: uuid.UUID, blocked_id: uuid.UUID) -> Block | None:
        return await self.session.scalar(
            select(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
        )

    async def remove_block(self, blocker_id: uuid.UUID, blocked_id: uuid.UUID) -> bool:
        result = await self.session.execute(
            delete(Block).where(Block.blocker_id == blocker_id, Block.blocked_id == blocked_id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def blocks_by(
        self, blocker_id: uuid.UUID, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[tuple[uuid.UUID, str | None, datetime]]:
        """The caller's own blocks, newest first, keyset-paginated on (created_at, blocked_id)."""
        query = (
            select(Block.blocked_id, Profile.display_name, Block.created_at)
            .outerjoin(Profile, Profile.user_id == Block.blocked_id)
            .where(Block.blocker_id == blocker_id)
        )
        if after is not None:
            created, blocked = after
            query = query.where(
                or_(Block.created_at < created, and_(Block.created_at == created, Block.blocked_id < blocked))
            )
        rows = await self.session.execute(query.order_by(Block.created_at.desc(), Block.blocked_id.desc()).limit(limit))
        return [(blocked_id, name, created_at) for blocked_id, name, created_at in rows.all()]

    async def blocked_either_way(self, a: uuid.UUID, b: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(func.count())
            .select_from(Block)
            .where(
                or_(
                    and_(Block.blocker_id == a, Block.blocked_id == b),
                    and_(Block.blocker_id == b, Block.blocked_id == a),
                )
            )
        )
        return bool(found)

    # ------------------------------------------------------------------ reports
    async def add_report(self, report: Report) -> None:
        self.session.add(report)
        await self.session.flush()

    async def lock_subject(self, user_id: uuid.UUID) -> Profile | None:
        """Serialise threshold checks for one reported user: concurrent reports must not both raise an item.

        PostgreSQL locks the profile row until commit; SQLite has a single writer, so its transactions
        are serialised already (FOR UPDATE is not emitted there).
        """
        return await self.session.scalar(
            select(Profile)
            .where(Profile.user_id == user_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def open_reporters_of(
        self, reported_id: uuid.UUID
    ) -> list[tuple[uuid.UUID, datetime, datetime | None, str, datetime]]:
        """Each open report against a user with what decides whether its reporter counts."""
        rows = await self.session.execute(
            select(Report.reporter_id, User.created_at, User.email_verified_at, User.status, Report.created_at)
            .join(User, User.id == Report.reporter_id)
            .where(Report.reported_id == reported_id, Report.status == "open")
        )
        return [(a, b, c, d, e) for a, b, c, d, e in rows.all()]

    async def open_threshold_item_exists(self, subject_user_id: uuid.UUID) -> bool:
        found = await self.session.scalar(
            select(func.count())
            .select_from(ModerationItem)
            .where(
                ModerationItem.subject_user_id == subject_user_id,
                ModerationItem.kind == REPORT_THRESHOLD_KIND,
                ModerationItem.status == "open",
            )
        )
        return bool(found)

    async def add_moderation_item(self, item: ModerationItem) -> None:
        self.session.add(item)
        await self.session.flush()
