"""The Match object: the other person's card, the conversation's last message and the caller's unread count."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel

from kindred.chat.schemas import MessageRead
from kindred.discovery.schemas import Card


class MatchRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    user: Card
    last_message: MessageRead | None = None
    unread_count: int = 0


class MatchRemoved(BaseModel):
    """`match.removed` event data."""

    match_id: uuid.UUID
