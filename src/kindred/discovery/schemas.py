"""Cards: another person as the caller may see them. Never email, birthdate, coordinates or preferences."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel

from kindred.photos.schemas import PhotoRead


class PromptRead(BaseModel):
    question: str
    answer: str


class Card(BaseModel):
    id: uuid.UUID
    display_name: str
    age: int
    bio: str
    gender: Literal["woman", "man", "nonbinary"] | None
    interests: list[str]
    prompts: list[PromptRead]
    photos: list[PhotoRead]
    distance_km: int | None
    verified: bool
    # Matches only, and only if they have not hidden it (`hide_presence`); null everywhere else.
    last_active_bucket: Literal["online", "today", "this_week", "earlier"] | None = None


class CardPage(BaseModel):
    items: list[Card]
    next_cursor: str | None
