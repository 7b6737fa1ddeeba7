"""POST/DELETE/GET /blocks: idempotent, owner-scoped, paginated; helpers other domains filter with."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit.email import MemoryEmailBackend
from kindred.models import AccountStatus, User
from kindred.safety.repository import not_blocked_either_way
from kindred.safety.service import blocked_either_way
from tests.safety.helpers import audit_rows, block_count, set_user
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account


async def _block(client: httpx.AsyncClient, me: Account, other: Account) -> httpx.Response:
    return await client.post("/api/v1/blocks", headers=me.headers, json={"user_id": other.id})


async def test_block_returns_201_with_user_id_and_created_at(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    response = await _block(client, me, other)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user_id", "created_at"}
    assert body["user_id"] == other.id
    assert body["created_at"].endswith("Z") or body["created_at"].endswith("+00:00")
    assert await block_count(app, me, other) == 1


async def test_blocking_twice_is_201_again_without_a_second_row(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    first = await _block(client, me, other)
    second = await _block(client, me, other)
    assert second.status_code == 201, second.text
    assert second.json() == first.json()
    assert await block_count(app, me, other) == 1
    assert len(await audit_rows(app, "safety.block")) == 1


async def test_blocking_yourself_is_422(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    error = assert_error(await _block(client, me, me), 422, "validation_error")
    assert error["details"]["fields"][0]["loc"] == ["body", "user_id"]


async def test_blocking_an_unknown_user_is_404_user_not_found(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me = await verified_account(client, mail)
    response = await client.post("/api/v1/blocks", headers=me.headers, json={"user_id": str(uuid.uuid4())})
    assert_error(response, 404, "user_not_found")


async def test_blocking_a_deleted_user_is_404_user_not_found(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    await set_user(app, other, status=AccountStatus.deleted.value)
    assert_error(await _block(client, me, other), 404, "user_not_found")
    assert await block_count(app, me, other) == 0


async def test_block_body_is_strict(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    for body in ({"user_id": other.id, "extra": 1}, {"user_id": "nope"}, {}, {"user_id": 5}):
        response = await client.post("/api/v1/blocks", headers=me.headers, json=body)
        assert_error(response, 422, "validation_error")


async def test_blocks_require_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/blocks"), 401, "not_authenticated")
    response = await client.post("/api/v1/blocks", json={"user_id": str(uuid.uuid4())})
    assert_error(response, 401, "not_authenticated")


async def test_unblock_removes_the_block_with_204(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    await _block(client, me, other)
    response = await client.delete(f"/api/v1/blocks/{other.id}", headers=me.headers)
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert await block_count(app, me, other) == 0
    [row] = await audit_rows(app, "safety.unblock")
    assert (str(row.actor_id), row.target_id) == (me.id, other.id)


async def test_unblocking_someone_not_blocked_is_404_not_found(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    assert_error(await client.delete(f"/api/v1/blocks/{other.id}", headers=me.headers), 404, "not_found")


async def test_another_user_cannot_remove_my_block(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other, stranger = (
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
    )
    await _block(client, me, other)
    for caller in (stranger, other):
        response = await client.delete(f"/api/v1/blocks/{other.id}", headers=caller.headers)
        assert_error(response, 404, "not_found")
    assert await block_count(app, me, other) == 1


async def test_list_blocks_shows_my_blocks_newest_first(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    first = await verified_account(client, mail, display_name="First")
    second = await verified_account(client, mail, display_name="Second")
    await _block(client, me, first)
    await _block(client, me, second)
    response = await client.get("/api/v1/blocks", headers=me.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_cursor"] is None
    assert [(i["user_id"], i["display_name"]) for i in body["items"]] == [(second.id, "Second"), (first.id, "First")]
    assert all(set(i) == {"user_id", "display_name", "created_at"} for i in body["items"])


async def test_list_blocks_never_shows_other_peoples_blocks(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other, third = (
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
    )
    await _block(client, other, third)
    await _block(client, other, me)
    response = await client.get("/api/v1/blocks", headers=me.headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"items": [], "next_cursor": None}


async def test_list_blocks_is_cursor_paginated(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    others = [await verified_account(client, mail) for _ in range(5)]
    for other in others:
        await _block(client, me, other)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/v1/blocks", headers=me.headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert len(body["items"]) <= 2
        seen += [i["user_id"] for i in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(o.id for o in others)
    assert len(seen) == len(set(seen))


async def test_list_blocks_rejects_bad_limit_and_cursor(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    for limit in (0, 101):
        response = await client.get("/api/v1/blocks", headers=me.headers, params={"limit": limit})
        assert_error(response, 422, "validation_error")
    response = await client.get("/api/v1/blocks", headers=me.headers, params={"cursor": "garbage!"})
    assert_error(response, 400, "malformed_request")


async def test_blocked_either_way_sees_both_directions(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other, third = (
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
    )
    await _block(client, other, me)
    a, b, c = (uuid.UUID(x.id) for x in (me, other, third))
    async with app.state.db.sessionmaker() as session:
        assert await blocked_either_way(session, a, b)
        assert await blocked_either_way(session, b, a)
        assert not await blocked_either_way(session, a, c)


async def test_not_blocked_either_way_filters_a_query_for_both_sides(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, blocked, blocker, free = (
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
    )
    await _block(client, me, blocked)
    await _block(client, blocker, me)
    ids = [uuid.UUID(x.id) for x in (blocked, blocker, free)]
    async with app.state.db.sessionmaker() as session:
        visible = set(
            await session.scalars(
                select(User.id).where(User.id.in_(ids), not_blocked_either_way(uuid.UUID(me.id), User.id))
            )
        )
    assert visible == {uuid.UUID(free.id)}
