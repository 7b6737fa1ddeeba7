"""Body-size cap (413 before the body is read whole) and per-route timeouts (503 `timeout`)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, text

from kindred.kit.deps import SessionDep
from kindred.middleware.limits import AUTH_TIMEOUT, MAX_BODY_BYTES, UPLOAD_TIMEOUT, route_timeout
from kindred.models import AuditEntry
from tests.support.assertions import assert_error


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"request_timeout": 0.3}


async def test_a_json_body_over_1_mib_is_refused_from_its_content_length(client: httpx.AsyncClient) -> None:
    body = json.dumps({"email": "a@example.com", "password": "x" * MAX_BODY_BYTES}).encode()
    response = await client.post("/api/v1/auth/login", content=body, headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")


async def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_the_cap(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        yield b'{"email": "a@example.com", "password": "'
        for _ in range(64):  # up to 4 MiB if nobody stops us
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b'"}'

    response = await client.post("/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"})
    assert_error(response, 413, "payload_too_large")
    assert sent < 2 * MAX_BODY_BYTES, "the whole body was read"


async def test_a_body_under_the_cap_reaches_validation(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "a@example.com", "extra": "x" * 1000})
    assert response.status_code == 422


async def test_a_slow_request_gets_503_timeout_and_its_writes_roll_back(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    marker = uuid.uuid4()

    async def slow(session: SessionDep) -> dict[str, str]:
        session.add(AuditEntry(id=marker, action="test.slow", target_type="test"))
        await session.flush()
        await asyncio.sleep(5)
        return {"done": "never"}

    app.add_api_route("/api/v1/slow-for-test", slow, methods=["POST"])
    response = await client.post("/api/v1/slow-for-test")
    assert_error(response, 503, "timeout")
    assert response.headers["retry-after"] == "1"
    async with app.state.db.sessionmaker() as session:
        assert await session.scalar(select(AuditEntry).where(AuditEntry.id == marker)) is None
        assert (await session.execute(text("SELECT 1"))).scalar() == 1  # the pool is healthy afterwards


async def test_a_fast_request_is_untouched(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).status_code == 200


def test_auth_and_upload_routes_have_their_own_timeouts() -> None:
    timeout_for = route_timeout(30.0)
    assert timeout_for({"path": "/api/v1/auth/login", "method": "POST"}) == AUTH_TIMEOUT == 15.0
    assert timeout_for({"path": "/api/v1/me/photos", "method": "POST"}) == UPLOAD_TIMEOUT == 120.0
    assert timeout_for({"path": "/api/v1/me/photos", "method": "GET"}) == 30.0
    assert timeout_for({"path": "/api/v1/discover", "method": "GET"}) == 30.0
