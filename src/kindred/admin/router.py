"""`/api/v1/admin`: operator routes. For now the deliberate error that proves error tracking works."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from kindred.auth.dependencies import AdminUser
from kindred.kit.handlers import ErrorBody
from kindred.observability.logging import get_logger

log = get_logger(__name__)

router = APIRouter(prefix="/admin", tags=["admin"])


class DeliberateTestError(RuntimeError):
    """Raised on purpose by `POST /admin/test-error`. Deliberately not an AppError: it must travel the
    path of a real bug (a 500 in the contract's shape, reported to Sentry), not a designed answer."""

    def __init__(self) -> None:
        super().__init__("Deliberate test error raised by an administrator to verify error tracking.")


_RESPONSES: dict[int | str, dict[str, Any]] = {
    500: {"model": ErrorBody, "description": "internal_error: always, by design"},
    403: {"model": ErrorBody, "description": "forbidden: the caller is not an admin"},
}


@router.post("/test-error", status_code=status.HTTP_500_INTERNAL_SERVER_ERROR, responses=_RESPONSES)
async def raise_test_error(principal: AdminUser) -> None:
    """Admin only: raise an unhandled error, so a deployment can check that it reaches error tracking."""
    log.warning("admin.test_error", user_id=str(principal.user_id))
    raise DeliberateTestError()
