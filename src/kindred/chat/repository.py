"""All SQL for messages: the idempotent insert, history and catch-up pages, read receipts, and the
per-match last message / unread count expressions the matches list uses."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.selectable import ScalarSelect

from kindred.models import Message

Position = tuple[datetime, uuid.UUID]  # (created_at, id): a message's place in its conversation


def last_message_id(match_id_column: ColumnElement[uuid.UUID]) -> ScalarSelect[uuid.UUID]:
    """The id of the newest message of the row's match (NULL without messages); an index lookup each."""
    latest = aliased(Message)
    return (
        select(latest.id)
        .where(latest.match_id == match_id_column)
        .order_by(latest.created_at.desc(), latest.id.desc())
        .limit(1)
        .scalar_subquery()
    )


def unread_count(match_id_column: ColumnElement[uuid.UUID], reader_id: uuid.UUID) -> ScalarSelect[int]:
    """Messages of the row's match that the other person sent and `reader_id` has not read yet."""
    unread = aliased(Message)
    return (
        select(func.count(unread.id))
        .where(unread.match_id == match_id_column, unread.sender_id != reader_id, unread.read_at.is_(None))
        .scalar_subquery()
    )


def _after(position: Position) -> ColumnElement[bool]:
    at, message_id = position
    return or_(Message.created_at > at, and_(Message.created_at == at, Message.id > message_id))


def _before(position: Position) -> ColumnElement[bool]:
    at, message_id = position
    return or_(Message.created_at < at, and_(Message.created_at == at, Message.id < message_id))


def _at_or_before(position: Position) -> ColumnElement[bool]:
    at, message_id = position
    return or_(Message.created_at < at, and_(Message.created_at == at, Message.id <= message_id))


class ChatRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def insert(self, message: Message) -> bool:
        """Insert unless the sender already sent this client_id in this match; True if this call did.

        ON CONFLICT DO NOTHING on the unique (sender_id, match_id, client_id): of two concurrent
        identical sends one inserts, the other waits for it to commit and inserts nothing. `message` is
        a transient object holding every column; it is not added to the session.
        """
        values = {
            "id": message.id, "match_id": message.match_id, "sender_id": message.sender_id, "body": message.body,
            "client_id": message.client_id, "created_at": message.created_at, "read_at": message.read_at,
        }  # fmt: skip
        insert_fn = postgresql.insert if self.session.get_bind().dialect.name == "postgresql" else sqlite.insert
        stmt = insert_fn(Message).values(**values)
        stmt = stmt.on_conflict_do_nothing(index_elements=["sender_id", "match_id", "client_id"])
        result = await self.session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def by_client_id(self, match_id: uuid.UUID, sender_id: uuid.UUID, client_id: str) -> Message | None:
        return await self.session.scalar(
            select(Message).where(
                Message.sender_id == sender_id, Message.match_id == match_id, Message.client_id == client_id
            )
        )

    async def in_match(self, match_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
        """The message, only if it belongs to this match."""
        return await self.session.scalar(select(Message).where(Message.id == message_id, Message.match_id == match_id))

    async def newest_first(self, match_id: uuid.UUID, *, limit: int, before: Position | None) -> list[Message]:
        query = select(Message).where(Message.match_id == match_id)
        if before is not None:
            query = query.where(_before(before))
        query = query.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def oldest_first(self, match_id: uuid.UUID, *, limit: int, after: Position) -> list[Message]:
        query = (
            select(Message)
            .where(Message.match_id == match_id, _after(after))
            .order_by(Message.created_at, Message.id)
            .limit(limit)
        )
        return list((await self.session.scalars(query)).all())

    async def mark_read(self, match_id: uuid.UUID, reader_id: uuid.UUID, up_to: Position, now: datetime) -> int:
        """Set read_at on the other person's unread messages up to `up_to`; read ones keep their time."""
        result = await self.session.execute(
            update(Message)
            .where(
                Message.match_id == match_id,
                Message.sender_id != reader_id,
                Message.read_at.is_(None),
                _at_or_before(up_to),
            )
            .values(read_at=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)
