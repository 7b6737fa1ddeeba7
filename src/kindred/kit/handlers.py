"""Render every error in the contract's shape: `{"error": {code, message, details}, "request_id"}`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Scope, Send

from kindred.kit.errors import AppError
from kindred.observability.logging import get_logger

log = get_logger(__name__)

_HTTP_CODES = {
    400: "malformed_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def error_body(request: Request, code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "error": {"code": code, "message": message, "details": details or {}},
        "request_id": request.scope.get("kindred", {}).get("request_id"),
    }


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(request, code, message, details), status_code=status, headers=headers)


async def app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return error_response(request, exc.status, exc.code, exc.detail_message, exc.details, exc.headers)


def _clean_loc(loc: Any) -> list[str | int]:
    return [part for part in loc if isinstance(part, str | int)]


async def validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    # Unparseable JSON is a malformed request (400), not a validation failure.
    if any(err.get("type") == "json_invalid" for err in errors):
        return error_response(request, 400, "malformed_request", "The request body is not valid JSON.")
    fields = [{"loc": _clean_loc(err.get("loc", ())), "msg": str(err.get("msg", "invalid"))} for err in errors]
    return error_response(request, 422, "validation_error", "The request is not valid.", {"fields": fields})


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "malformed_request" if exc.status_code < 500 else "internal_error")
    message = exc.detail if isinstance(exc.detail, str) else "Request failed."
    return error_response(request, exc.status_code, code, message, headers=getattr(exc, "headers", None))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(RequestValidationError, validation_handler)
    app.add_exception_handler(StarletteHTTPException, http_error_handler)


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any]


class ErrorBody(BaseModel):
    """The contract's error shape (API.md, Conventions)."""

    error: ErrorDetail
    request_id: str | None


def _documented(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


# Declared on every /api/v1 route so generated SDKs know the error shape.
COMMON_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("malformed_request, token_invalid"),
    401: _documented("not_authenticated, token_expired, session_revoked, invalid_credentials, refresh_token_*"),
    403: _documented("forbidden, email_not_verified, account_suspended"),
    413: _documented("payload_too_large (a body over 1 MiB)"),
    422: _documented("validation_error (details.fields), underage, weak_password, terms_version_invalid"),
    429: _documented("rate_limited (Retry-After, RateLimit-Limit/Remaining/Reset)"),
    503: _documented("database_unavailable, dependency_unavailable, timeout (with Retry-After)"),
}


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    details: dict[str, Any] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """The contract's error shape straight from pure-ASGI middleware (no Request, no router involved)."""
    body = json.dumps(
        {
            "error": {"code": code, "message": message, "details": details or {}},
            "request_id": scope.get("kindred", {}).get("request_id"),
        }
    ).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})
