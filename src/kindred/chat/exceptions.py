"""Chat failures, each with its stable contract code."""

from __future__ import annotations

from kindred.kit.errors import Forbidden, ValidationFailed
from kindred.matches.exceptions import MatchNotFound

__all__ = ["ConversationClosed", "MatchNotFound", "MessageNotInConversation"]


class ConversationClosed(Forbidden):
    """Unmatched, blocked either way, or the other account is gone: no sending, reading or receipts."""

    code, message = "conversation_closed", "This conversation is closed."


class MessageNotInConversation(ValidationFailed):
    """A message id (`?after=`, `up_to`) that is not a message of this conversation."""

    code, message = "validation_error", "This message is not part of the conversation."

    def __init__(self, *loc: str) -> None:
        super().__init__(details={"fields": [{"loc": list(loc), "msg": self.message}]})
