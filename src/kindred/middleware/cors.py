"""CORS from one allow-list (kindred.realtime.origins.OriginPolicy, shared with the WebSocket handshake).

Starlette's CORSMiddleware does the protocol; we give it our origin rule and log what it refuses.
Credentials are allowed, so the allowed origin is always echoed explicitly, never `*` (and `*` is not a
valid CORS_ORIGIN in production: settings refuse it). Preflights are cached for 24 hours. Requests without
an `Origin` header (health probes, metrics scrapers, native apps, server-to-server calls) pass untouched.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from kindred.observability.logging import get_logger
from kindred.realtime.origins import OriginPolicy, normalise
from kindred.settings import Settings

log = get_logger(__name__)

ALLOWED_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ALLOWED_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "X-CSRF-Token",
    "X-Request-ID",
)
EXPOSED_HEADERS = (
    "X-Request-ID",
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Idempotent-Replayed",
)
PREFLIGHT_MAX_AGE = 24 * 3600


class KindredCORSMiddleware(CORSMiddleware):
    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        super().__init__(
            app,
            allow_origins=(),  # every decision goes through is_allowed_origin below
            allow_methods=ALLOWED_METHODS,
            allow_headers=ALLOWED_HEADERS,
            allow_credentials=True,
            expose_headers=EXPOSED_HEADERS,
            max_age=PREFLIGHT_MAX_AGE,
        )
        self.policy = OriginPolicy(settings)

    def is_allowed_origin(self, origin: str) -> bool:
        if self.policy.allows(origin):
            return True
        # Origins are sites, not people: safe to log (normalised, so no path or credentials leak in).
        log.info("cors.origin_rejected", origin=normalise(origin) or "<not an origin>")
        return False
