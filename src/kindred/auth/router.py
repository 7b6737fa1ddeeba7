"""`/api/v1/auth`: thin HTTP layer over AuthService."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response, status

from kindred.auth.dependencies import AuthServiceDep, CurrentUser, cookie_names
from kindred.auth.schemas import (
    Accepted,
    ChangeEmailIn,
    ChangePasswordIn,
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
from kindred.middleware.rate_limit import limit_address

router = APIRouter(prefix="/auth", tags=["auth"])

ACCEPTED = Accepted(status="accepted")


def _set_cookies(request: Request, response: Response, signin: SignIn) -> None:
    settings = request.app.state.settings
    access_name, refresh_name = cookie_names(request)
    common = {"httponly": True, "secure": settings.cookie_secure, "samesite": "lax", "path": "/"}
    response.set_cookie(access_name, signin.access_token, max_age=signin.expires_in, **common)
    response.set_cookie(
        refresh_name,
        signin.refresh_token,
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        **common,
    )


def _clear_cookies(request: Request, response: Response) -> None:
    secure = request.app.state.settings.cookie_secure
    for name in cookie_names(request):
        response.delete_cookie(name, path="/", secure=secure, httponly=True, samesite="lax")


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
        token = request.cookies.get(cookie_names(request)[1])
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
