"""One error hierarchy, rendered in the contract's error shape by one handler."""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """A failure the client is told about: HTTP status + stable machine `code`.

    `keep_writes = True` tells the request's unit of work to commit what was written before the error
    (an audit row for a failed sign-in, a revoked token family) instead of rolling it back.
    """

    status: ClassVar[int] = 400
    code: ClassVar[str] = "malformed_request"
    message: ClassVar[str] = "The request could not be processed."
    keep_writes: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.detail_message = message or self.message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.detail_message)

    @property
    def status_code(self) -> int:
        """`status` under the name integrations look for: Sentry reports handled errors whose
        `status_code` is 5xx (a 503 `database_unavailable` is reported; a 404 is not)."""
        return self.status


class MalformedRequest(AppError):
    status, code, message = 400, "malformed_request", "The request is malformed."


class TokenInvalid(AppError):
    status, code, message = 400, "token_invalid", "This link is invalid or has expired."


class NotAuthenticated(AppError):
    status, code, message = 401, "not_authenticated", "Authentication is required."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(message, **kwargs)


class TokenExpired(NotAuthenticated):
    code, message = "token_expired", "The access token has expired."


class SessionRevoked(NotAuthenticated):
    code, message = "session_revoked", "This session has ended. Sign in again."


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Not found."


class Conflict(AppError):
    status, code, message = 409, "conflict", "The request conflicts with the current state."


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "This media type is not supported."


class ValidationFailed(AppError):
    status, code, message = 422, "validation_error", "The request is not valid."


class RateLimited(AppError):
    status, code, message = 429, "rate_limited", "Too many requests. Try again later."


class ServiceUnavailable(AppError):
    status, code, message = 503, "dependency_unavailable", "A dependency is unavailable. Try again shortly."

    def __init__(self, message: str | None = None, *, retry_after: int = 5, **kwargs: Any) -> None:
        headers = kwargs.pop("headers", None) or {}
        headers.setdefault("Retry-After", str(retry_after))
        super().__init__(message, headers=headers, **kwargs)


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database is unavailable. Try again shortly."


class RequestTimeout(ServiceUnavailable):
    code, message = "timeout", "The request took too long."
