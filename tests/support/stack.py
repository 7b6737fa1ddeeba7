"""The database and Redis a test worker uses: embedded SQLite, or PostgreSQL/Redis from TEST_* URLs."""

from __future__ import annotations

import asyncio
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from kindred.models import Base


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


@dataclass
class Stack:
    database_url: str
    redis_url: str | None
    admin_url: str | None  # PostgreSQL server URL used to create/drop the worker database

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def _asyncpg(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


def build_stack(tmp: Path) -> Stack:
    pg = os.environ.get("TEST_DATABASE_URL")
    redis = os.environ.get("TEST_REDIS_URL") or None
    if pg:
        admin = _asyncpg(pg)
        # The pid keeps two concurrent runs on one server from dropping each other's databases.
        name = re.sub(r"[^a-z0-9_]", "_", f"kindred_test_{worker_id()}_{os.getpid()}".lower())
        url = make_url(admin).set(database=name).render_as_string(hide_password=False)
        return Stack(database_url=url, redis_url=redis, admin_url=admin)
    return Stack(database_url=f"sqlite+aiosqlite:///{tmp / 'kindred-test.db'}", redis_url=redis, admin_url=None)


async def _pg_admin(admin_url: str, sql: str) -> None:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


def create_database(stack: Stack) -> None:
    if stack.admin_url:
        name = make_url(stack.database_url).database
        asyncio.run(_pg_admin(stack.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(_pg_admin(stack.admin_url, f'CREATE DATABASE "{name}"'))
    from kindred.ops.migrate import upgrade

    upgrade(stack.database_url)


def drop_database(stack: Stack) -> None:
    if stack.admin_url:
        name = make_url(stack.database_url).database
        asyncio.run(_pg_admin(stack.admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def truncate_all(engine_url: str) -> None:
    """Empty every table between tests (cheaper than re-migrating; keeps the schema)."""
    engine = create_async_engine(engine_url)
    try:
        async with engine.begin() as conn:
            tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
            if conn.dialect.name == "postgresql":
                await conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE"))
            else:
                for table in tables:
                    await conn.execute(text(f'DELETE FROM "{table}"'))
    finally:
        await engine.dispose()
