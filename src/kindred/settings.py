"""Every environment variable Kindred reads, typed and validated once at start-up."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import limits
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Environment(StrEnum):
    development = "development"
    test = "test"
    production = "production"


class EmailBackend(StrEnum):
    console = "console"
    smtp = "smtp"
    memory = "memory"


class LogFormat(StrEnum):
    json = "json"
    console = "console"


class ConfigError(Exception):
    """Raised with every configuration problem at once; the CLI prints it and exits 2."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


# Values people paste from examples; none of them is a secret.
_PLACEHOLDER = re.compile(
    r"^(|change[-_ ]?me.*|changethis|secret|password|placeholder|example|todo|xxx+|test|dev|"
    r"your[-_ ].*|<.*>|\.\.\.)$",
    re.IGNORECASE,
)


def is_placeholder(value: str | None) -> bool:
    return value is None or bool(_PLACEHOLDER.match(value.strip()))


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    environment: Environment = Environment.development
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    var_dir: Path = Field(Path("var"), validation_alias="KINDRED_VAR_DIR")

    database_url: str | None = None
    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_pool_timeout: float = Field(5.0, gt=0)
    db_connect_timeout: float = Field(3.0, gt=0)
    db_statement_timeout: float = Field(10.0, gt=0)
    db_pool_recycle: int = Field(1800, ge=60)

    redis_url: str | None = None
    redis_host: str | None = None
    redis_port: int = 6379
    redis_socket_timeout: float = Field(0.25, gt=0)
    cache_key_prefix: str = "kindred:"

    jwt_private_key: str | None = None
    jwt_private_key_file: Path | None = None
    jwt_public_key: str | None = None
    jwt_public_key_file: Path | None = None
    jwt_issuer: str = "kindred"
    jwt_audience: str = "kindred-api"
    access_token_ttl: timedelta = timedelta(minutes=15)
    refresh_token_ttl: timedelta = timedelta(days=30)
    refresh_reuse_grace: float = Field(5.0, ge=0)
    session_cache_ttl: int = Field(60, ge=0, validation_alias="SESSION_CACHE_TTL")
    # Seconds a new WebSocket has to authenticate (API.md: 5); shorter only to keep tests fast.
    ws_auth_timeout: float = Field(5.0, gt=0, le=60)
    # Discovery ranks the N most recently active compatible people at a time (docs/discovery.md).
    discovery_window: int = Field(500, ge=1, le=10_000)

    frontend_url: str | None = None
    cors_origin: CsvList = []
    cors_origin_regex: str | None = None
    trusted_proxies: CsvList = ["127.0.0.1"]
    api_key: str | None = None
    metrics_token: str | None = None

    sentry_dsn: str | None = None
    sentry_traces_sample_rate: float = Field(0.0, ge=0, le=1)
    release: str | None = None
    dd_agent_host: str | None = None
    dd_dogstatsd_port: int = 8125
    datadog_api_key: str | None = Field(None, validation_alias="DATADOG_API_KEY")
    dd_api_key: str | None = None
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "kindred"
    otel_traces_sample_rate: float = Field(1.0, ge=0, le=1)

    email_backend: EmailBackend = EmailBackend.console
    smtp_url: str | None = None
    email_from: str = "Kindred <no-reply@kindred.invalid>"

    storage_backend: str = "local"
    storage_path: Path | None = None
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    media_url_secret: str | None = None

    stripe_api_key: str | None = None
    stripe_webhook_secret: str | None = None
    stripe_api_base: str | None = None
    stripe_price_premium_monthly: str | None = None
    stripe_price_premium_yearly: str | None = None
    trial_days: int = Field(7, ge=0)
    price_premium_monthly_cents: int = Field(1499, ge=0)
    price_premium_yearly_cents: int = Field(9999, ge=0)
    price_currency: str = "usd"

    log_level: str = "info"
    log_format: LogFormat | None = None
    log_file: Path | None = None

    shutdown_drain_delay: float = Field(5.0, ge=0)
    shutdown_timeout: float = Field(20.0, ge=0)
    request_timeout: float = Field(30.0, gt=0)
    # Idle keep-alive connections are kept longer than the load balancer keeps them (AWS ALB: 60 s), so
    # the balancer always closes first and never sends a request into a connection we are closing.
    keep_alive_timeout: int = Field(75, gt=0)

    secret_key: str | None = None

    rate_limit_anonymous: str = "100/15minutes"
    rate_limit_free: str = "100/15minutes"
    rate_limit_premium: str = "500/15minutes"
    rate_limit_staff: str = "1000/15minutes"
    # Route limits on top of the general budgets (ARCHITECTURE.md): per client IP, per user, per address.
    rate_limit_login_ip: str = "10/minute"
    rate_limit_login_account: str = "25/hour"
    rate_limit_register_ip: str = "5/30minutes"
    rate_limit_email_address: str = "5/30minutes"
    rate_limit_messages: str = "30/minute"
    rate_limit_uploads: str = "20/hour"

    terms_version: str = "2026-01"
    deletion_grace_days: int = 30
    retention_audit_days: int = 365
    retention_session_days: int = 30
    photo_moderation: str = "post"

    backup_dir: Path | None = None
    backup_encryption_key: str | None = None
    backup_s3_bucket: str | None = None
    backup_alert_webhook_url: str | None = None
    prometheus_multiproc_dir: Path | None = None

    # Password hashing cost (argon2id). Defaults are OWASP's first recommended set; see docs/security.md.
    argon2_memory_kib: int = Field(19456, ge=8)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_parallelism: int = Field(1, ge=1)

    @field_validator(
        "rate_limit_anonymous", "rate_limit_free", "rate_limit_premium", "rate_limit_staff", "rate_limit_login_ip",
        "rate_limit_login_account", "rate_limit_register_ip", "rate_limit_email_address", "rate_limit_messages",
        "rate_limit_uploads",
    )  # fmt: skip
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        try:
            limits.parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit like '100/15minutes' or '10/minute'") from None
        return value

    @field_validator("cors_origin", "trusted_proxies", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("database_url")
    @classmethod
    def _normalise_db_url(cls, value: str | None) -> str | None:
        if value and value.startswith(("postgresql://", "postgres://")):
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        return value

    @field_validator("price_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        value = value.strip().lower()
        if not re.fullmatch(r"[a-z]{3}", value):
            raise ValueError("must be a three-letter ISO 4217 currency code, like 'usd' or 'eur'")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError("must be one of debug, info, warning, error, critical")
        return value

    @field_validator("photo_moderation")
    @classmethod
    def _moderation(cls, value: str) -> str:
        if value not in {"post", "pre"}:
            raise ValueError("must be 'post' or 'pre'")
        return value

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.database_url is None and not self.is_production:
            self.database_url = f"sqlite+aiosqlite:///{(self.var_dir / 'kindred.db').as_posix()}"
        if self.redis_url is None and self.redis_host:
            self.redis_url = f"redis://{self.redis_host}:{self.redis_port}/0"
        if self.frontend_url is None and not self.is_production:
            self.frontend_url = "http://localhost:3000"
        if self.frontend_url:
            self.frontend_url = self.frontend_url.rstrip("/")
        if self.storage_path is None:
            self.storage_path = self.var_dir / "media"
        if self.backup_dir is None:
            self.backup_dir = self.var_dir / "backups"
        return self

    # ----------------------------------------------------------------- derived
    @property
    def is_production(self) -> bool:
        return self.environment is Environment.production

    @property
    def is_sqlite(self) -> bool:
        return bool(self.database_url and self.database_url.startswith("sqlite"))

    @property
    def effective_log_format(self) -> LogFormat:
        if self.log_format is not None:
            return self.log_format
        return LogFormat.json if self.is_production else LogFormat.console

    @property
    def cookie_secure(self) -> bool:
        """`__Host-` cookies need Secure, which needs https: production only."""
        return self.is_production

    @cached_property
    def keys_dir(self) -> Path:
        return self.var_dir / "keys"

    def production_problems(self) -> list[str]:
        """Every reason this configuration must not serve production traffic."""
        problems: list[str] = []
        if not self.database_url:
            problems.append("DATABASE_URL is required (a PostgreSQL URL)")
        elif self.is_sqlite:
            problems.append("DATABASE_URL must be PostgreSQL in production, not SQLite")
        if not (self.jwt_private_key or self.jwt_private_key_file):
            problems.append("JWT_PRIVATE_KEY or JWT_PRIVATE_KEY_FILE is required")
        elif self.jwt_private_key_file and not self.jwt_private_key_file.is_file():
            problems.append(f"JWT_PRIVATE_KEY_FILE does not exist: {self.jwt_private_key_file}")
        elif self.jwt_private_key and is_placeholder(self.jwt_private_key):
            problems.append("JWT_PRIVATE_KEY is a placeholder")
        if not (self.jwt_public_key or self.jwt_public_key_file):
            problems.append("JWT_PUBLIC_KEY or JWT_PUBLIC_KEY_FILE is required")
        elif self.jwt_public_key_file and not self.jwt_public_key_file.is_file():
            problems.append(f"JWT_PUBLIC_KEY_FILE does not exist: {self.jwt_public_key_file}")
        elif self.jwt_public_key and is_placeholder(self.jwt_public_key):
            problems.append("JWT_PUBLIC_KEY is a placeholder")
        for name in ("secret_key", "media_url_secret"):
            value = getattr(self, name)
            env = name.upper()
            if value is None:
                problems.append(f"{env} is required")
            elif is_placeholder(value):
                problems.append(f"{env} is a placeholder value")
            elif len(value) < 32:
                problems.append(f"{env} must be at least 32 characters")
        if not self.frontend_url:
            problems.append("FRONTEND_URL is required")
        elif not self.frontend_url.startswith("https://"):
            problems.append("FRONTEND_URL must be an https:// origin")
        if self.email_backend is not EmailBackend.smtp:
            problems.append(f"EMAIL_BACKEND must be 'smtp' in production (is '{self.email_backend.value}')")
        if self.email_backend is EmailBackend.smtp and not self.smtp_url:
            problems.append("SMTP_URL is required with EMAIL_BACKEND=smtp")
        if any(origin.strip() == "*" for origin in self.cors_origin):
            problems.append("CORS_ORIGIN must not contain the wildcard '*'")
        if self.cors_origin_regex in {".*", "^.*$", ".+", "^.+$"}:
            problems.append("CORS_ORIGIN_REGEX must not match every origin")
        if self.api_key is not None and (is_placeholder(self.api_key) or len(self.api_key) < 32):
            problems.append("API_KEY, when set, must be a real secret of at least 32 characters")
        if self.metrics_token is not None and (is_placeholder(self.metrics_token) or len(self.metrics_token) < 32):
            problems.append("METRICS_TOKEN, when set, must be a real secret of at least 32 characters")
        if self.backup_encryption_key is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", self.backup_encryption_key):
            problems.append("BACKUP_ENCRYPTION_KEY must be 64 hexadecimal characters")
        if self.stripe_api_key is not None and not self.stripe_webhook_secret:
            problems.append("STRIPE_WEBHOOK_SECRET is required when STRIPE_API_KEY is set")
        return problems

    def production_warnings(self) -> list[str]:
        warnings = []
        if not self.redis_url:
            warnings.append("REDIS_URL is not set: cache, rate limits and chat fan-out stay per process")
        return warnings

    def dev_secret(self, name: str) -> str:
        """A stable generated secret for development and tests, kept under var/ (never in production)."""
        if self.is_production:
            raise ConfigError([f"{name} is required in production"])
        path = self.var_dir / "secrets" / name.lower()
        if path.is_file():
            return path.read_text().strip()
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        path.write_text(value)
        path.chmod(0o600)
        return value

    @property
    def effective_secret_key(self) -> str:
        return self.secret_key or self.dev_secret("SECRET_KEY")

    @property
    def effective_media_url_secret(self) -> str:
        return self.media_url_secret or self.dev_secret("MEDIA_URL_SECRET")


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; in production raise ConfigError listing every problem."""
    from pydantic import ValidationError

    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}" for err in exc.errors()]
        ) from None
    if settings.is_production:
        problems = settings.production_problems()
        if problems:
            raise ConfigError(problems)
    return settings
