"""Safety bodies: block and report requests, the Block list item and the created report."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

# UUIDs arrive as JSON strings; strict mode would refuse every one of them.
LooseUUID = Annotated[uuid.UUID, Strict(False)]

# A Literal, not the ReportReason enum: strict models refuse plain strings for enum fields.
ReasonCode = Literal["fake_profile", "harassment", "inappropriate_photos", "spam", "underage", "scam", "other"]


class BlockCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: LooseUUID


class BlockCreated(BaseModel):
    user_id: uuid.UUID
    created_at: datetime


class BlockRead(BaseModel):
    user_id: uuid.UUID
    display_name: str | None
    created_at: datetime


class ReportCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: LooseUUID
    reason: ReasonCode
    details: str | None = Field(default=None, max_length=1000)
    message_id: LooseUUID | None = None


class ReportCreated(BaseModel):
    id: uuid.UUID
