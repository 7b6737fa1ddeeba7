"""Operator account jobs: create or promote staff."""

from __future__ import annotations

import uuid
from datetime import date

from kindred.auth import session_state
from kindred.auth.exceptions import WeakPassword
from kindred.auth.repository import AccountRepository
from kindred.auth.service import check_password_strength
from kindred.kit import clock
from kindred.kit.db import Database
from kindred.kit.security import Passwords
from kindred.models import Tier, User
from kindred.observability import audit
from kindred.observability.metrics import Metrics, count_now
from kindred.settings import Settings


async def create_staff(settings: Settings, *, email: str, password: str, role: str) -> bool:
    """Returns True when a new account was created, False when an existing one was promoted."""
    email = email.strip().lower()
    if "@" not in email:
        raise ValueError("a valid email address is required")
    try:
        check_password_strength(password, email=email)
    except WeakPassword:
        raise ValueError("password must be at least 10 characters and not a common one") from None
    passwords = Passwords(settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)
    db = Database(settings)
    try:
        async with db.sessionmaker() as session, session.begin():
            repo = AccountRepository(session)
            user = await repo.user_by_email(email)
            now = clock.now()
            created = user is None
            if user is None:
                user = User(
                    id=uuid.uuid4(),
                    email=email,
                    password_hash=await passwords.hash(password),
                    birthdate=date(1970, 1, 1),
                    terms_version=settings.terms_version,
                    email_verified_at=now,
                )
                await repo.add_user(user, display_name=email.split("@", 1)[0][:50])
            user.role = role
            user.email_verified_at = user.email_verified_at or now
            audit.record(
                session,
                "admin.staff_created" if created else "admin.role_changed",
                target_type="user",
                target_id=user.id,
                reason=f"cli:{role}",
            )
            ids = await repo.revoke_user_sessions(user.id, now, "role_changed") if not created else []
            user_id = user.id
        if ids:
            from kindred.kit.cache import create_cache

            cache = create_cache(settings.redis_url, key_prefix=settings.cache_key_prefix)
            try:
                # Tombstones, and the running servers close those sessions' sockets (4001) at once.
                await session_state.end_sessions(cache, user_id, ids, settings.session_cache_ttl)
            finally:
                await cache.close()
        return created
    finally:
        await db.dispose()


async def set_tier(settings: Settings, *, email: str, tier: str, metrics: Metrics | None = None) -> bool:
    """Operator override of a member's tier (until billing exists); audited. False if no such account.

    free → premium counts as a premium conversion, after the commit: on `metrics` when given (a caller
    inside the app), else through DogStatsD when DD_AGENT_HOST is set (the CLI process is never scraped).
    """
    db = Database(settings)
    try:
        async with db.sessionmaker() as session, session.begin():
            user = await AccountRepository(session).user_by_email(email.strip().lower())
            if user is None:
                return False
            previous, user.tier = user.tier, tier
            audit.record(session, "admin.tier_set", target_type="user", target_id=user.id,
                         reason=f"cli:{previous}->{tier}")  # fmt: skip
            ids = await AccountRepository(session).live_session_ids(user.id)
        if previous != Tier.premium and tier == Tier.premium:
            await count_now(settings, "premium.converted", metrics)
        if ids:  # the cached session state carries the tier
            from kindred.kit.cache import create_cache

            cache = create_cache(settings.redis_url, key_prefix=settings.cache_key_prefix)
            try:
                await session_state.forget(cache, ids)
            finally:
                await cache.close()
        return True
    finally:
        await db.dispose()
