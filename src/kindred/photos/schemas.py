"""Photo bodies: the Photo object (API.md) and the reorder request."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict

from kindred.models import PhotoStatus


class PhotoUrls(BaseModel):
    thumb: str
    medium: str
    large: str


class PhotoRead(BaseModel):
    id: uuid.UUID
    position: int = Field(ge=0, le=5)
    status: PhotoStatus
    urls: PhotoUrls


class PhotoOrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    # UUIDs arrive as JSON strings; strict mode would refuse every one of them.
    photo_ids: list[Annotated[uuid.UUID, Strict(False)]] = Field(max_length=6)
