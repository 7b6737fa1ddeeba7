"""The Match object: the other person's card, plus the chat fields (filled in by chat)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from kindred.discovery.schemas import Card


class MatchRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    user: Card
    last_message: dict[str, Any] | None = None  # a Message once chat exists
    unread_count: int = 0
