"""Auth failures, each with its stable contract code."""

from __future__ import annotations

from datetime import datetime

from kindred.kit.errors import AppError, Forbidden, NotAuthenticated, ValidationFailed


class InvalidCredentials(NotAuthenticated):
    code, message = "invalid_credentials", "The email or password is incorrect."
    keep_writes = True  # the failed sign-in audit row must survive the error


class EmailNotVerified(Forbidden):
    code, message = "email_not_verified", "Confirm your email address first; we sent you a link."


class AccountSuspended(Forbidden):
    code, message = "account_suspended", "This account is suspended."

    def __init__(self, until: datetime | None) -> None:
        super().__init__(details={"until": until.isoformat().replace("+00:00", "Z") if until else None})


class RefreshTokenSpent(NotAuthenticated):
    code, message = "refresh_token_spent", "This refresh token was just used; use the newest one."


class RefreshTokenReused(NotAuthenticated):
    code, message = "refresh_token_reused", "This refresh token was used before; the session has been ended."
    keep_writes = True  # revoking the family is the point


class Underage(ValidationFailed):
    code, message = "underage", "You must be 18 or older to use Kindred."


class WeakPassword(ValidationFailed):
    code, message = "weak_password", "Choose a password of at least 10 characters that is not a common one."


class TermsVersionInvalid(ValidationFailed):
    code, message = "terms_version_invalid", "Accept the current terms to continue."


class SameEmail(ValidationFailed):
    code, message = "validation_error", "This is already your email address."


class StaffOnly(AppError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."
