"""Request id and access log: the outermost middleware, pure ASGI (no BaseHTTPMiddleware overhead)."""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.observability.logging import get_logger
from kindred.observability.sentry import report_exception

log = get_logger("kindred.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_QUIET_PATHS = frozenset({"/live", "/ready", "/health", "/metrics"})


class RouteTemplates:
    """The full path template (`/api/v1/users/{id}`) of a request's matched route, never the raw path.

    Read after the app ran (the router sets `scope["route"]`); "<unmatched>" when no route matched.
    Resolved once per route object, then a dict lookup. Shared by the access log and the metrics.
    """

    def __init__(self) -> None:
        self._templates: dict[int, str] = {}

    def __call__(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return "<unmatched>"
        key = id(route)
        cached = self._templates.get(key)
        if cached is None:
            path = str(getattr(route, "path", "<unknown>"))
            cached = self._templates[key] = _full_template(scope, path) or path
        return cached


class RequestContextMiddleware:
    """Echo a sane `X-Request-ID` (or make one), bind it to every log line, and log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _SANE_ID.match(incoming) else uuid.uuid4().hex
        ctx: dict[str, Any] = {"request_id": request_id, "user_id": None}
        scope["kindred"] = ctx
        header = (b"x-request-id", request_id.encode())
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # Last line of defence: the contract's shape, a request id, never a stack trace.
            log.error("http.unhandled_error", error=type(exc).__name__, exc_info=exc)
            report_exception(exc)  # Sentry, when SENTRY_DSN is set
            if scope["type"] != "http" or response_started:
                raise
            status = 500
            body = json.dumps(
                {
                    "error": {"code": "internal_error", "message": "Something went wrong on our side.", "details": {}},
                    "request_id": request_id,
                }
            ).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        header,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            template = self._route_template(scope)
            if scope["type"] == "http" and not (scope["path"] in _QUIET_PATHS and status < 400):
                log.info(
                    "http.request",
                    method=scope.get("method"),
                    route=template,
                    status=status,
                    duration_ms=round((time.perf_counter() - started) * 1000, 2),
                    user_id=ctx.get("user_id"),
                )
            structlog.contextvars.unbind_contextvars("request_id")


def _full_template(scope: Scope, route_path: str) -> str | None:
    """Included routers nest, so a route knows only its own suffix; find the OpenAPI path it belongs to."""
    app = scope.get("app")
    if app is None or not hasattr(app, "openapi"):
        return None
    for template in app.openapi().get("paths", {}):
        if template.endswith(route_path) and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), scope["path"]):
            return template
    return None
