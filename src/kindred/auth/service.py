"""Account rules: registration, verification, sign-in, token rotation, sessions, password and email changes."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth import exceptions as exc
from kindred.auth import session_state
from kindred.auth.repository import AccountRepository
from kindred.auth.schemas import SessionRead, TokenPair, UserRead
from kindred.auth.session_state import SessionState
from kindred.kit import clock
from kindred.kit.cache import Cache
from kindred.kit.db import after_commit
from kindred.kit.email import mask_email
from kindred.kit.errors import (
    MalformedRequest,
    NotAuthenticated,
    NotFound,
    SessionRevoked,
    TokenExpired,
    TokenInvalid,
    ValidationFailed,
)
from kindred.kit.outbox import Outbox
from kindred.kit.pagination import Page, decode_cursor, encode_cursor
from kindred.kit.security import Passwords, TokenSigner, hash_token, keyed_hash, new_token
from kindred.models import AccountStatus, AuthSession, EmailToken, RefreshToken, TokenPurpose, User
from kindred.observability import audit
from kindred.observability.metrics import count_after_commit
from kindred.settings import Settings

MIN_AGE = 18
MIN_PASSWORD_LENGTH = 10
VERIFY_TTL = timedelta(hours=24)
RESET_TTL = timedelta(minutes=30)
CHANGE_EMAIL_TTL = timedelta(hours=24)


@lru_cache(maxsize=1)
def _common_passwords() -> frozenset[str]:
    # zxcvbn ships the 30k most common passwords from real breaches.
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(FREQUENCY_LISTS["passwords"])


def check_password_strength(password: str, *, email: str | None = None) -> None:
    lowered = password.lower()
    if len(password) < MIN_PASSWORD_LENGTH or lowered in _common_passwords():
        raise exc.WeakPassword()
    if email and lowered in {email.lower(), email.split("@", 1)[0].lower()}:
        raise exc.WeakPassword()
    if len(set(password)) < 3:
        raise exc.WeakPassword()


def age_on(birthdate: date, today: date) -> int:
    return today.year - birthdate.year - ((today.month, today.day) < (birthdate.month, birthdate.day))


@dataclass(frozen=True)
class RequestMeta:
    request_id: str | None
    user_agent: str | None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller, as every route sees it. Role and tier come from the database (cached)."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    state: SessionState
    via_cookie: bool = False

    @property
    def role(self) -> str:
        return self.state.role

    @property
    def tier(self) -> str:
        return self.state.tier

    @property
    def is_staff(self) -> bool:
        return self.role in {"moderator", "admin"}


@dataclass(frozen=True)
class SignIn:
    user: UserRead
    access_token: str
    refresh_token: str
    expires_in: int

    def pair(self) -> TokenPair:
        return TokenPair(
            user=self.user,
            access_token=self.access_token,
            refresh_token=self.refresh_token,
            expires_in=self.expires_in,
        )


class AuthService:
    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        signer: TokenSigner,
        passwords: Passwords,
        cache: Cache,
        outbox: Outbox | None,
        meta: RequestMeta,
    ) -> None:
        self.repo = AccountRepository(session)
        self.session = session
        self.settings = settings
        self.signer = signer
        self.passwords = passwords
        self.cache = cache
        self.outbox = outbox
        self.meta = meta

    # ------------------------------------------------------------------ helpers
    def _audit(
        self, action: str, *, actor_id: uuid.UUID | None, target_id: uuid.UUID | None = None, reason: str | None = None
    ) -> None:
        audit.record(
            self.session,
            action,
            actor_id=actor_id,
            target_type="user" if target_id or actor_id else None,
            target_id=target_id or actor_id,
            reason=reason,
            request_id=self.meta.request_id,
        )

    def _mail(self, to: str, template: str, **context: object) -> None:
        if self.outbox is not None:
            self.outbox.add(to, template, **context)

    def _link(self, path: str, token: str) -> str:
        return f"{self.settings.frontend_url}/{path}?token={token}"

    async def _user_read(self, user: User, display_name: str | None = None) -> UserRead:
        return UserRead(
            id=user.id,
            email=user.email,
            display_name=display_name if display_name is not None else await self.repo.display_name(user.id),
            role=user.role,
            tier=user.tier,
            email_verified=user.email_verified_at is not None,
            created_at=user.created_at,
        )

    async def _issue_email_token(
        self, user: User, purpose: TokenPurpose, ttl: timedelta, new_email: str | None = None
    ) -> str:
        now = clock.now()
        await self.repo.expire_email_tokens(user.id, purpose.value, now)
        token = new_token()
        await self.repo.add_email_token(
            EmailToken(
                user_id=user.id,
                purpose=purpose.value,
                token_hash=hash_token(token),
                new_email=new_email,
                expires_at=now + ttl,
            )
        )
        return token

    async def _consume_email_token(self, token: str, purpose: TokenPurpose) -> EmailToken:
        row = await self.repo.email_token(hash_token(token), purpose.value)
        now = clock.now()
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise TokenInvalid()
        if not await self.repo.use_email_token(row.id, now):
            raise TokenInvalid()
        return row

    async def _start_session(self, user: User, display_name: str | None = None) -> SignIn:
        now = clock.now()
        auth_session = AuthSession(
            id=uuid.uuid4(),
            user_id=user.id,
            last_used_at=now,
            expires_at=now + self.settings.refresh_token_ttl,
            user_agent=(self.meta.user_agent or "")[:255] or None,
        )
        refresh = new_token()
        self.repo.add_session(
            auth_session,
            RefreshToken(
                session_id=auth_session.id, token_hash=hash_token(refresh), expires_at=auth_session.expires_at
            ),
        )
        access, expires_in = self.signer.issue(user.id, auth_session.id, now)
        return SignIn(
            user=await self._user_read(user, display_name),
            access_token=access,
            refresh_token=refresh,
            expires_in=expires_in,
        )

    async def _forget_sessions(self, user_id: uuid.UUID, session_ids: list[uuid.UUID]) -> None:
        if session_ids:
            cache, ttl = self.cache, self.settings.session_cache_ttl
            after_commit(self.session, lambda: session_state.end_sessions(cache, user_id, session_ids, ttl))

    async def _forget_user(self, user_id: uuid.UUID) -> None:
        await forget_user_sessions(self.session, self.cache, user_id)

    async def _revoke_all(self, user_id: uuid.UUID, reason: str, *, keep: uuid.UUID | None = None) -> None:
        ids = await self.repo.revoke_user_sessions(user_id, clock.now(), reason, except_session=keep)
        await self._forget_sessions(user_id, ids)

    # ------------------------------------------------------------------ registration
    async def register(
        self, *, email: str, password: str, birthdate: date, display_name: str, accepted_terms_version: str
    ) -> None:
        """Same answer and (nearly) same cost whether the address is new, taken or banned."""
        if accepted_terms_version != self.settings.terms_version:
            raise exc.TermsVersionInvalid()
        today = clock.now().date()
        if birthdate > today or age_on(birthdate, today) < MIN_AGE:
            raise exc.Underage()
        if age_on(birthdate, today) > 120:
            raise ValidationFailed("Enter your real birthdate.")
        check_password_strength(password, email=email)
        display_name = display_name.strip()
        if not display_name:
            raise ValidationFailed("Enter a display name.")
        password_hash = await self.passwords.hash(password)  # always, so timing does not tell

        if await self.repo.is_banned_email(keyed_hash(self.settings.effective_secret_key, email)):
            return
        existing = await self.repo.user_by_email(email)
        if existing is not None:
            await self._notify_existing(existing)
            return
        user = User(
            id=uuid.uuid4(),
            email=email,
            password_hash=password_hash,
            birthdate=birthdate,
            terms_version=accepted_terms_version,
        )
        try:
            async with self.session.begin_nested():
                await self.repo.add_user(user, display_name)
        except IntegrityError:
            # Someone registered the same address between our check and insert.
            existing = await self.repo.user_by_email(email)
            if existing is not None:
                await self._notify_existing(existing)
            return
        token = await self._issue_email_token(user, TokenPurpose.verify_email, VERIFY_TTL)
        self._audit("user.registered", actor_id=user.id)
        count_after_commit(self.session, "signup.registered")
        self._mail(email, "verify_email", link=self._link("verify-email", token), display_name=display_name)

    async def _notify_existing(self, user: User) -> None:
        if user.status in {AccountStatus.banned, AccountStatus.deleted}:
            return
        if user.email_verified_at is None:
            token = await self._issue_email_token(user, TokenPurpose.verify_email, VERIFY_TTL)
            self._mail(user.email, "verify_email", link=self._link("verify-email", token))
        else:
            self._mail(
                user.email,
                "signup_attempt",
                reset_link=f"{self.settings.frontend_url}/forgot-password",
                login_link=f"{self.settings.frontend_url}/login",
            )
        self._audit("user.register_existing", actor_id=None, target_id=user.id)

    async def verify_email(self, token: str) -> SignIn:
        row = await self._consume_email_token(token, TokenPurpose.verify_email)
        user = await self.repo.user_by_id(row.user_id)
        if user is None or user.status in {AccountStatus.banned, AccountStatus.deleted}:
            raise TokenInvalid()
        if user.email_verified_at is None:
            user.email_verified_at = clock.now()
            count_after_commit(self.session, "signup.verified")
        self._check_can_sign_in(user)
        self._audit("email.verified", actor_id=user.id)
        signin = await self._start_session(user)
        self._audit("auth.signin", actor_id=user.id, reason="email_verification")
        return signin

    async def resend_verification(self, email: str) -> None:
        user = await self.repo.user_by_email(email)
        if user is None or user.email_verified_at is not None or user.status != AccountStatus.active:
            return
        token = await self._issue_email_token(user, TokenPurpose.verify_email, VERIFY_TTL)
        self._mail(user.email, "verify_email", link=self._link("verify-email", token))

    # ------------------------------------------------------------------ sign-in
    def _check_can_sign_in(self, user: User) -> None:
        suspended = user.status == AccountStatus.suspended
        if suspended and (user.suspended_until is None or user.suspended_until > clock.now()):
            raise exc.AccountSuspended(user.suspended_until)

    async def login(self, *, email: str, password: str) -> SignIn:
        found = await self.repo.user_and_name_by_email(email)
        user, display_name = found if found else (None, None)
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if user is None or not ok or user.status in {AccountStatus.banned, AccountStatus.deleted}:
            self._audit(
                "auth.signin_failed",
                actor_id=None,
                target_id=user.id if user else None,
                reason="unknown_account" if user is None else "bad_credentials",
            )
            raise exc.InvalidCredentials()
        if user.email_verified_at is None:
            raise exc.EmailNotVerified()
        self._check_can_sign_in(user)
        if self.passwords.needs_rehash(user.password_hash):
            user.password_hash = await self.passwords.hash(password)
        user.last_active_at = clock.now()
        signin = await self._start_session(user, display_name)
        self._audit("auth.signin", actor_id=user.id)
        return signin

    async def refresh(self, refresh_token: str) -> SignIn:
        row = await self.repo.refresh_token(hash_token(refresh_token))
        if row is None:
            raise NotAuthenticated("The refresh token is invalid.")
        found = await self.repo.session_with_user(row.session_id)
        if found is None:
            raise NotAuthenticated("The refresh token is invalid.")
        auth_session, user = found
        now = clock.now()
        if auth_session.revoked_at is not None:
            raise SessionRevoked()
        if row.expires_at <= now or auth_session.expires_at <= now:
            raise TokenExpired("The refresh token has expired. Sign in again.")
        if not await self.repo.spend_refresh_token(row.id, now):
            spent_at = await self.repo.refresh_token_spent_at(row.id)
            if spent_at is not None and (now - spent_at).total_seconds() <= self.settings.refresh_reuse_grace:
                raise exc.RefreshTokenSpent()
            # A spent token came back later: assume it was stolen and end the whole family.
            await self.repo.revoke_session(auth_session.id, now, "refresh_reuse")
            await self._forget_sessions(user.id, [auth_session.id])
            self._audit("auth.refresh_reused", actor_id=user.id, target_id=user.id, reason="family_revoked")
            raise exc.RefreshTokenReused()
        if user.status in {AccountStatus.banned, AccountStatus.deleted}:
            raise SessionRevoked()
        self._check_can_sign_in(user)
        new_refresh = new_token()
        await self.repo.add_refresh_token(
            RefreshToken(
                session_id=auth_session.id, token_hash=hash_token(new_refresh), expires_at=auth_session.expires_at
            )
        )
        await self.repo.touch_session(auth_session.id, now)
        access, expires_in = self.signer.issue(user.id, auth_session.id, now)
        return SignIn(
            user=await self._user_read(user), access_token=access, refresh_token=new_refresh, expires_in=expires_in
        )

    # ------------------------------------------------------------------ sessions
    async def logout(self, principal: Principal) -> None:
        await self.repo.revoke_session(principal.session_id, clock.now(), "logout")
        await self._forget_sessions(principal.user_id, [principal.session_id])
        self._audit("session.logout", actor_id=principal.user_id)

    async def logout_all(self, principal: Principal) -> None:
        await self._revoke_all(principal.user_id, "logout_all")
        self._audit("session.logout_all", actor_id=principal.user_id)

    async def list_sessions(self, principal: Principal, *, limit: int, cursor: str | None) -> Page[SessionRead]:
        after = None
        if cursor:
            created, sid = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(created), uuid.UUID(sid))
            except ValueError:
                raise MalformedRequest("The cursor is invalid.") from None
        rows = await self.repo.active_sessions(principal.user_id, clock.now(), limit=limit + 1, after=after)
        items = [
            SessionRead(
                id=r.id,
                created_at=r.created_at,
                last_used_at=r.last_used_at,
                user_agent=r.user_agent,
                current=r.id == principal.session_id,
            )
            for r in rows[:limit]
        ]
        next_cursor = (
            encode_cursor(rows[limit - 1].created_at.isoformat(), rows[limit - 1].id) if len(rows) > limit else None
        )
        return Page[SessionRead](items=items, next_cursor=next_cursor)

    async def revoke_own_session(self, principal: Principal, session_id: uuid.UUID) -> None:
        found = await self.repo.session_with_user(session_id)
        if found is None or found[0].user_id != principal.user_id or found[0].revoked_at is not None:
            raise NotFound("Session not found.")
        await self.repo.revoke_session(session_id, clock.now(), "revoked_by_user")
        await self._forget_sessions(principal.user_id, [session_id])
        self._audit("session.revoked", actor_id=principal.user_id, reason=str(session_id))

    # ------------------------------------------------------------------ passwords
    async def forgot_password(self, email: str) -> None:
        user = await self.repo.user_by_email(email)
        if user is None or user.status in {AccountStatus.banned, AccountStatus.deleted}:
            return
        token = await self._issue_email_token(user, TokenPurpose.reset_password, RESET_TTL)
        self._audit("password.reset_requested", actor_id=None, target_id=user.id)
        self._mail(
            user.email,
            "reset_password",
            link=self._link("reset-password", token),
            minutes=int(RESET_TTL.total_seconds() // 60),
        )

    async def reset_password(self, token: str, new_password: str) -> None:
        row = await self.repo.email_token(hash_token(token), TokenPurpose.reset_password.value)
        now = clock.now()
        if row is None or row.used_at is not None or row.expires_at <= now:
            raise TokenInvalid()
        user = await self.repo.user_by_id(row.user_id)
        if user is None or user.status in {AccountStatus.banned, AccountStatus.deleted}:
            raise TokenInvalid()
        check_password_strength(new_password, email=user.email)  # before spending the token
        if not await self.repo.use_email_token(row.id, now):
            raise TokenInvalid()
        user.password_hash = await self.passwords.hash(new_password)
        user.password_changed_at = now
        # The link proved control of the inbox: an unverified account is verified by it.
        user.email_verified_at = user.email_verified_at or now
        await self._revoke_all(user.id, "password_reset")
        self._audit("password.reset", actor_id=user.id)
        self._mail(user.email, "password_changed")

    async def change_password(self, principal: Principal, current_password: str, new_password: str) -> None:
        user = await self._require_user(principal)
        if not await self.passwords.verify(user.password_hash, current_password):
            self._audit("password.change_failed", actor_id=user.id)
            raise exc.InvalidCredentials("The current password is incorrect.")
        check_password_strength(new_password, email=user.email)
        user.password_hash = await self.passwords.hash(new_password)
        user.password_changed_at = clock.now()
        await self._revoke_all(user.id, "password_changed", keep=principal.session_id)
        self._audit("password.changed", actor_id=user.id)
        self._mail(user.email, "password_changed")

    # ------------------------------------------------------------------ email change
    async def change_email(self, principal: Principal, password: str, new_email: str) -> None:
        user = await self._require_user(principal)
        if not await self.passwords.verify(user.password_hash, password):
            self._audit("email.change_failed", actor_id=user.id)
            raise exc.InvalidCredentials("The password is incorrect.")
        if new_email == user.email:
            raise exc.SameEmail()
        self._audit("email.change_requested", actor_id=user.id)
        # Same answer whether or not the new address is taken: no enumeration through this form.
        if await self.repo.email_taken(new_email):
            return
        token = await self._issue_email_token(user, TokenPurpose.change_email, CHANGE_EMAIL_TTL, new_email=new_email)
        self._mail(new_email, "confirm_new_email", link=self._link("confirm-email", token))

    async def confirm_email_change(self, token: str) -> UserRead:
        row = await self._consume_email_token(token, TokenPurpose.change_email)
        user = await self.repo.user_by_id(row.user_id)
        if user is None or row.new_email is None or user.status in {AccountStatus.banned, AccountStatus.deleted}:
            raise TokenInvalid()
        if await self.repo.email_taken(row.new_email):
            raise TokenInvalid("This address is already in use.")
        old_email, user.email = user.email, row.new_email
        user.email_verified_at = clock.now()
        # Links already mailed to the old address must not outlive the change.
        for purpose in (TokenPurpose.reset_password, TokenPurpose.verify_email, TokenPurpose.change_email):
            await self.repo.expire_email_tokens(user.id, purpose.value, clock.now())
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError:
            raise TokenInvalid("This address is already in use.") from None
        await self._forget_user(user.id)
        self._audit("email.changed", actor_id=user.id)
        self._mail(old_email, "email_changed", new_email_hint=mask_email(row.new_email))
        return await self._user_read(user)

    # ------------------------------------------------------------------ current user
    async def _require_user(self, principal: Principal) -> User:
        user = await self.repo.user_by_id(principal.user_id)
        if user is None:
            raise SessionRevoked()
        return user


async def forget_user_sessions(session: AsyncSession, cache: Cache, user_id: uuid.UUID) -> None:
    """After commit, drop the cached state of every live session of this user (their fields changed)."""
    ids = await AccountRepository(session).live_session_ids(user_id)
    if ids:
        after_commit(session, lambda: session_state.forget(cache, ids))


def user_from_state(state: SessionState) -> UserRead:
    """The User object from the session state every authenticated request already has (cached)."""
    return UserRead(
        id=state.user_id,
        email=state.email,
        display_name=state.display_name,
        role=state.role,
        tier=state.tier,
        email_verified=state.email_verified,
        created_at=state.created_at,
    )
