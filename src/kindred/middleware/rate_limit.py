"""Rate limits on `/api`: a general budget per user (by tier) or per client IP, and stricter route limits.

Who is counted: the user id from a *verified* access token (Bearer or the access cookie) of a live
session, else the client IP. The client IP is uvicorn's: `X-Forwarded-For` is believed only from
`TRUSTED_PROXIES`. A bad, expired or revoked token counts against the IP (the route answers 401 anyway).

General budgets per 15 minutes (`RATE_LIMIT_*`): anonymous 100 per IP; free 100, premium 500,
moderator/admin 1000 per user. Route limits on top: login 10/min per IP, register 5 per 30 min per IP,
messages 30/min per user, photo uploads 20/hour per user — and, applied by the auth routes through
`limit_address` because the key is in the body: login 25/hour per account, forgot-password and
resend-verification 5 per 30 min per address (a keyed hash of it: no address is stored in Redis).

Exempt: everything outside `/api` (health, metrics, JWKS, media) and the billing webhook. WebSockets have
their own frame limits. Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining` and
`RateLimit-Reset` (the limit closest to running out); a refusal is 429 `rate_limited` with `Retry-After`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from limits import RateLimitItem
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.auth.cookies import cookie_names
from kindred.auth.session_state import SessionState, resolve
from kindred.kit.errors import AppError
from kindred.kit.handlers import send_error
from kindred.kit.ratelimit import Decision, Limiter, rate
from kindred.kit.security import keyed_hash
from kindred.observability.logging import get_logger
from kindred.settings import Settings

log = get_logger(__name__)

API_PREFIX = "/api/"
EXEMPT_PATHS = frozenset({"/api/v1/billing/webhook"})
STAFF_ROLES = frozenset({"moderator", "admin"})


class RateLimited(AppError):
    status, code, message = 429, "rate_limited", "Too many requests; try again later."

    def __init__(self, decision: Decision) -> None:
        headers = {k.decode(): v.decode() for k, v in decision.headers}
        headers["Retry-After"] = str(max(decision.reset_after, 1))
        super().__init__(details={"retry_after": max(decision.reset_after, 1)}, headers=headers)


@dataclass(frozen=True)
class RouteLimit:
    name: str
    method: str
    path: re.Pattern[str]
    item: RateLimitItem
    by: Literal["ip", "user"]


@dataclass(frozen=True)
class Caller:
    key: tuple[str, str]  # ("user", id) or ("ip", address)
    state: SessionState | None


class RateLimitPolicy:
    """Which budgets apply to whom (from settings), shared by the middleware and the auth routes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.anonymous = rate(settings.rate_limit_anonymous)
        self.by_tier = {"free": rate(settings.rate_limit_free), "premium": rate(settings.rate_limit_premium)}
        self.staff = rate(settings.rate_limit_staff)
        self.login_account = rate(settings.rate_limit_login_account)
        self.email_address = rate(settings.rate_limit_email_address)
        self.routes = (
            RouteLimit("login_ip", "POST", re.compile(r"/api/v1/auth/login"), rate(settings.rate_limit_login_ip), "ip"),
            RouteLimit(
                "register_ip", "POST", re.compile(r"/api/v1/auth/register"), rate(settings.rate_limit_register_ip), "ip"
            ),
            RouteLimit(
                "messages",
                "POST",
                re.compile(r"/api/v1/matches/[^/]+/messages"),
                rate(settings.rate_limit_messages),
                "user",
            ),
            RouteLimit("uploads", "POST", re.compile(r"/api/v1/me/photos"), rate(settings.rate_limit_uploads), "user"),
        )

    def general(self, state: SessionState | None) -> RateLimitItem:
        if state is None:
            return self.anonymous
        if state.role in STAFF_ROLES:
            return self.staff
        return self.by_tier.get(state.tier, self.by_tier["free"])


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API_PREFIX) or path in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        limiter: Limiter = state.limiter
        policy: RateLimitPolicy = state.rate_limits
        caller = await _caller(scope, state)
        ip = ("ip", client_ip(scope))
        decisions = [await limiter.hit(policy.general(caller.state), "api", *caller.key)]
        if decisions[0].allowed:
            for route in policy.routes:
                if route.method == scope["method"] and route.path.fullmatch(path):
                    key = ip if route.by == "ip" or caller.state is None else caller.key
                    decisions.append(await limiter.hit(route.item, route.name, *key))
                    break
        refused = next((d for d in decisions if not d.allowed), None)
        if refused is not None:
            log.info("ratelimit.refused", path_template=_template(path), by=caller.key[0])
            await _send_refusal(scope, send, refused)
            return
        closest = min(decisions, key=lambda d: d.remaining / max(d.limit, 1))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                # A route that applied its own limit (limit_address) already reported the one that refused.
                if not any(name.lower().startswith(b"ratelimit-") for name, _ in headers):
                    message = {**message, "headers": [*headers, *closest.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _caller(scope: Scope, state: Any) -> Caller:
    """The verified user behind the request, or its client IP. Shares what it verified with the route."""
    token = _token(scope, state.settings)
    if token:
        try:
            claims = state.signer.verify(token)
            session_state = await resolve(
                state.db, state.cache, claims.session_id, claims.user_id, state.settings.session_cache_ttl
            )
        except AppError:
            pass  # invalid, expired or revoked: counted by IP; the route answers 401
        else:
            ctx = scope.get("kindred")
            if ctx is not None:
                ctx["verified"] = (token, claims, session_state)
            return Caller(key=("user", str(claims.user_id)), state=session_state)
    return Caller(key=("ip", client_ip(scope)), state=None)


def _token(scope: Scope, settings: Settings) -> str | None:
    cookie_name = cookie_names(settings)[0].encode()
    cookie_header = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None
        if name == b"cookie":
            cookie_header = value
    if cookie_header is None:
        return None
    for part in cookie_header.split(b";"):
        key, _, value = part.strip().partition(b"=")
        if key == cookie_name:
            return value.decode("latin-1") or None
    return None


_UUID_SEGMENT = re.compile(r"/[0-9a-fA-F-]{36}(?=/|$)")


def _template(path: str) -> str:
    """The path with ids replaced: what is logged of a refused request."""
    return _UUID_SEGMENT.sub("/{id}", path)


async def _send_refusal(scope: Scope, send: Send, decision: Decision) -> None:
    retry_after = max(decision.reset_after, 1)
    headers = [(b"retry-after", str(retry_after).encode()), *decision.headers]
    message = "Too many requests; try again later."
    details = {"retry_after": retry_after}
    await send_error(scope, send, 429, "rate_limited", message, details=details, headers=headers)


async def limit_address(request: Request, action: Literal["login_account", "email_address"], email: str) -> None:
    """Count one request for this e-mail address (a keyed hash of it); 429 `rate_limited` when over."""
    state = request.app.state
    policy: RateLimitPolicy = state.rate_limits
    item = policy.login_account if action == "login_account" else policy.email_address
    address = keyed_hash(state.settings.effective_secret_key, email.strip().lower())
    decision = await state.limiter.hit(item, action, address)
    if not decision.allowed:
        log.info("ratelimit.refused", path_template=request.url.path, by="address")
        raise RateLimited(decision)
