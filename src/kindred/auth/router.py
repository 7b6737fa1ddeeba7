"""`/api/v1/auth`: thin HTTP layer over AuthService."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response, status

from kindred.auth.cookies import CSRF_COOKIE, cookie_names
from kindred.auth.dependencies import AuthServiceDep, CurrentUser
from kindred.auth.schemas import (
    Accepted,
    ChangeEmailIn,
    ChangePasswordIn,
    CsrfOut,
    EmailIn,
    LoginIn,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    SessionRead,
    TokenIn,
    TokenPair,
    UserEnvelope,
)
from kindred.auth.service import SignIn
from kindred.kit.errors import NotAuthenticated
from kindred.kit.pagination import CursorParam, LimitParam, Page
from kindred.middleware.csrf import binding as csrf_binding
from kindred.middleware.csrf import check as csrf_check
from kindred.middleware.csrf import new_presession_id
from kindred.middleware.rate_limit import limit_address

router = APIRouter(prefix="/auth", tags=["auth"])

ACCEPTED = Accepted(status="accepted")
PRESESSION_LIFETIME = 24 * 3600


def _cookie_options(request: Request, *, readable: bool = False) -> dict[str, Any]:
    settings = request.app.state.settings
    return {"httponly": not readable, "secure": settings.cookie_secure, "samesite": "lax", "path": "/"}


def _set_cookies(request: Request, response: Response, signin: SignIn) -> None:
    """The session's cookies, and a fresh CSRF token bound to it (rotated at every sign-in)."""
    state = request.app.state
    lifetime = int(state.settings.refresh_token_ttl.total_seconds())
    access_name, refresh_name, _ = cookie_names(state.settings)
    # The access cookie lives as long as the session: the JWT inside expires after 15 minutes and is
    # then refused, but its signed session id still binds the CSRF token of a cookie-mode refresh.
    response.set_cookie(access_name, signin.access_token, max_age=lifetime, **_cookie_options(request))
    response.set_cookie(refresh_name, signin.refresh_token, max_age=lifetime, **_cookie_options(request))
    token = state.csrf_tokens.issue(f"s:{state.signer.session_of(signin.access_token)}")
    response.set_cookie(CSRF_COOKIE, token, max_age=lifetime, **_cookie_options(request, readable=True))


def _clear_cookies(request: Request, response: Response) -> None:
    access_name, refresh_name, _ = cookie_names(request.app.state.settings)
    for name in (access_name, refresh_name):
        response.delete_cookie(name, **_cookie_options(request))
    response.delete_cookie(CSRF_COOKIE, **_cookie_options(request, readable=True))


@router.get("/csrf", response_model=CsrfOut)
async def csrf(request: Request, response: Response) -> CsrfOut:
    """A CSRF token for cookie mode, with or without a session: bound to the session when signed in, else
    to a pre-session id (set here as an httpOnly cookie) so the sign-in request itself is protected."""
    state = request.app.state
    bound_to = csrf_binding(request.cookies, state.settings, state.signer)
    if bound_to is None:
        presession = new_presession_id()
        _, _, presession_name = cookie_names(state.settings)
        response.set_cookie(presession_name, presession, max_age=PRESESSION_LIFETIME, **_cookie_options(request))
        bound_to = f"p:{presession}"
    token = state.csrf_tokens.issue(bound_to)
    lifetime = int(state.settings.refresh_token_ttl.total_seconds())
    response.set_cookie(CSRF_COOKIE, token, max_age=lifetime, **_cookie_options(request, readable=True))
    return CsrfOut(csrf_token=token)


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def register(body: RegisterIn, service: AuthServiceDep) -> Accepted:
    await service.register(
        email=body.email,
        password=body.password,
        birthdate=body.birthdate,
        display_name=body.display_name,
        accepted_terms_version=body.accepted_terms_version,
    )
    return Accepted(status="verification_sent")


@router.post("/verify-email", response_model=TokenPair)
async def verify_email(body: TokenIn, service: AuthServiceDep) -> TokenPair:
    return (await service.verify_email(body.token)).pair()


@router.post("/resend-verification", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def resend_verification(body: EmailIn, request: Request, service: AuthServiceDep) -> Accepted:
    await limit_address(request, "email_address", body.email)
    await service.resend_verification(body.email)
    return ACCEPTED


@router.post("/login", response_model=TokenPair | UserEnvelope)
async def login(
    body: LoginIn, request: Request, response: Response, service: AuthServiceDep
) -> TokenPair | UserEnvelope:
    if body.session == "cookie":  # login CSRF: the token must be bound to this browser's pre-session
        state = request.app.state
        csrf_check(
            request.cookies, request.headers.get("x-csrf-token"), state.settings, state.signer, state.csrf_tokens
        )
    await limit_address(request, "login_account", body.email)
    signin = await service.login(email=body.email, password=body.password)
    if body.session == "cookie":
        _set_cookies(request, response, signin)
        return UserEnvelope(user=signin.user)
    return signin.pair()


@router.post("/refresh", response_model=TokenPair | UserEnvelope)
async def refresh(
    request: Request, response: Response, service: AuthServiceDep, body: RefreshIn | None = None
) -> TokenPair | UserEnvelope:
    token = body.refresh_token if body else None
    from_cookie = token is None
    if from_cookie:
        token = request.cookies.get(cookie_names(request.app.state.settings)[1])
    if not token:
        raise NotAuthenticated("A refresh token is required.")
    signin = await service.refresh(token)
    if from_cookie:
        _set_cookies(request, response, signin)
        return UserEnvelope(user=signin.user)
    return signin.pair()


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(principal: CurrentUser, request: Request, response: Response, service: AuthServiceDep) -> None:
    await service.logout(principal)
    _clear_cookies(request, response)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT)
async def logout_all(principal: CurrentUser, request: Request, response: Response, service: AuthServiceDep) -> None:
    await service.logout_all(principal)
    _clear_cookies(request, response)


@router.get("/sessions", response_model=Page[SessionRead])
async def list_sessions(
    principal: CurrentUser, service: AuthServiceDep, limit: LimitParam = 20, cursor: CursorParam = None
) -> Page[SessionRead]:
    return await service.list_sessions(principal, limit=limit, cursor=cursor)


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(session_id: uuid.UUID, principal: CurrentUser, service: AuthServiceDep) -> None:
    await service.revoke_own_session(principal, session_id)


@router.post("/forgot-password", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def forgot_password(body: EmailIn, request: Request, service: AuthServiceDep) -> Accepted:
    await limit_address(request, "email_address", body.email)
    await service.forgot_password(body.email)
    return ACCEPTED


@router.post("/reset-password", status_code=status.HTTP_204_NO_CONTENT)
async def reset_password(body: ResetPasswordIn, service: AuthServiceDep) -> None:
    await service.reset_password(body.token, body.new_password)


@router.post("/change-password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(body: ChangePasswordIn, principal: CurrentUser, service: AuthServiceDep) -> None:
    await service.change_password(principal, body.current_password, body.new_password)


@router.post("/change-email", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def change_email(body: ChangeEmailIn, principal: CurrentUser, service: AuthServiceDep) -> Accepted:
    await service.change_email(principal, body.password, body.new_email)
    return ACCEPTED


@router.post("/confirm-email-change", response_model=UserEnvelope)
async def confirm_email_change(body: TokenIn, service: AuthServiceDep) -> UserEnvelope:
    return UserEnvelope(user=await service.confirm_email_change(body.token))
