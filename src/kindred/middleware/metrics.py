"""HTTP metrics: pure ASGI, just inside the request-id middleware, so every answer (429, 413, 503...) counts."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.middleware.request_context import RouteTemplates
from kindred.observability.metrics import Metrics

# Anything else (a client can send any token as a method) is labelled "other": labels stay bounded.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MetricsMiddleware:
    """Count each HTTP request by route template, method and status; time it; track in-flight requests
    and the signed-in users served (for the active-users gauge). WebSockets pass through uncounted."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._route_template = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.metrics
        status = 500  # what the request-id middleware answers when the app raises before responding

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        metrics.in_flight += 1
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            metrics.in_flight -= 1
            method = scope["method"] if scope["method"] in _METHODS else "other"
            metrics.request_finished(self._route_template(scope), method, status, elapsed)
            ctx = scope.get("kindred")
            user_id = ctx.get("user_id") if ctx is not None else None
            if user_id:  # set only once a token was verified (auth/dependencies.py)
                metrics.active_users.seen(user_id)
