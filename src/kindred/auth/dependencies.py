"""`CurrentUser`: a verified access token whose session is live and whose account may act, right now."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kindred.auth.cookies import cookie_names as _cookie_names
from kindred.auth.service import AuthService, Principal, RequestMeta
from kindred.auth.session_state import resolve
from kindred.kit.deps import OutboxDep, SessionDep, request_id
from kindred.kit.errors import Forbidden, NotAuthenticated
from kindred.observability.sentry import set_user_id

bearer = HTTPBearer(auto_error=False, description="RS256 access token from login, refresh or verify-email.")


def cookie_names(request: Request) -> tuple[str, str]:
    """(access, refresh) cookie names for this app (auth/cookies.py)."""
    access, refresh, _ = _cookie_names(request.app.state.settings)
    return access, refresh


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    via_cookie = False
    if credentials is not None:
        token = credentials.credentials
    else:
        token = request.cookies.get(cookie_names(request)[0], "")
        via_cookie = True
        if not token:
            raise NotAuthenticated()
    state = request.app.state
    ctx = request.scope.get("kindred")
    verified = ctx.get("verified") if ctx is not None else None
    if verified is not None and verified[0] == token:
        # The rate limiter verified this very token and resolved its session moments ago.
        _, claims, session_state = verified
    else:
        claims = state.signer.verify(token)
        # On a cache miss the state is read in its own short unit of work, so routes that need nothing
        # else from the database (GET /me) never open one.
        session_state = await resolve(
            state.db, state.cache, claims.session_id, claims.user_id, state.settings.session_cache_ttl
        )
    if ctx is not None:
        ctx["user_id"] = str(claims.user_id)
    set_user_id(claims.user_id)  # error reports carry who hit the error: the id, nothing else
    return Principal(user_id=claims.user_id, session_id=claims.session_id, state=session_state, via_cookie=via_cookie)


CurrentUser = Annotated[Principal, Depends(current_principal)]


def require_role(*roles: str):
    async def dependency(principal: CurrentUser) -> Principal:
        if principal.role not in roles:
            raise Forbidden()
        return principal

    return Depends(dependency)


StaffUser = Annotated[Principal, require_role("moderator", "admin")]
AdminUser = Annotated[Principal, require_role("admin")]


def request_meta(request: Request) -> RequestMeta:
    return RequestMeta(request_id=request_id(request), user_agent=request.headers.get("user-agent"))


async def get_auth_service(request: Request, session: SessionDep, outbox: OutboxDep) -> AuthService:
    state = request.app.state
    return AuthService(
        session,
        settings=state.settings,
        signer=state.signer,
        passwords=state.passwords,
        cache=state.cache,
        outbox=outbox,
        meta=request_meta(request),
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
