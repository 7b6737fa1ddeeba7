"""Settings: defaults for the embedded stack, and production refusing to start on anything unsafe."""

from __future__ import annotations

from pathlib import Path

import pytest

from kindred.kit.security import write_key_pair
from kindred.settings import ConfigError, Settings, load_settings

PROD_VARS = (
    "DATABASE_URL",
    "JWT_PRIVATE_KEY",
    "JWT_PRIVATE_KEY_FILE",
    "JWT_PUBLIC_KEY",
    "JWT_PUBLIC_KEY_FILE",
    "SECRET_KEY",
    "MEDIA_URL_SECRET",
    "FRONTEND_URL",
    "EMAIL_BACKEND",
    "SMTP_URL",
    "CORS_ORIGIN",
    "REDIS_URL",
    "API_KEY",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROD_VARS, "ENVIRONMENT", "KINDRED_VAR_DIR", "PORT", "HOST"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _good_production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private, public = write_key_pair(tmp_path / "keys")
    values = {
        "ENVIRONMENT": "production",
        "DATABASE_URL": "postgresql://kindred@db.internal/kindred",
        "JWT_PRIVATE_KEY_FILE": str(private),
        "JWT_PUBLIC_KEY_FILE": str(public),
        "SECRET_KEY": "k" * 20 + "Zq9-very-random-48-characters",
        "MEDIA_URL_SECRET": "m" * 20 + "Xy7-another-random-secret-value",
        "FRONTEND_URL": "https://app.kindred.example",
        "EMAIL_BACKEND": "smtp",
        "SMTP_URL": "smtp://mailer:pw@smtp.internal:587",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)


def test_development_defaults_to_the_embedded_stack(clean_env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    assert settings.database_url == "sqlite+aiosqlite:///var/kindred.db"
    assert settings.redis_url is None
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.email_backend.value == "console"
    assert settings.frontend_url == "http://localhost:3000"


def test_port_comes_from_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "9000")
    assert load_settings().port == 9000


def test_plain_postgresql_url_is_accepted_as_asyncpg(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DATABASE_URL", "postgresql://u@h/db")
    assert load_settings().database_url == "postgresql+asyncpg://u@h/db"


def test_redis_host_and_port_build_a_url(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("REDIS_HOST", "cache.internal")
    clean_env.setenv("REDIS_PORT", "6380")
    assert load_settings().redis_url == "redis://cache.internal:6380/0"


def test_production_with_nothing_configured_lists_every_problem(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("ENVIRONMENT", "production")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    message = str(raised.value)
    for name in (
        "DATABASE_URL",
        "JWT_PRIVATE_KEY",
        "JWT_PUBLIC_KEY",
        "SECRET_KEY",
        "MEDIA_URL_SECRET",
        "FRONTEND_URL",
        "EMAIL_BACKEND",
    ):
        assert name in message
    assert len(raised.value.problems) >= 7


def test_a_complete_production_configuration_is_accepted(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _good_production(tmp_path, clean_env)
    settings = load_settings()
    assert settings.is_production
    assert settings.production_warnings() == [
        "REDIS_URL is not set: cache, rate limits and chat fan-out stay per process"
    ]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "sqlite+aiosqlite:///var/kindred.db", "must be PostgreSQL"),
        ("SECRET_KEY", "changeme", "SECRET_KEY is a placeholder"),
        ("SECRET_KEY", "short-but-not-a-placeholder", "SECRET_KEY must be at least 32"),
        ("MEDIA_URL_SECRET", "your-secret-here", "MEDIA_URL_SECRET is a placeholder"),
        ("CORS_ORIGIN", "https://a.example,*", "wildcard"),
        ("EMAIL_BACKEND", "console", "EMAIL_BACKEND must be 'smtp'"),
        ("FRONTEND_URL", "http://app.kindred.example", "https://"),
        ("JWT_PRIVATE_KEY_FILE", "/nonexistent/key.pem", "JWT_PRIVATE_KEY_FILE does not exist"),
        ("API_KEY", "secret", "API_KEY"),
    ],
)
def test_production_refuses_unsafe_values(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, expected: str
) -> None:
    _good_production(tmp_path, clean_env)
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert any(expected in problem for problem in raised.value.problems), raised.value.problems


def test_production_smtp_backend_needs_an_smtp_url(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _good_production(tmp_path, clean_env)
    clean_env.delenv("SMTP_URL")
    with pytest.raises(ConfigError, match="SMTP_URL is required"):
        load_settings()


def test_several_problems_are_reported_together(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _good_production(tmp_path, clean_env)
    clean_env.setenv("SECRET_KEY", "changeme")
    clean_env.setenv("CORS_ORIGIN", "*")
    clean_env.setenv("DATABASE_URL", "sqlite+aiosqlite:///x.db")
    with pytest.raises(ConfigError) as raised:
        load_settings()
    assert len(raised.value.problems) == 3


def test_invalid_types_are_config_errors_naming_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("PORT", "not-a-port")
    with pytest.raises(ConfigError, match="PORT"):
        load_settings()


def test_development_secrets_are_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(KINDRED_VAR_DIR=tmp_path)  # type: ignore[call-arg]
    first = settings.effective_secret_key
    assert len(first) >= 32
    assert Settings(KINDRED_VAR_DIR=tmp_path).effective_secret_key == first  # type: ignore[call-arg]


def test_production_never_generates_secrets(tmp_path: Path) -> None:
    settings = Settings(environment="production", KINDRED_VAR_DIR=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(ConfigError):
        settings.dev_secret("SECRET_KEY")
