"""The request's transaction commits before the response is sent, and a failed write leaves nothing."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.kit.email import MemoryEmailBackend
from kindred.models import User
from tests.support.factories import registration


async def _users(app: FastAPI) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


async def test_a_failing_commit_turns_into_503_not_a_2xx(
    client: httpx.AsyncClient, app: FastAPI, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_commit(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    monkeypatch.setattr(AsyncSession, "commit", failing_commit)
    response = await client.post("/api/v1/auth/register", json=registration())
    monkeypatch.undo()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert response.headers["retry-after"]
    assert await _users(app) == 0
    assert mail.outbox == []  # emails go out only after a successful commit


async def test_a_successful_write_is_visible_as_soon_as_the_response_arrives(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    response = await client.post("/api/v1/auth/register", json=registration())
    assert response.status_code == 202
    assert await _users(app) == 1
