"""Dependency aliases for resources the app's lifespan owns (so tests can swap them).

Dependencies are `async def` even when they do no I/O: FastAPI runs plain `def` dependencies in a
thread pool, a thread hop per dependency per request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import BackgroundTasks, Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.kit.cache import Cache
from kindred.kit.outbox import Outbox
from kindred.settings import Settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.db.unit_of_work() as session:
        yield session


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_cache(request: Request) -> Cache:
    return request.app.state.cache


async def get_outbox(request: Request, background: BackgroundTasks) -> Outbox:
    """Emails queued here go out after the response, i.e. after the transaction committed."""
    outbox = Outbox(request.app.state.mailer)
    background.add_task(outbox.flush)
    return outbox


def request_id(request: Request) -> str | None:
    return request.scope.get("kindred", {}).get("request_id")


# scope="function": commit happens before the response is sent, never after (PITFALLS.md).
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CacheDep = Annotated[Cache, Depends(get_cache)]
OutboxDep = Annotated[Outbox, Depends(get_outbox)]
