"""Security headers on every response, and the HTTPS policy (production): pure ASGI middleware.

Headers: HSTS on HTTPS (1 year, includeSubDomains, preload), a strict CSP on API responses and the narrow
one `/docs` needs (its one inline script allowed by hash, everything else from our own origin),
`X-Frame-Options: DENY`, `nosniff`, `Referrer-Policy`, `Permissions-Policy`. uvicorn runs with
`server_header=False`, so no server version leaves the process.

HTTPS policy, production only: a plain-HTTP GET or HEAD is redirected 301 to the same URL on https; any
other method is refused with 403 `https_required` (a redirect would make clients resend credentials
over plain HTTP first); probes (`/health`, `/health/detailed`, `/live`, `/ready`, `/metrics`) are
answered over plain HTTP, as load balancers and Kubernetes call them. The scheme is uvicorn's: it
believes `X-Forwarded-Proto` only from `TRUSTED_PROXIES` (`forwarded_allow_ips`).
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.kit.handlers import send_error

PROBE_PATHS = frozenset({"/health", "/health/detailed", "/live", "/ready", "/metrics"})
DOCS_PATHS = frozenset({"/docs"})

HSTS = b"max-age=31536000; includeSubDomains; preload"
API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
PERMISSIONS_POLICY = (
    b"accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), "
    b"payment=(), usb=(), interest-cohort=()"
)
_COMMON = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"strict-origin-when-cross-origin"),
    (b"permissions-policy", PERMISSIONS_POLICY),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_SET_BY_US = {name for name, _ in _COMMON} | {b"content-security-policy", b"strict-transport-security", b"server"}
_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_SANE_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")


def docs_csp(html: str) -> bytes:
    """The CSP for the Swagger UI page: its inline scripts by hash, assets from our own origin only."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in _SCRIPT.findall(html)
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ).encode()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (errors and redirects included)."""

    def __init__(self, app: ASGIApp, *, docs_policy: bytes | None = None) -> None:
        self.app = app
        self.docs_policy = docs_policy or API_CSP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = self.docs_policy if scope["path"] in DOCS_PATHS else API_CSP
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _SET_BY_US]
                headers += _COMMON
                headers.append((b"content-security-policy", csp))
                if https:
                    headers.append((b"strict-transport-security", HSTS))
                if getattr(scope["app"].state, "draining", False):
                    # Shutting down: the client opens its next request on a new connection, which the
                    # load balancer sends elsewhere, instead of racing our close on this one.
                    headers = [(k, v) for k, v in headers if k.lower() != b"connection"]
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class HttpsPolicyMiddleware:
    """Production: redirect plain-HTTP GET/HEAD to https, refuse other plain-HTTP requests (403)."""

    def __init__(self, app: ASGIApp, *, enabled: bool, exempt: Iterable[str] = PROBE_PATHS) -> None:
        self.app = app
        self.enabled = enabled
        self.exempt = frozenset(exempt)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] not in ("http", "websocket") or scope.get("scheme") in ("https", "wss"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":  # ws:// in production: refused at the handshake (HTTP 403)
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        host = (_header(scope, b"host") or b"").decode("latin-1")
        if scope["method"] in ("GET", "HEAD") and _SANE_HOST.match(host):
            raw_path = scope.get("raw_path") or (scope.get("root_path", "") + scope["path"]).encode()
            target = f"https://{host}{raw_path.decode('latin-1')}"
            if scope.get("query_string"):
                target += "?" + scope["query_string"].decode("latin-1")
            await send(
                {
                    "type": "http.response.start",
                    "status": 301,
                    "headers": [(b"location", target.encode("latin-1")), (b"content-length", b"0")],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        await _refuse(scope, send)


async def _refuse(scope: Scope, send: Send) -> None:
    await send_error(scope, send, 403, "https_required", "Use HTTPS.")
