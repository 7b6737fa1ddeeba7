"""Database engine, pool policy, circuit breaker and the per-request unit of work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from kindred.kit.breaker import CircuitBreaker
from kindred.kit.errors import AppError, DatabaseUnavailable
from kindred.observability.logging import get_logger
from kindred.settings import Settings

log = get_logger(__name__)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` means "the database cannot be reached or the pool is exhausted"."""
    if isinstance(exc, PoolTimeout | OSError | ConnectionError | asyncio.TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            return True
        if isinstance(exc, OperationalError):
            return True
        orig = exc.orig
        name = type(orig).__name__ if orig is not None else ""
        return name in {
            "CannotConnectNowError",
            "TooManyConnectionsError",
            "ConnectionDoesNotExistError",
            "InvalidCatalogNameError",
        }
    return False


def build_engine(settings: Settings) -> AsyncEngine:
    url = settings.database_url
    assert url is not None
    if settings.is_sqlite:
        # SQLite has one writer. One pooled connection serialises the embedded stack's transactions,
        # which avoids "database is locked" upgrade deadlocks between concurrent requests.
        engine = create_async_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=max(settings.db_pool_timeout, 30.0),
            connect_args={"timeout": 30},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            # The sqlite3 driver starts transactions lazily and lets RELEASE SAVEPOINT commit everything;
            # take transaction control back so savepoints nest inside a real BEGIN (SQLAlchemy docs).
            dbapi_connection.isolation_level = None

        @event.listens_for(engine.sync_engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_connect_timeout,
            # Client-side bound too: statement_timeout is enforced by a server that may not be answering.
            "command_timeout": settings.db_statement_timeout + 1,
            "server_settings": {
                "statement_timeout": str(int(settings.db_statement_timeout * 1000)),
                "application_name": "kindred",
                # Our queries are short OLTP lookups. The planner's cost guesses for expressions (the feed's
                # distance and score) can trip JIT, whose compile time then dwarfs the query (measured:
                # ~4 s of JIT for a 50 ms feed query at 100k profiles). docs/performance.md.
                "jit": "off",
                # asyncpg prepares every statement; after five runs PostgreSQL may switch a statement to a
                # generic plan made without the parameter values. For the feed that plan ignores the
                # activity window and scans every user (measured: 15 ms custom vs 170-400 ms generic at
                # 100k profiles). Planning each execution costs well under a millisecond here.
                "plan_cache_mode": "force_custom_plan",
            },
        },
    )


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the request's transaction has committed (never if it rolls back).

    For side effects that must not get ahead of the data: cache invalidation, events, notifications.
    """
    session.info.setdefault("after_commit", []).append(callback)


async def _run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop("after_commit", []):
        try:
            await callback()
        except Exception as exc:  # the write is committed; a failed side effect must not turn it into an error
            log.warning("db.after_commit_failed", error=type(exc).__name__)


class Database:
    """Owns the engine and session factory; one instance per app (created in the lifespan)."""

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        self.engine = engine or build_engine(settings)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.breaker = CircuitBreaker("database", failure_threshold=5, reset_timeout=5.0)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def pool_stats(self) -> dict[str, Any]:
        pool = self.engine.pool
        size = getattr(pool, "size", lambda: 1)()
        checked_out = getattr(pool, "checkedout", lambda: 0)()
        overflow = max(getattr(pool, "overflow", lambda: 0)(), 0)
        capacity = size + max(getattr(pool, "_max_overflow", 0), 0)
        return {
            "size": size,
            "max_overflow": max(getattr(pool, "_max_overflow", 0), 0),
            "in_use": checked_out,
            "idle": getattr(pool, "checkedin", lambda: 0)(),
            "overflow": overflow,
            "capacity": capacity,
            "utilisation": round(checked_out / capacity, 3) if capacity else 0.0,
        }

    async def ping(self) -> float:
        """Round-trip `SELECT 1`; returns seconds. Bounded so a hung server cannot hang a probe."""
        started = time.perf_counter()
        async with asyncio.timeout(self.settings.db_connect_timeout + 1):
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        return time.perf_counter() - started

    async def dispose(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """Yield a session; commit on success (or on an AppError that keeps its writes), else roll back.

        Connection failures become 503 `database_unavailable` and feed the circuit breaker, which then
        answers 503 at once instead of making every request wait for timeouts.
        """
        if not self.breaker.allow():
            raise DatabaseUnavailable()
        session = self.sessionmaker()
        used_database = False
        try:
            try:
                yield session
            except AppError as exc:
                used_database = session.in_transaction()
                if exc.keep_writes:
                    await session.commit()
                    await _run_after_commit(session)
                else:
                    await session.rollback()
                raise
            except BaseException:
                await _quiet_rollback(session)
                raise
            else:
                used_database = session.in_transaction()
                await session.commit()
                await _run_after_commit(session)
        except Exception as exc:
            if is_unavailable(exc):
                self.breaker.record_failure()
                log.warning("db.unavailable", error=type(exc).__name__)
                raise DatabaseUnavailable() from exc
            self._settle_breaker(used_database)
            raise
        else:
            self._settle_breaker(used_database)
        finally:
            await _quiet_close(session)

    def _settle_breaker(self, used_database: bool) -> None:
        """A request that talked to the database proves it is up; one that never did proves nothing."""
        if used_database:
            self.breaker.record_success()
        else:
            self.breaker.release()


CLEANUP_TIMEOUT = 1.0  # a rollback on a connection that stopped answering must not hang the request


async def _quiet_rollback(session: AsyncSession) -> None:
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await session.rollback()
    except Exception as exc:  # the connection may be gone; the original error matters more
        log.debug("db.rollback_failed", error=type(exc).__name__)


async def _quiet_close(session: AsyncSession) -> None:
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT):
            await session.close()
    except Exception as exc:
        log.debug("db.close_failed", error=type(exc).__name__)
