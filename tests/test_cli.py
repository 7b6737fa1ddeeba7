"""The `kindred` command: keys generate, migrate, create-admin (create and promote), config errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from kindred.cli import app as cli
from kindred.kit.db import Database
from kindred.kit.security import TokenSigner
from kindred.models import AuditEntry, User
from kindred.settings import Settings
from tests.support import leaks
from tests.support.stack import Stack, truncate_all

runner = CliRunner()
STAFF_PASSWORD = leaks.canary("staff-password-that-is-long")


@pytest.fixture
def cli_env(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", stack.database_url)
    monkeypatch.setenv("KINDRED_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("ARGON2_TIME_COST", "1")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("ENVIRONMENT", raising=False)
    yield Settings()
    asyncio.run(truncate_all(stack.database_url))


def _staff(settings: Settings, email: str) -> tuple[User | None, list[str]]:
    async def query() -> tuple[User | None, list[str]]:
        db = Database(settings)
        try:
            async with db.sessionmaker() as session:
                user = await session.scalar(select(User).where(User.email == email))
                actions = list((await session.scalars(select(AuditEntry.action))).all())
                return user, actions
        finally:
            await db.dispose()

    return asyncio.run(query())


def test_keys_generate_writes_a_usable_pair(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["keys", "generate", "--dir", str(tmp_path / "k")])
    assert result.exit_code == 0, result.output
    private, public = (tmp_path / "k" / "jwt_private.pem"), (tmp_path / "k" / "jwt_public.pem")
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    signer = TokenSigner(
        private.read_bytes(), public.read_bytes(), issuer="i", audience="a", ttl=Settings().access_token_ttl
    )
    import uuid

    token, _ = signer.issue(uuid.uuid4(), uuid.uuid4())
    assert signer.verify(token).jti


def test_migrate_is_idempotent(cli_env: Settings) -> None:
    result = runner.invoke(cli, ["migrate"])
    assert result.exit_code == 0, result.output
    assert "latest schema" in result.output


def test_create_admin_creates_a_verified_admin(cli_env: Settings) -> None:
    email = leaks.canary("root.admin@example.com")
    result = runner.invoke(cli, ["create-admin", "--email", email, "--password", STAFF_PASSWORD])
    assert result.exit_code == 0, result.output
    user, actions = _staff(cli_env, email)
    assert user is not None and user.role == "admin" and user.email_verified_at is not None
    assert "admin.staff_created" in actions


def test_create_admin_promotes_an_existing_account_to_moderator(cli_env: Settings) -> None:
    email = leaks.canary("mod.person@example.com")
    assert (
        runner.invoke(
            cli, ["create-admin", "--email", email, "--password", STAFF_PASSWORD, "--role", "moderator"]
        ).exit_code
        == 0
    )
    result = runner.invoke(cli, ["create-admin", "--email", email, "--password", STAFF_PASSWORD, "--role", "admin"])
    assert result.exit_code == 0 and "promoted" in result.output
    user, actions = _staff(cli_env, email)
    assert user is not None and user.role == "admin"
    assert "admin.role_changed" in actions


def test_create_admin_refuses_a_weak_password(cli_env: Settings) -> None:
    result = runner.invoke(cli, ["create-admin", "--email", "weak.admin@example.com", "--password", "password"])
    assert result.exit_code == 1
    user, _ = _staff(cli_env, "weak.admin@example.com")
    assert user is None


def test_production_without_configuration_exits_2_listing_every_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "DATABASE_URL",
        "SECRET_KEY",
        "MEDIA_URL_SECRET",
        "FRONTEND_URL",
        "EMAIL_BACKEND",
        "JWT_PRIVATE_KEY",
        "JWT_PUBLIC_KEY",
        "JWT_PRIVATE_KEY_FILE",
        "JWT_PUBLIC_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ENVIRONMENT", "production")
    result = runner.invoke(cli, ["serve"])
    assert result.exit_code == 2
    for name in ("DATABASE_URL", "JWT_PRIVATE_KEY", "SECRET_KEY", "MEDIA_URL_SECRET", "FRONTEND_URL", "EMAIL_BACKEND"):
        assert name in result.output


def test_set_tier_makes_a_member_premium_and_is_audited(cli_env: Settings) -> None:
    email = leaks.canary("tier.person@example.com")
    assert runner.invoke(cli, ["create-admin", "--email", email, "--password", STAFF_PASSWORD]).exit_code == 0
    result = runner.invoke(cli, ["set-tier", email, "premium"])
    assert result.exit_code == 0, result.output
    user, actions = _staff(cli_env, email)
    assert user is not None and user.tier == "premium"
    assert "admin.tier_set" in actions


def test_set_tier_for_an_unknown_address_fails(cli_env: Settings) -> None:
    result = runner.invoke(cli, ["set-tier", "nobody.here@example.com", "premium"])
    assert result.exit_code == 1


def test_set_tier_refuses_an_unknown_tier(cli_env: Settings) -> None:
    assert runner.invoke(cli, ["set-tier", "x@example.com", "gold"]).exit_code == 2
