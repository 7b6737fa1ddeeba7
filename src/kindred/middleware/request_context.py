"""Request id and access log: the outermost middleware, pure ASGI (no BaseHTTPMiddleware overhead)."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.observability.logging import get_logger

log = get_logger("kindred.access")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_QUIET_PATHS = frozenset({"/live", "/ready", "/health", "/metrics"})


class RequestContextMiddleware:
    """Echo a sane `X-Request-ID` (or make one), bind it to every log line, and log one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

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
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
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
