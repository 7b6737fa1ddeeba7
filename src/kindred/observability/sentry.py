"""Error tracking with Sentry when SENTRY_DSN is set: unexpected errors and 5xx only, no personal data.

What an event may carry: the exception (type, scrubbed message, stack without local variables), the
route template, method and path, the request id, the user's id, environment, release and log breadcrumbs
(already free of personal data, scrubbed again). What it never carries: e-mail addresses, IP addresses,
cookies, the Authorization header or any other header outside a short allow-list, query strings, request
bodies, SQL parameters — message bodies, birthdates and coordinates only ever travel in bodies,
parameters and local variables, all of which are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import sentry_sdk
import structlog
from fastapi.exceptions import RequestValidationError
from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration
from sentry_sdk.types import Event, Hint
from sentry_sdk.utils import event_from_exception
from starlette.exceptions import HTTPException

from kindred.kit.errors import AppError
from kindred.observability.logging import get_logger
from kindred.observability.telemetry import package_version, scrub_text
from kindred.settings import Settings

log = get_logger(__name__)

FLUSH_TIMEOUT = 2.0  # seconds the lifespan waits for queued events at shutdown
# Request headers an event keeps; everything else (Authorization, Cookie, X-Forwarded-For, User-Agent,
# X-API-Key, X-CSRF-Token, ...) is dropped.
_SAFE_HEADERS = frozenset({"accept", "content-length", "content-type", "x-request-id"})
_BREADCRUMB_KEYS = ("type", "category", "level", "timestamp", "message")
_UNHANDLED = {"type": "kindred.last_resort", "handled": False}
_HANDLED = {"type": "kindred.handled", "handled": True}


def release_name(settings: Settings) -> str:
    """RELEASE when set (a deploy tag or commit), else `kindred@<package version>`."""
    return settings.release or f"kindred@{package_version()}"


def is_expected(exc: BaseException) -> bool:
    """A client error the API answered as designed (4xx): not something to page anyone about."""
    if isinstance(exc, AppError):
        return exc.status < 500
    if isinstance(exc, HTTPException):
        return exc.status_code < 500
    return isinstance(exc, RequestValidationError)


def _scrub_request(event: dict[str, Any]) -> None:
    request = event.get("request")
    if not isinstance(request, dict):
        return
    kept: dict[str, Any] = {}
    if request.get("method"):
        kept["method"] = request["method"]
    if isinstance(request.get("url"), str):
        kept["url"] = request["url"].split("?", 1)[0]
    headers = request.get("headers")
    if isinstance(headers, dict):
        safe = {name: value for name, value in headers.items() if name.lower() in _SAFE_HEADERS}
        if safe:
            kept["headers"] = safe
    # Dropped: cookies, data (the body), query_string, env (REMOTE_ADDR) and every other header.
    event["request"] = kept


def _scrub_event(event: dict[str, Any]) -> dict[str, Any]:
    _scrub_request(event)
    user = event.get("user")
    if isinstance(user, dict):
        if user.get("id"):
            event["user"] = {"id": str(user["id"])}
        else:
            event.pop("user")
    for exception in (event.get("exception") or {}).get("values") or []:
        if isinstance(exception.get("value"), str):
            exception["value"] = scrub_text(exception["value"])
        for frame in (exception.get("stacktrace") or {}).get("frames") or []:
            frame.pop("vars", None)
    logentry = event.get("logentry")
    if isinstance(logentry, dict):
        for key in ("message", "formatted"):
            if isinstance(logentry.get(key), str):
                logentry[key] = scrub_text(logentry[key])
        logentry.pop("params", None)
    if isinstance(event.get("message"), str):
        event["message"] = scrub_text(event["message"])
    breadcrumbs = event.get("breadcrumbs")
    values = breadcrumbs.get("values") if isinstance(breadcrumbs, dict) else breadcrumbs
    if isinstance(values, list):
        cleaned = [
            {key: crumb[key] for key in _BREADCRUMB_KEYS if key in crumb} for crumb in values if isinstance(crumb, dict)
        ]
        for crumb in cleaned:  # `data` (URLs with query strings, record extras) is dropped above
            if isinstance(crumb.get("message"), str):
                crumb["message"] = scrub_text(crumb["message"])
        if isinstance(breadcrumbs, dict):
            breadcrumbs["values"] = cleaned
        else:
            event["breadcrumbs"] = cleaned
    extra = event.get("extra")
    if isinstance(extra, dict):
        extra.pop("sys.argv", None)  # `kindred create-admin --email ... --password ...`
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    if request_id:  # the id the client got in the 500 body: support finds the event by it
        tags = event.get("tags")
        if isinstance(tags, dict):
            tags.setdefault("request_id", request_id)
        else:
            event["tags"] = {"request_id": request_id}
    return event


def before_send(event: Event, hint: Hint) -> Event | None:
    """Drop expected 4xx; strip everything personal from what is left."""
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], BaseException) and is_expected(exc_info[1]):
        return None
    # The scrubber walks the event as the plain dict it is at run time (keys the TypedDict does not name).
    return cast("Event", _scrub_event(cast("dict[str, Any]", event)))


def before_send_transaction(event: Event, hint: Hint) -> Event | None:
    """Performance events (SENTRY_TRACES_SAMPLE_RATE > 0) get the same scrubbing."""
    return cast("Event", _scrub_event(cast("dict[str, Any]", event)))


# Sentry is process-wide (one client, patched framework classes), but the app factory runs once per
# app — and the test suite builds many apps in one process. The options of the live client are kept so a
# second app with the same configuration reuses it instead of starting another client.
_active_options: tuple[Any, ...] | None = None


def init_sentry(settings: Settings) -> bool:
    """Start Sentry once per process when SENTRY_DSN is set; True if it is on. Call before routes exist:
    the FastAPI integration wraps request handlers as they are built."""
    global _active_options
    if not settings.sentry_dsn:
        return False
    environment = settings.environment.value
    release = release_name(settings)
    rate = settings.sentry_traces_sample_rate
    options = (settings.sentry_dsn, environment, release, rate)
    if options == _active_options and sentry_sdk.is_initialized():
        return True
    if sentry_sdk.is_initialized():
        sentry_sdk.get_client().close(timeout=FLUSH_TIMEOUT)
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=environment,
        release=release,
        # 0 turns performance tracing off entirely (None), instead of creating unsampled transactions.
        traces_sample_rate=rate or None,
        # What integrations may collect (this supersedes `send_default_pii`, which stays off): no user
        # fields (IP, e-mail) beyond the id we set ourselves, no cookies, bodies, query strings, SQL
        # parameters or local variables (they hold passwords, addresses and message bodies).
        data_collection={
            "user_info": False,
            "cookies": {"mode": "off"},
            "http_headers": {"request": {"mode": "allowlist", "terms": sorted(_SAFE_HEADERS)}},
            "http_bodies": [],
            "url_query_params": {"mode": "off"},
            "database_query_data": False,
            "queues": False,
            "gen_ai": {"inputs": False, "outputs": False},
            "stack_frame_variables": False,
        },
        max_request_body_size="never",
        # Only what we chose: framework integrations and log breadcrumbs. Logged errors are not turned
        # into events; exceptions are reported as exceptions (report_exception, the 5xx handlers).
        auto_enabling_integrations=False,
        integrations=[
            StarletteIntegration(transaction_style="url"),
            FastApiIntegration(transaction_style="url"),
            LoggingIntegration(level=logging.INFO, event_level=None),
        ],
        before_send=before_send,
        before_send_transaction=before_send_transaction,
        shutdown_timeout=FLUSH_TIMEOUT,
    )
    _active_options = options
    log.info("sentry.enabled", environment=environment, release=release, traces_sample_rate=rate)
    return True


async def flush_sentry() -> None:
    """Wait (bounded) until queued events are sent; for `app.state.flush_on_shutdown`."""
    if sentry_sdk.is_initialized():
        await asyncio.to_thread(sentry_sdk.flush, FLUSH_TIMEOUT)


def shutdown_sentry() -> None:
    """Send what is queued and switch Sentry off in this process (tests; a process exits otherwise)."""
    global _active_options
    if sentry_sdk.is_initialized():
        sentry_sdk.get_client().close(timeout=FLUSH_TIMEOUT)
    sentry_sdk.get_global_scope().set_client(None)
    _active_options = None


def set_user_id(user_id: object) -> None:
    """Attach the authenticated user's id (nothing else about them) to this request's events."""
    if sentry_sdk.is_initialized():
        sentry_sdk.set_user({"id": str(user_id)})


def report_handled(exc: BaseException) -> None:
    """Report a failure Kindred answered with a designed 5xx outside the exception handlers (a route
    timeout); a no-op without SENTRY_DSN. Marked handled: the client got the contract's error."""
    client = sentry_sdk.get_client()
    if client.is_active():
        event, hint = event_from_exception(exc, client_options=client.options, mechanism=_HANDLED)
        sentry_sdk.capture_event(event, hint=hint)


def report_exception(exc: BaseException) -> None:
    """Report an exception nothing else handled (the last-resort 500); a no-op without SENTRY_DSN.
    Marked unhandled: the client got a generic 500, not a designed answer."""
    client = sentry_sdk.get_client()
    if client.is_active():
        event, hint = event_from_exception(exc, client_options=client.options, mechanism=_UNHANDLED)
        sentry_sdk.capture_event(event, hint=hint)
