"""Opaque keyset cursors and the `{items, next_cursor}` page shape."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from kindred.kit.errors import MalformedRequest

T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps([str(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str, size: int) -> list[str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError):
        raise MalformedRequest("The cursor is invalid.") from None
    if not isinstance(values, list) or len(values) != size or not all(isinstance(v, str) for v in values):
        raise MalformedRequest("The cursor is invalid.")
    return values


LimitParam = Annotated[int, Query(ge=1, le=100, description="Page size (1..100).")]
CursorParam = Annotated[str | None, Query(max_length=512, description="Opaque cursor from `next_cursor`.")]
