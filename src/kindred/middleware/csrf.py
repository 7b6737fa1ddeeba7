"""CSRF for cookie-authenticated requests: a signed double-submit token bound to the session (OWASP).

A token is `<random>.<HMAC-SHA256(SECRET_KEY, binding | random)>`. The *binding* is the auth session id
(read from the access cookie's signed JWT, expired or not) once signed in, else a random pre-session id
kept in an httpOnly cookie. `GET /api/v1/auth/csrf` issues a token for the caller's current binding, as
the readable `kindred_csrf` cookie and in the body; the client echoes it in `X-CSRF-Token`.

An unsafe request (POST, PUT, PATCH, DELETE) under `/api` that carries our auth cookies and no
`Authorization` header must send `X-CSRF-Token` equal to the `kindred_csrf` cookie *and* signed for its
binding, else 403 `csrf_failed`. A token lifted from another session, or planted through a sibling
subdomain's cookie, fails the signature check (the naive double-submit would accept it). A cookie-mode
sign-in checks the token against the pre-session (login CSRF), and signing in rotates it: the new token
is bound to the new session. Bearer requests (mobile apps, servers) carry no ambient credentials and are
exempt, as is the signature-verified billing webhook.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Receive, Scope, Send

from kindred.auth.cookies import CSRF_COOKIE, cookie_names
from kindred.kit.errors import Forbidden
from kindred.kit.handlers import send_error
from kindred.kit.security import TokenSigner
from kindred.observability.logging import get_logger
from kindred.settings import Settings

log = get_logger(__name__)

CSRF_HEADER = b"x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
EXEMPT_PATHS = frozenset({"/api/v1/billing/webhook"})


class CsrfFailed(Forbidden):
    code, message = "csrf_failed", "The CSRF token is missing or does not match this session."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class CsrfTokens:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"kindred-csrf\x00" + secret.encode()).digest()

    def _mac(self, binding: str, nonce: str) -> str:
        return _b64(hmac.new(self._key, f"{binding}|{nonce}".encode(), hashlib.sha256).digest())

    def issue(self, binding: str) -> str:
        nonce = _b64(secrets.token_bytes(18))
        return f"{nonce}.{self._mac(binding, nonce)}"

    def valid(self, token: str, binding: str) -> bool:
        nonce, _, mac = token.partition(".")
        if not nonce or not mac:
            return False
        return hmac.compare_digest(mac, self._mac(binding, nonce))


def new_presession_id() -> str:
    return _b64(secrets.token_bytes(24))


def binding(cookies: Mapping[str, str], settings: Settings, signer: TokenSigner) -> str | None:
    """What a token must be bound to for this caller: `s:<session id>` signed in, else `p:<pre-session>`."""
    access, _, presession = cookie_names(settings)
    token = cookies.get(access)
    if token:
        session_id = signer.session_of(token)
        if session_id is not None:
            return f"s:{session_id}"
    if cookies.get(presession):
        return f"p:{cookies[presession]}"
    return None


def check(
    cookies: Mapping[str, str], header: str | None, settings: Settings, signer: TokenSigner, tokens: CsrfTokens
) -> None:
    """Raise CsrfFailed unless `header` is the `kindred_csrf` cookie and signed for the caller's binding."""
    cookie = cookies.get(CSRF_COOKIE)
    bound_to = binding(cookies, settings, signer)
    if not header or not cookie or bound_to is None:
        raise CsrfFailed()
    if not hmac.compare_digest(header.encode(), cookie.encode()) or not tokens.valid(header, bound_to):
        raise CsrfFailed()


def _cookies(scope: Scope) -> dict[str, str]:
    jar: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name == b"cookie":
            jar.update(cookie_parser(value.decode("latin-1")))  # Starlette's parser, as Request.cookies uses
    return jar


class CsrfMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in UNSAFE_METHODS
            or not scope["path"].startswith("/api/")
            or scope["path"] in EXEMPT_PATHS
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        settings: Settings = state.settings
        cookies = _cookies(scope)
        access, refresh, _ = cookie_names(settings)
        if access not in cookies and refresh not in cookies:
            await self.app(scope, receive, send)  # no ambient credentials: nothing to forge
            return
        header = next((v.decode("latin-1") for k, v in scope["headers"] if k == CSRF_HEADER), None)
        try:
            check(cookies, header, settings, state.signer, state.csrf_tokens)
        except CsrfFailed as exc:
            log.info("csrf.failed", method=scope["method"], has_header=header is not None)
            await _refuse(scope, send, exc)
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, exc: CsrfFailed) -> None:
    await send_error(scope, send, exc.status, exc.code, exc.detail_message)
