"""Request limits: a body-size cap enforced while the body streams in, and per-route timeouts.

Body size: a request body over 1 MiB is answered 413 `payload_too_large` — at once when Content-Length
says so, otherwise as soon as the streamed bytes pass the cap, so an oversized body is never read whole.
Multipart uploads are capped by the route that accepts them (photos: 10 MB, 413 `file_too_large`).

Timeouts: `REQUEST_TIMEOUT` (30 s) by default, 15 s for `/api/v1/auth/*`, 120 s for photo uploads. A
request that runs out of time before its response started gets 503 `timeout` with `Retry-After`; the
work is cancelled, so its transaction rolls back. (Once a response has started it can only be cut off.)
WebSockets are long-lived by design and never timed out here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.kit.errors import RequestTimeout
from kindred.kit.handlers import send_error
from kindred.observability.logging import get_logger
from kindred.observability.sentry import report_handled

log = get_logger(__name__)

MAX_BODY_BYTES = 1024 * 1024
AUTH_TIMEOUT = 15.0
UPLOAD_TIMEOUT = 120.0


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type, length = b"", None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        if content_type.startswith(b"multipart/form-data"):
            await self.app(scope, receive, send)  # the upload route streams and caps its own body
            return
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, send)
            return
        received = 0
        too_large = refused = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            if too_large:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Stop reading here: the app sees the client go away, and whatever it answers to
                    # that is replaced by the 413 below.
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal refused
            if too_large:
                if not refused:
                    refused = True
                    await self._refuse(scope, send)
                return
            await send(message)

        await self.app(scope, counting_receive, guarded_send)
        if too_large and not refused:
            await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        limit = f"{self.max_bytes // 1024} KiB"
        await send_error(scope, send, 413, "payload_too_large", f"The request body is larger than {limit}.")


def route_timeout(default: float) -> Callable[[Scope], float]:
    def timeout_for(scope: Scope) -> float:
        path = scope["path"]
        if path.startswith("/api/v1/auth/"):
            return AUTH_TIMEOUT
        if path == "/api/v1/me/photos" and scope["method"] == "POST":
            return UPLOAD_TIMEOUT
        return default

    return timeout_for


class TimeoutMiddleware:
    def __init__(self, app: ASGIApp, *, timeout_for: Callable[[Scope], float]) -> None:
        self.app = app
        self.timeout_for = timeout_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        seconds = self.timeout_for(scope)
        try:
            async with asyncio.timeout(seconds):
                await self.app(scope, receive, tracking_send)
        except TimeoutError:
            log.warning("http.timeout", path_template=_template(scope), seconds=seconds)
            if started:
                raise  # the response is under way: all we can do is cut it off
            # Sentry, when SENTRY_DSN is set: a 5xx the exception handlers never saw (grouped by route).
            report_handled(RequestTimeout())
            retry = [(b"retry-after", b"1")]
            await send_error(scope, send, 503, RequestTimeout.code, RequestTimeout.message, headers=retry)


def _template(scope: Scope) -> str:
    route = scope.get("route")
    return str(getattr(route, "path", "<unmatched>"))
