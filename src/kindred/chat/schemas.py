"""The Message object, the send and read-receipt bodies, and the event payloads."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator

from kindred.models.chat import BODY_MAX_LENGTH, CLIENT_ID_MAX_LENGTH

# UUIDs arrive as JSON strings; strict mode would refuse every one of them.
LooseUUID = Annotated[uuid.UUID, Strict(False)]

# Unicode categories a message body may not contain (after trimming), with one exception, "\n":
#   Cc  C0 and C1 control characters and DEL: invisible, they reorder or garble what the other person
#       sees, and NUL cannot even be stored in PostgreSQL text. Tabs and carriage returns included:
#       a line break is "\n" (clients send "\r\n" at their peril; trailing ones are trimmed anyway).
#   Cs  lone surrogates (JSON "\ud800"): not encodable as UTF-8, so not storable.
#   Zl, Zp  U+2028/U+2029 line and paragraph separators: a second, invisible kind of line break that
#       breaks JavaScript string literals in older engines.
# Format characters (Cf) stay allowed: emoji sequences need the zero-width joiner, and right-to-left
# text needs its direction marks.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})
_ALLOWED_CONTROLS = frozenset({"\n"})


def check_body(value: str) -> str:
    """The stored body: trimmed (Unicode whitespace, as `str.strip`), 1..2000 code points, no controls."""
    body = value.strip()
    if not body:
        raise ValueError("the message is empty")
    if len(body) > BODY_MAX_LENGTH:
        raise ValueError(f"the message is longer than {BODY_MAX_LENGTH} characters")
    for char in body:
        if char not in _ALLOWED_CONTROLS and unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            raise ValueError(f"the message contains a control character (U+{ord(char):04X})")
    return body


class MessageCreate(BaseModel):
    """`client_id`: the client's own id for this message (1..64 visible ASCII characters, e.g. a UUID);
    sending it again returns the first message instead of adding a second."""

    model_config = ConfigDict(extra="forbid", strict=True)

    body: str = Field(description="1..2000 characters after trimming; no control characters except newline.")
    client_id: str = Field(min_length=1, max_length=CLIENT_ID_MAX_LENGTH, pattern=r"^[\x21-\x7e]+$")

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        return check_body(value)


class ReadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    up_to: LooseUUID = Field(
        description="A message of this conversation: the other person's messages up to it are read."
    )


class MessageRead(BaseModel):
    id: uuid.UUID
    match_id: uuid.UUID
    sender_id: uuid.UUID
    body: str
    client_id: str
    created_at: datetime
    read_at: datetime | None


class ReadReceipt(BaseModel):
    """`message.read` event data: the other person's messages up to `up_to` were read at `read_at`."""

    match_id: uuid.UUID
    up_to: uuid.UUID
    read_at: datetime
