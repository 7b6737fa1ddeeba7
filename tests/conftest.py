"""Shared fixtures: one database per xdist worker, a fresh app per test, captured logs checked for leaks."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.observability.logging import configure_logging
from kindred.settings import Settings
from tests.support import exposure, leaks
from tests.support.stack import Stack, build_stack, create_database, drop_database, truncate_all, worker_id

# ---------------------------------------------------------------------------------------------- logging

_LOG_BUFFER = io.StringIO()


def pytest_configure(config: pytest.Config) -> None:
    configure_logging("info", "json", stream=_LOG_BUFFER)
    # The SMTP capture server (test infrastructure, not Kindred) logs every envelope it receives.
    logging.getLogger("mail.log").setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def _no_secrets_in_logs(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test: nothing it logged may contain an email address, a token or a password it used."""
    _LOG_BUFFER.seek(0)
    _LOG_BUFFER.truncate()
    leaks.reset()
    exposure.reset()
    yield
    if request.node.get_closest_marker("leaks_expected"):
        return
    found = leaks.scan(_LOG_BUFFER.getvalue())
    assert not found, f"personal data or secrets in the log output: {found[:5]}"
    shown = exposure.found()
    assert not shown, f"a response showed coordinates, a birthdate or someone's email: {shown[:5]}"


@pytest.fixture
def log_output() -> Callable[[], str]:
    """What the app logged during this test so far (JSON lines)."""
    return _LOG_BUFFER.getvalue


# ---------------------------------------------------------------------------------------------- stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp(f"stack-{worker_id()}")
    stack = build_stack(tmp)
    create_database(stack)
    yield stack
    drop_database(stack)


@pytest.fixture(scope="session")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("var")


RATE_LIMIT_SETTINGS = tuple(name for name in Settings.model_fields if name.startswith("rate_limit_"))
UNLIMITED = "1000000/minute"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override per test module to change settings (e.g. a short refresh grace)."""
    return {}


@pytest.fixture
def settings(stack: Stack, var_dir: Path, settings_overrides: dict[str, object]) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "database_url": stack.database_url,
        "redis_url": stack.redis_url,
        "cache_key_prefix": f"kt:{worker_id()}:{os.getpid()}:",
        "email_backend": "memory",
        "KINDRED_VAR_DIR": var_dir,
        # Cheap hashing keeps the suite fast; production cost is measured in `make bench`.
        "argon2_memory_kib": 1024,
        "argon2_time_cost": 1,
        # The limiter runs in every test (its cost is part of every request) with budgets no ordinary test
        # reaches; tests/middleware/test_rate_limit.py sets the real ones.
        **{name: UNLIMITED for name in RATE_LIMIT_SETTINGS},
    }
    values.update(settings_overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def mail() -> MemoryEmailBackend:
    return MemoryEmailBackend()


@pytest.fixture
async def app(settings: Settings, mail: MemoryEmailBackend, stack: Stack) -> AsyncIterator[FastAPI]:
    application = create_app(settings, email_backend=mail)
    # Run the lifespan ourselves (see PITFALLS.md on asgi_lifespan's shared state).
    async with application.router.lifespan_context(application):
        yield application
        if settings.redis_url:
            await _flush_prefix(application)
    await truncate_all(stack.database_url)


async def _flush_prefix(application: FastAPI) -> None:
    cache = application.state.cache
    client = getattr(cache, "redis_client", None)
    if client is None:
        return
    try:
        async for key in client.scan_iter(match=application.state.settings.cache_key_prefix + "*", count=500):
            await client.delete(key)
    except Exception:  # Redis may be deliberately cut by a fault test
        logging.getLogger(__name__).debug("test.flush_failed")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        c.event_hooks["response"] = [leaks.register_response_tokens]
        yield c


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`postgres_only` tests exercise PostgreSQL mechanics (TCP stalls, pool sizing): they run in the
    PostgreSQL pass and are deselected — reported, not skipped — on the embedded stack."""
    if os.environ.get("TEST_DATABASE_URL"):
        return
    deselected = [item for item in items if item.get_closest_marker("postgres_only")]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if not item.get_closest_marker("postgres_only")]


def pytest_report_header(config: pytest.Config) -> str:
    database = "PostgreSQL (TEST_DATABASE_URL)" if os.environ.get("TEST_DATABASE_URL") else "SQLite (embedded)"
    cache = "Redis (TEST_REDIS_URL)" if os.environ.get("TEST_REDIS_URL") else "in-process memory"
    extra = (
        ""
        if os.environ.get("TEST_DATABASE_URL")
        else "; postgres_only tests deselected (they run in the PostgreSQL pass)"
    )
    return f"kindred test stack: database {database}, cache {cache}{extra}"


def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker in item.iter_markers("needs"):
        from tests.support.requirements import require_binary

        for tool in marker.args:
            require_binary(tool)
