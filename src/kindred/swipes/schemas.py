"""Swipe, undo, likes-received and boost bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from kindred.discovery.schemas import Card
from kindred.matches.schemas import MatchRead
from kindred.swipes.quotas import QuotasRead

# UUIDs arrive as JSON strings; strict mode would refuse every one of them.
LooseUUID = Annotated[uuid.UUID, Strict(False)]

# A Literal, not the SwipeAction enum: strict models refuse plain strings for enum fields.
Action = Literal["like", "pass", "superlike"]


class SwipeCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    target_id: LooseUUID
    action: Action
    comment: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _comment_only_with_superlike(self) -> SwipeCreate:
        if self.comment is not None and self.action != "superlike":
            raise ValueError("comment is only allowed with a superlike")
        return self


class SwipeCreated(BaseModel):
    swipe_id: uuid.UUID
    match: MatchRead | None
    quotas: QuotasRead


class UndoRead(BaseModel):
    target: Card


class LikesReceivedPage(BaseModel):
    count: int
    items: list[Card]
    next_cursor: str | None


class BoostCreated(BaseModel):
    ends_at: datetime
