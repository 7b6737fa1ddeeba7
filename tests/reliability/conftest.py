"""Fault tests build their own apps (settings pointing at a proxy, a missing database…) and clean up after."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from fastapi import FastAPI

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.settings import Settings
from tests.support import leaks
from tests.support.stack import Stack, truncate_all


@dataclass
class Running:
    app: FastAPI
    client: httpx.AsyncClient


StartApp = Callable[[Settings], Awaitable[Running]]


@pytest.fixture
async def start_app(stack: Stack, mail: MemoryEmailBackend) -> AsyncIterator[StartApp]:
    """`await start_app(settings)` → a created app with its lifespan running and a client on it.

    Everything started is stopped at teardown (client, then lifespan), and the worker's database is
    emptied, as the root `app` fixture does.
    """
    async with contextlib.AsyncExitStack() as exits:

        async def start(settings: Settings) -> Running:
            application = create_app(settings, email_backend=mail)
            # Run the lifespan ourselves (see PITFALLS.md on asgi_lifespan's shared state).
            await exits.enter_async_context(application.router.lifespan_context(application))
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
            client = await exits.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30)
            )
            client.event_hooks["response"] = [leaks.register_response_tokens]
            return Running(app=application, client=client)

        yield start
    await truncate_all(stack.database_url)


def with_netloc(url: str, host: str, port: int) -> str:
    """`url` with its host and port replaced (scheme, credentials, path and query kept)."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        await asyncio.sleep(0.05)


def log_events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """structlog events (routed through stdlib logging) named `name` that this test logged."""
    found = []
    for record in caplog.records:
        if isinstance(record.msg, dict) and record.msg.get("event") == name:
            found.append(record.msg)
    return found
