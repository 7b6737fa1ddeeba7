"""Safety failures, each with its stable contract code."""

from __future__ import annotations

from kindred.kit.errors import NotFound, ValidationFailed


class UserNotFound(NotFound):
    code, message = "user_not_found", "User not found."


class BlockNotFound(NotFound):
    code, message = "not_found", "You have not blocked this user."


class CannotTargetSelf(ValidationFailed):
    code, message = "validation_error", "You cannot do this to your own account."

    def __init__(self) -> None:
        super().__init__(details={"fields": [{"loc": ["body", "user_id"], "msg": self.message}]})
