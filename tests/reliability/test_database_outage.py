"""The database goes away: probes say so, the API answers 503 `database_unavailable` (never 500), the
circuit breaker stops the waiting, and everything comes back when the database does.

How the database is made unreachable:
- PostgreSQL: the app connects through a TCP proxy. `cut` drops every connection and refuses new ones
  (server down / connection refused); `stall` keeps connections open but forwards nothing (a hung
  server or a network partition, only timeouts can tell).
- SQLite: the database file lives in its own directory; `cut` moves the directory away (the path's
  directory no longer exists) and drops the pooled connection, which would otherwise keep the moved
  file open, as a real outage drops connections too; `restore` moves it back.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit.email import MemoryEmailBackend
from kindred.ops.migrate import upgrade
from kindred.settings import Settings
from tests.reliability.conftest import Running, StartApp, eventually, log_events, with_netloc
from tests.support.factories import Account, registration, verified_account
from tests.support.stack import Stack
from tests.support.tcpproxy import TcpProxy

# The database breaker waits 5 s before a trial call; shortened on the live breaker so a recovery
# takes about a second. Threshold (5 failures) and the open → half-open → closed cycle are unchanged.
RESET_TIMEOUT = 0.5
CONNECT_TIMEOUT = 0.5  # DB_CONNECT_TIMEOUT for these apps (3 s by default)


@dataclass
class Outage:
    """A way to take this stack's database away from an app, and to give it back."""

    settings: Settings
    cut: Callable[[FastAPI | None], Awaitable[None]]
    restore: Callable[[], Awaitable[None]]
    proxy: TcpProxy | None = None  # PostgreSQL only


@pytest.fixture(scope="module")
def sqlite_template(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """SQLite: one migrated database file, copied for every test that needs one."""
    if stack.is_postgres:
        return None
    path = tmp_path_factory.mktemp("db-template") / "kindred.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture
async def outage(
    stack: Stack, settings: Settings, tmp_path: Path, sqlite_template: Path | None
) -> AsyncIterator[Outage]:
    base = {"db_connect_timeout": CONNECT_TIMEOUT}
    if stack.is_postgres:
        target = urlsplit(stack.database_url)
        async with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:

            async def cut_proxy(_app: FastAPI | None) -> None:
                await proxy.cut()

            async def restore_proxy() -> None:
                proxy.restore()

            url = with_netloc(stack.database_url, "127.0.0.1", proxy.port)
            yield Outage(settings.model_copy(update={**base, "database_url": url}), cut_proxy, restore_proxy, proxy)
            proxy.restore()  # let hung calls finish before the app's lifespan closes the pool
        return

    assert sqlite_template is not None
    home, away = tmp_path / "db", tmp_path / "db-away"
    home.mkdir()
    shutil.copyfile(sqlite_template, home / "kindred.db")

    async def cut_file(app: FastAPI | None) -> None:
        home.rename(away)
        if app is not None:
            await app.state.db.engine.dispose()  # close the pooled connection: it still has the file open

    async def restore_file() -> None:
        away.rename(home)

    url = f"sqlite+aiosqlite:///{home / 'kindred.db'}"
    yield Outage(settings.model_copy(update={**base, "database_url": url}), cut_file, restore_file)
    # start_app empties the worker's database; this one is a private copy under tmp_path.


@pytest.fixture
def start_app(outage: Outage, start_app: StartApp) -> StartApp:
    """The shared `start_app`, set up after (so torn down before) the outage and its proxy."""
    return start_app


async def _start(start_app: StartApp, settings: Settings) -> Running:
    running = await start_app(settings)
    running.app.state.db.breaker.reset_timeout = RESET_TIMEOUT
    return running


def assert_database_unavailable(response: httpx.Response) -> None:
    """503 in the contract's error shape, with Retry-After, and nothing about our insides."""
    assert response.status_code == 503, (response.request.url.path, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "request_id"}, body
    assert body["error"]["code"] == "database_unavailable", body
    assert body["request_id"] == response.headers["x-request-id"]
    retry_after = response.headers.get("retry-after", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, retry_after
    for internal in ("Traceback", "sqlalchemy", "asyncpg", "sqlite", "OperationalError", 'File "'):
        assert internal.lower() not in response.text.lower(), response.text


async def _db_calls(client: httpx.AsyncClient, account: Account) -> list[httpx.Response]:
    """One of each kind of call that needs the database."""
    return [
        await client.post("/api/v1/auth/register", json=registration()),
        await client.post("/api/v1/auth/login", json={"email": account.email, "password": account.password}),
        await client.post("/api/v1/auth/verify-email", json={"token": "a" * 43}),
        await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token}),
        await client.get("/api/v1/me", headers=account.headers),
        await client.get("/api/v1/auth/sessions", headers=account.headers),
    ]


async def _wait_until_serving(client: httpx.AsyncClient, account: Account) -> None:
    async def serving() -> bool:
        return (await client.get("/api/v1/me", headers=account.headers)).status_code == 200

    await eventually(serving, RESET_TIMEOUT + 5, "requests succeed again after the database came back")


# ---------------------------------------------------------------------------------------------- probes


async def test_ready_is_503_and_live_200_while_the_database_is_unreachable(
    start_app: StartApp, outage: Outage, mail: MemoryEmailBackend
) -> None:
    running = await _start(start_app, outage.settings)
    client = running.client
    assert (await client.get("/ready")).json() == {"ready": True}

    await outage.cut(running.app)

    ready = await client.get("/ready")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False
    assert isinstance(body["reason"], str) and body["reason"], body
    live = await client.get("/live")
    assert live.status_code == 200
    assert live.json()["alive"] is True
    assert (await client.get("/health")).status_code == 200

    detailed = await client.get("/health/detailed")
    assert detailed.status_code == 503
    assert detailed.json()["status"] == "error"
    assert detailed.json()["checks"]["database"]["status"] == "error"

    await outage.restore()
    assert (await client.get("/ready")).json() == {"ready": True}


# ---------------------------------------------------------------------------------------------- API


async def test_api_calls_answer_503_database_unavailable_never_500(
    start_app: StartApp, outage: Outage, mail: MemoryEmailBackend, caplog: pytest.LogCaptureFixture
) -> None:
    running = await _start(start_app, outage.settings)
    client = running.client
    account = await verified_account(client, mail)

    await outage.cut(running.app)

    for response in await _db_calls(client, account):
        assert_database_unavailable(response)
    assert log_events(caplog, "db.unavailable"), "the outage was not logged"
    assert not log_events(caplog, "http.unhandled_error")


async def test_the_breaker_opens_answers_at_once_and_closes_when_the_database_returns(
    start_app: StartApp, outage: Outage, mail: MemoryEmailBackend
) -> None:
    running = await _start(start_app, outage.settings)
    client, breaker = running.client, running.app.state.db.breaker
    account = await verified_account(client, mail)

    await outage.cut(running.app)

    for _ in range(breaker.failure_threshold):
        assert_database_unavailable(await client.get("/api/v1/me", headers=account.headers))
    assert breaker.state == "open"

    for _ in range(10):
        started = time.monotonic()
        response = await client.post("/api/v1/auth/login", json={"email": account.email, "password": "x" * 12})
        assert time.monotonic() - started < 0.5
        assert_database_unavailable(response)
    assert breaker.state == "open"

    await outage.restore()
    await asyncio.sleep(RESET_TIMEOUT)
    assert breaker.state == "half_open"
    me = await client.get("/api/v1/me", headers=account.headers)  # the trial call
    assert me.status_code == 200, me.text
    assert breaker.state == "closed"
    # Writes work again too.
    login = await client.post("/api/v1/auth/login", json={"email": account.email, "password": account.password})
    assert login.status_code == 200, login.text
    assert (await client.get("/ready")).json() == {"ready": True}


async def test_a_trial_call_ending_in_a_client_error_still_closes_the_breaker(
    start_app: StartApp, outage: Outage, mail: MemoryEmailBackend
) -> None:
    """The half-open trial reached the database (it checked a password), so the database is back.

    A trial answered 401 must not leave the breaker half-open, refusing every other caller with 503
    `database_unavailable` for another reset period although the database works.
    """
    running = await _start(start_app, outage.settings)
    client, breaker = running.client, running.app.state.db.breaker
    account = await verified_account(client, mail)
    await outage.cut(running.app)
    for _ in range(breaker.failure_threshold):
        assert_database_unavailable(await client.get("/api/v1/me", headers=account.headers))
    assert breaker.state == "open"
    await outage.restore()
    await asyncio.sleep(RESET_TIMEOUT)

    wrong = await client.post("/api/v1/auth/login", json={"email": account.email, "password": "wrong password 1"})
    assert wrong.status_code == 401, wrong.text  # the trial: the database answered

    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200, f"breaker {breaker.state} after a trial answered by the database: {me.text}"


async def test_the_app_starts_without_its_database_and_serves_once_it_appears(
    stack: Stack,
    start_app: StartApp,
    outage: Outage,
    mail: MemoryEmailBackend,
) -> None:
    # Taken away before the app exists: on SQLite DATABASE_URL points into a directory that does not exist.
    await outage.cut(None)
    if not stack.is_postgres:
        assert not Path(outage.settings.database_url.split(":///", 1)[1]).parent.exists()
    running = await _start(start_app, outage.settings)
    client = running.client

    assert (await client.get("/live")).status_code == 200
    assert (await client.get("/health")).status_code == 200
    ready = await client.get("/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    assert_database_unavailable(await client.post("/api/v1/auth/register", json=registration()))

    await outage.restore()
    assert (await client.get("/ready")).json() == {"ready": True}
    account = await verified_account(client, mail)
    await _wait_until_serving(client, account)


# ---------------------------------------------------------------------------------------------- PostgreSQL only


@pytest.mark.postgres_only
async def test_once_open_the_breaker_spares_callers_the_connect_timeout(
    stack: Stack, start_app: StartApp, outage: Outage
) -> None:
    """A hung server (connections accepted, never answered): each call costs DB_CONNECT_TIMEOUT until
    the breaker opens; after that the answer is immediate."""
    assert outage.proxy is not None
    outage.proxy.stall()  # before the app has a connection: every new one hangs in its handshake
    running = await _start(start_app, outage.settings)
    client, breaker = running.client, running.app.state.db.breaker

    slow = []
    for _ in range(breaker.failure_threshold):
        started = time.monotonic()
        assert_database_unavailable(await client.post("/api/v1/auth/register", json=registration()))
        slow.append(time.monotonic() - started)
    assert breaker.state == "open"
    assert min(slow) >= CONNECT_TIMEOUT * 0.8, slow  # these really waited for the connect timeout
    assert max(slow) < CONNECT_TIMEOUT + 2, slow  # ...and no longer

    fast = []
    for _ in range(5):
        started = time.monotonic()
        assert_database_unavailable(await client.post("/api/v1/auth/register", json=registration()))
        fast.append(time.monotonic() - started)
    assert max(fast) < 0.2, fast


@pytest.mark.postgres_only
async def test_a_hung_database_answers_503_instead_of_hanging_the_request(
    stack: Stack, start_app: StartApp, outage: Outage, mail: MemoryEmailBackend
) -> None:
    """The database stops answering on connections the pool already holds (a frozen server, a partition).

    DB_STATEMENT_TIMEOUT is enforced by the server, which is not answering; only a client-side timeout
    can end the call. The request must end with 503 `database_unavailable`, not hang.
    """
    assert outage.proxy is not None
    settings = outage.settings.model_copy(update={"db_statement_timeout": 0.5})
    running = await _start(start_app, settings)
    client = running.client
    account = await verified_account(client, mail)  # the pool now holds an open connection

    outage.proxy.stall()
    budget = settings.db_statement_timeout + settings.db_connect_timeout + 3
    response: httpx.Response | None = None
    try:
        response = await asyncio.wait_for(client.get("/api/v1/me", headers=account.headers), budget)
    except TimeoutError:
        pass  # reported below, without the cancellation's traceback
    finally:
        outage.proxy.restore()
    if response is None:
        pytest.fail(
            f"GET /api/v1/me still hanging after {budget:.1f} s on a database that stopped answering "
            "(nothing bounds a call on a connection the pool already holds)"
        )
    assert_database_unavailable(response)


@pytest.mark.postgres_only
async def test_an_exhausted_pool_answers_503_within_about_a_second(
    stack: Stack, start_app: StartApp, outage: Outage, mail: MemoryEmailBackend
) -> None:
    # PostgreSQL only: the embedded SQLite engine always has exactly one connection and waits
    # max(DB_POOL_TIMEOUT, 30 s) for it on purpose, so concurrent writers queue behind each other
    # instead of failing with "database is locked". DB_POOL_* settings size PostgreSQL pools only.
    settings = outage.settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.5})
    running = await _start(start_app, settings)
    client, db = running.client, running.app.state.db
    account = await verified_account(client, mail)

    async with db.engine.connect():  # the pool's only connection, held by someone else
        assert db.pool_stats()["in_use"] == 1
        started = time.monotonic()
        response = await client.get("/api/v1/me", headers=account.headers)
        elapsed = time.monotonic() - started
        assert_database_unavailable(response)
        assert 0.4 <= elapsed < 1.5, elapsed  # waited DB_POOL_TIMEOUT (0.5 s), then gave up
        detailed = (await client.get("/health/detailed")).json()
        assert detailed["checks"]["database"]["pool"]["utilisation"] == 1.0, detailed

    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200, me.text
