"""All SQL for accounts, sign-in sessions, refresh tokens and emailed tokens."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Result, and_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.models import AuthSession, BannedEmail, EmailToken, Profile, RefreshToken, User


class AccountRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # ------------------------------------------------------------------ users
    async def user_by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    async def user_by_id(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def email_taken(self, email: str) -> bool:
        return await self.session.scalar(select(User.id).where(User.email == email)) is not None

    async def is_banned_email(self, email_hash: str) -> bool:
        return await self.session.get(BannedEmail, email_hash) is not None

    async def add_user(self, user: User, display_name: str) -> None:
        self.session.add(user)
        await self.session.flush()
        self.session.add(Profile(user_id=user.id, display_name=display_name))
        await self.session.flush()

    async def display_name(self, user_id: uuid.UUID) -> str:
        name = await self.session.scalar(select(Profile.display_name).where(Profile.user_id == user_id))
        return name or ""

    # ------------------------------------------------------------------ sessions
    def add_session(self, auth_session: AuthSession, token: RefreshToken) -> None:
        # No flush: the commit inserts both, in foreign-key order, with the rest of the request's writes.
        self.session.add_all([auth_session, token])

    async def user_and_name_by_email(self, email: str) -> tuple[User, str] | None:
        """Sign-in needs both; one round trip instead of two."""
        row = (
            await self.session.execute(
                select(User, Profile.display_name).join(Profile, Profile.user_id == User.id).where(User.email == email)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def session_with_user(self, session_id: uuid.UUID) -> tuple[AuthSession, User] | None:
        row = (
            await self.session.execute(
                select(AuthSession, User).join(User, User.id == AuthSession.user_id).where(AuthSession.id == session_id)
            )
        ).first()
        return (row[0], row[1]) if row else None

    async def active_sessions(
        self, user_id: uuid.UUID, now: datetime, *, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[AuthSession]:
        query = select(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), AuthSession.expires_at > now
        )
        if after is not None:
            created, sid = after
            query = query.where(
                (AuthSession.created_at < created) | (and_(AuthSession.created_at == created, AuthSession.id < sid))
            )
        query = query.order_by(AuthSession.created_at.desc(), AuthSession.id.desc()).limit(limit)
        return list((await self.session.scalars(query)).all())

    async def live_session_ids(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        query = select(AuthSession.id).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        return list((await self.session.scalars(query)).all())

    async def session_state_row(self, session_id: uuid.UUID) -> tuple[AuthSession, User, str] | None:
        """The session, its user and display name in one query: what every authenticated request needs."""
        row = (
            await self.session.execute(
                select(AuthSession, User, Profile.display_name)
                .join(User, User.id == AuthSession.user_id)
                .join(Profile, Profile.user_id == User.id)
                .where(AuthSession.id == session_id)
            )
        ).first()
        return (row[0], row[1], row[2]) if row else None

    async def revoke_session(self, session_id: uuid.UUID, now: datetime, reason: str) -> bool:
        result = await self.session.execute(
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=now, revoke_reason=reason)
        )
        return _rowcount(result) == 1

    async def revoke_user_sessions(
        self, user_id: uuid.UUID, now: datetime, reason: str, *, except_session: uuid.UUID | None = None
    ) -> list[uuid.UUID]:
        """Revoke every live session of a user (but `except_session`); returns the ids revoked."""
        query = select(AuthSession.id).where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        if except_session is not None:
            query = query.where(AuthSession.id != except_session)
        ids = list((await self.session.scalars(query)).all())
        if ids:
            await self.session.execute(
                update(AuthSession)
                .where(AuthSession.id.in_(ids), AuthSession.revoked_at.is_(None))
                .values(revoked_at=now, revoke_reason=reason)
            )
        return ids

    async def touch_session(self, session_id: uuid.UUID, now: datetime) -> None:
        await self.session.execute(update(AuthSession).where(AuthSession.id == session_id).values(last_used_at=now))

    # ------------------------------------------------------------------ refresh tokens
    async def refresh_token(self, token_hash: str) -> RefreshToken | None:
        return await self.session.scalar(select(RefreshToken).where(RefreshToken.token_hash == token_hash))

    async def spend_refresh_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Atomically mark a refresh token spent. Exactly one concurrent caller gets True."""
        result = await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.id == token_id, RefreshToken.spent_at.is_(None))
            .values(spent_at=now)
        )
        return _rowcount(result) == 1

    async def refresh_token_spent_at(self, token_id: uuid.UUID) -> datetime | None:
        return await self.session.scalar(
            select(RefreshToken.spent_at).where(RefreshToken.id == token_id).execution_options(populate_existing=True)
        )

    async def add_refresh_token(self, token: RefreshToken) -> None:
        self.session.add(token)
        await self.session.flush()

    # ------------------------------------------------------------------ emailed tokens
    async def add_email_token(self, token: EmailToken) -> None:
        self.session.add(token)
        await self.session.flush()

    async def email_token(self, token_hash: str, purpose: str) -> EmailToken | None:
        return await self.session.scalar(
            select(EmailToken).where(EmailToken.token_hash == token_hash, EmailToken.purpose == purpose)
        )

    async def use_email_token(self, token_id: uuid.UUID, now: datetime) -> bool:
        """Single use: only one caller can ever mark a token used."""
        result = await self.session.execute(
            update(EmailToken).where(EmailToken.id == token_id, EmailToken.used_at.is_(None)).values(used_at=now)
        )
        return _rowcount(result) == 1

    async def expire_email_tokens(self, user_id: uuid.UUID, purpose: str, now: datetime) -> None:
        await self.session.execute(
            update(EmailToken)
            .where(EmailToken.user_id == user_id, EmailToken.purpose == purpose, EmailToken.used_at.is_(None))
            .values(used_at=now)
        )


def _rowcount(result: Result[Any]) -> int:
    """Rows matched by an UPDATE (DML statements return a CursorResult)."""
    return cast(CursorResult[Any], result).rowcount
