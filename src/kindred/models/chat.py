"""Chat messages: one row per message in a match's conversation, with its read receipt."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from kindred.models.base import Base, created_at_column, uuid_pk

BODY_MAX_LENGTH = 2000
CLIENT_ID_MAX_LENGTH = 64


class Message(Base):
    """A message; `read_at` is set once the other participant has read it (and never moves after).

    `created_at` strictly increases within a match (sends are serialised on the match row), so
    (created_at, id) orders a conversation the way it was committed: `?after=` never skips a message.
    """

    __tablename__ = "messages"
    __table_args__ = (
        # A client's retry with the same client_id finds the first message instead of adding a second.
        # sender_id first: the same index serves the users foreign key (deleting an account).
        UniqueConstraint("sender_id", "match_id", "client_id"),
        # History pages (newest first, cursor to older) and catch-up (`?after=`, oldest first).
        Index("ix_messages_match_id_created_at_id", "match_id", "created_at", "id"),
        # Unread counts and read receipts touch only unread rows: a small partial index.
        Index(
            "ix_messages_unread",
            "match_id",
            "sender_id",
            postgresql_where=text("read_at IS NULL"),
            sqlite_where=text("read_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    match_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("matches.id", ondelete="CASCADE"))
    sender_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(String(BODY_MAX_LENGTH))
    client_id: Mapped[str] = mapped_column(String(CLIENT_ID_MAX_LENGTH))
    created_at: Mapped[datetime] = created_at_column()
    read_at: Mapped[datetime | None]
