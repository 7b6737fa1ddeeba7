"""Idempotency-Key on the POSTs that create something: replay, mismatch, scoping, locks, expiry, failures."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.errors import DatabaseUnavailable, RateLimited
from kindred.middleware.idempotency import KEY_TTL, LOCK_TIMEOUT, IdempotencyStore, StoredResponse
from kindred.models import Block, Boost, IdempotencyKey, Photo, Report, Swipe
from kindred.swipes.service import SwipeService
from tests.discovery.conftest import MakePerson, Person, person, uid
from tests.photos import images
from tests.support.assertions import assert_error
from tests.support.factories import verified_account
from tests.swipes.helpers import SWIPES, count_rows, pair, set_tier

__all__ = ["person"]  # the fixture, for this module's tests

KEY = "Idempotency-Key"


def keyed(account: Person, key: str) -> dict[str, str]:
    return {**account.headers, KEY: key}


def new_key() -> str:
    return str(uuid.uuid4())


async def keyed_swipe(client: httpx.AsyncClient, who: Person, target: Person, key: str, action: str = "like"):
    return await client.post(SWIPES, json={"target_id": target.id, "action": action}, headers=keyed(who, key))


async def key_rows(app: FastAPI, account: Person) -> list[IdempotencyKey]:
    async with app.state.db.sessionmaker() as session:
        return list(await session.scalars(select(IdempotencyKey).where(IdempotencyKey.user_id == uid(account))))


async def set_key_row(app: FastAPI, account: Person, key: str, **values: Any) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.user_id == uid(account), IdempotencyKey.key == key)
            .values(**values)
        )


def assert_replay_of(first: httpx.Response, retry: httpx.Response) -> None:
    assert retry.status_code == first.status_code
    assert retry.content == first.content
    assert retry.headers["content-type"] == first.headers["content-type"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    # The replay is a request of its own: its own request id in the header.
    assert retry.headers["x-request-id"] != first.headers["x-request-id"]


# ---------------------------------------------------------------------------------------------- replay


async def test_a_retried_swipe_returns_the_first_response_and_swipes_once(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    first = await keyed_swipe(client, man, woman, key)
    assert first.status_code == 201, first.text
    retry = await keyed_swipe(client, man, woman, key)
    assert_replay_of(first, retry)  # not 409 already_swiped
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1
    [row] = await key_rows(app, man)
    assert (row.key, row.state, row.response_status) == (key, "completed", 201)


async def test_json_key_order_and_spacing_are_the_same_request(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    headers = {**keyed(man, key), "Content-Type": "application/json"}
    first = await client.post(SWIPES, content=json.dumps({"target_id": woman.id, "action": "like"}), headers=headers)
    assert first.status_code == 201, first.text
    reordered = json.dumps({"action": "like", "target_id": woman.id}, indent=2)
    assert_replay_of(first, await client.post(SWIPES, content=reordered, headers=headers))
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


async def test_a_stored_4xx_is_replayed_too(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man = await person(gender="man", interested_in=["woman"])
    key = new_key()
    body = {"target_id": str(uuid.uuid4()), "action": "like"}
    first = await client.post(SWIPES, json=body, headers=keyed(man, key))
    assert_error(first, 404, "user_not_found")
    retry = await client.post(SWIPES, json=body, headers=keyed(man, key))
    assert_replay_of(first, retry)
    [row] = await key_rows(app, man)
    assert row.response_status == 404


async def test_without_a_key_nothing_is_recorded_and_a_repeat_is_409(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    body = {"target_id": woman.id, "action": "like"}
    assert (await client.post(SWIPES, json=body, headers=man.headers)).status_code == 201
    assert_error(await client.post(SWIPES, json=body, headers=man.headers), 409, "already_swiped")
    assert await key_rows(app, man) == []


async def test_the_same_key_with_a_different_body_is_422_and_does_nothing(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    other = await person(gender="woman", interested_in=["man"])
    key = new_key()
    assert (await keyed_swipe(client, man, woman, key)).status_code == 201
    assert_error(await keyed_swipe(client, man, other, key), 422, "idempotency_key_reused")
    assert_error(await keyed_swipe(client, man, woman, key, "pass"), 422, "idempotency_key_reused")
    assert await count_rows(app, Swipe, Swipe.target_id == uid(other)) == 0
    # The first response stays what a retry of the first request gets.
    assert (await keyed_swipe(client, man, woman, key)).headers["idempotent-replayed"] == "true"


async def test_the_same_key_on_another_route_is_422(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    assert (await keyed_swipe(client, man, woman, key)).status_code == 201
    response = await client.post("/api/v1/blocks", json={"user_id": woman.id}, headers=keyed(man, key))
    assert_error(response, 422, "idempotency_key_reused")
    assert await count_rows(app, Block, Block.blocker_id == uid(man)) == 0


# ---------------------------------------------------------------------------------------------- scoping


async def test_keys_are_per_user_and_nobody_gets_another_users_response(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    alice, bob, target = [await verified_account(client, mail) for _ in range(3)]
    key = "shared-key-1"
    body = {"user_id": target.id, "reason": "spam"}
    by_alice = await client.post("/api/v1/reports", json=body, headers=keyed(alice, key))
    by_bob = await client.post("/api/v1/reports", json=body, headers=keyed(bob, key))
    assert by_alice.status_code == by_bob.status_code == 201, (by_alice.text, by_bob.text)
    assert "idempotent-replayed" not in by_bob.headers
    assert by_alice.json()["id"] != by_bob.json()["id"]
    async with app.state.db.sessionmaker() as session:
        reporters = set(await session.scalars(select(Report.reporter_id).where(Report.reported_id == uid(target))))
    assert reporters == {uid(alice), uid(bob)}
    # Each retry replays the caller's own report, never the other's.
    assert (await client.post("/api/v1/reports", json=body, headers=keyed(bob, key))).json() == by_bob.json()
    assert (await client.post("/api/v1/reports", json=body, headers=keyed(alice, key))).json() == by_alice.json()
    assert await count_rows(app, Report, Report.reported_id == uid(target)) == 2


# ---------------------------------------------------------------------------------------------- the key


@pytest.mark.parametrize("bad_key", ["", "has space", "x" * 256, "tab\tinside"])
async def test_an_invalid_key_is_422_on_the_header(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, bad_key: str
) -> None:
    man, woman = await pair(person)
    error = assert_error(await keyed_swipe(client, man, woman, bad_key), 422, "validation_error")
    assert ["header", KEY] in [field["loc"] for field in error["details"]["fields"]]
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 0
    assert await key_rows(app, man) == []


async def test_a_key_of_255_visible_characters_is_accepted(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    key = "!~" + "k" * 253
    first = await keyed_swipe(client, man, woman, key)
    assert first.status_code == 201, first.text
    assert_replay_of(first, await keyed_swipe(client, man, woman, key))


# ---------------------------------------------------------------------------------------------- in progress


async def test_a_request_still_in_progress_is_409_with_retry_after(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    assert (await keyed_swipe(client, man, woman, key)).status_code == 201
    # As if the first request were still running: claimed just now, no response yet.
    await set_key_row(app, man, key, state="in_progress", locked_at=clock.now(), response_status=None)
    response = await keyed_swipe(client, man, woman, key)
    assert_error(response, 409, "idempotency_in_progress")
    assert int(response.headers["retry-after"]) >= 1
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


async def test_a_stale_claim_of_a_crashed_worker_is_taken_over(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    first = await keyed_swipe(client, man, woman, key)
    assert first.status_code == 201
    [before] = await key_rows(app, man)
    # As if the worker had claimed the key and died before its transaction committed.
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(delete(Swipe).where(Swipe.swiper_id == uid(man)))
    stale = clock.now() - LOCK_TIMEOUT - LOCK_TIMEOUT
    await set_key_row(app, man, key, state="in_progress", locked_at=stale, response_status=None, response_body=None)

    second = await keyed_swipe(client, man, woman, key)
    assert second.status_code == 201, second.text
    assert "idempotent-replayed" not in second.headers
    assert second.json()["swipe_id"] != first.json()["swipe_id"]
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1
    [after] = await key_rows(app, man)
    assert after.state == "completed" and after.lock_token != before.lock_token
    assert after.created_at == before.created_at  # the key's 24 h still count from its first use
    assert_replay_of(second, await keyed_swipe(client, man, woman, key))


async def test_a_request_that_lost_its_claim_cannot_overwrite_the_new_owner(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    store = IdempotencyStore(app.state.db)
    now = clock.now()
    slow = await store.claim(uid(account), "k", "f" * 64, now - LOCK_TIMEOUT - LOCK_TIMEOUT)
    taker = await store.claim(uid(account), "k", "f" * 64, now)
    assert isinstance(slow, uuid.UUID) and isinstance(taker, uuid.UUID) and slow != taker
    assert not await store.complete(uid(account), "k", slow, StoredResponse(201, "application/json", b"{}"), now)
    await store.release(uid(account), "k", slow)  # no effect either
    [row] = await key_rows(app, account)
    assert row.lock_token == taker and row.state == "in_progress"


# ---------------------------------------------------------------------------------------------- failures


@pytest.mark.parametrize(
    ("failure", "status"), [(RuntimeError("boom"), 500), (DatabaseUnavailable(), 503), (RateLimited(), 429)]
)
async def test_a_transient_failure_is_not_stored_and_a_retry_runs_again(
    app: FastAPI, person: MakePerson, monkeypatch: pytest.MonkeyPatch, failure: Exception, status: int
) -> None:
    man, woman = await pair(person)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        original = SwipeService.swipe

        async def failing(self: SwipeService, *args: Any, **kwargs: Any) -> Any:
            raise failure

        monkeypatch.setattr(SwipeService, "swipe", failing)
        key = new_key()
        failed = await keyed_swipe(client, man, woman, key)
        assert failed.status_code == status, failed.text
        assert await key_rows(app, man) == []

        monkeypatch.setattr(SwipeService, "swipe", original)
        retry = await keyed_swipe(client, man, woman, key)
        assert retry.status_code == 201, retry.text
        assert "idempotent-replayed" not in retry.headers
        assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


async def test_an_expired_key_is_treated_as_new(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    other = await person(gender="woman", interested_in=["man"])
    key = new_key()
    assert (await keyed_swipe(client, man, woman, key)).status_code == 201
    expired = clock.now() - KEY_TTL - LOCK_TIMEOUT
    await set_key_row(app, man, key, created_at=expired, locked_at=expired)

    response = await keyed_swipe(client, man, other, key)  # a different body: no 422 once expired
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 2
    [row] = await key_rows(app, man)
    assert row.created_at > expired + KEY_TTL


# ---------------------------------------------------------------------------------------------- every route


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    return {"storage_path": tmp_path / "media"}


async def test_a_retried_photo_upload_returns_the_same_photo_and_stores_one(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, tmp_path: Path
) -> None:
    account = await verified_account(client, mail)
    key = new_key()
    data = images.small_jpeg()

    async def upload(content: bytes) -> httpx.Response:
        # httpx draws a new multipart boundary for every request, as a retrying client may.
        files = {"file": ("photo.jpg", content, "image/jpeg")}
        return await client.post("/api/v1/me/photos", headers=keyed(account, key), files=files)

    first = await upload(data)
    assert first.status_code == 201, first.text
    assert_replay_of(first, await upload(data))
    assert await count_rows(app, Photo, Photo.user_id == uid(account)) == 1
    assert len(list((tmp_path / "media").iterdir())) == 3  # one photo's three sizes
    assert_error(await upload(images.small_jpeg((200, 10, 10))), 422, "idempotency_key_reused")
    assert await count_rows(app, Photo, Photo.user_id == uid(account)) == 1


Send = Callable[[httpx.AsyncClient, Person, Person, str], Awaitable[httpx.Response]]


async def _block(client: httpx.AsyncClient, who: Person, other: Person, key: str) -> httpx.Response:
    return await client.post("/api/v1/blocks", json={"user_id": other.id}, headers=keyed(who, key))


async def _report(client: httpx.AsyncClient, who: Person, other: Person, key: str) -> httpx.Response:
    body = {"user_id": other.id, "reason": "fake_profile", "details": "stock photos"}
    return await client.post("/api/v1/reports", json=body, headers=keyed(who, key))


@pytest.mark.parametrize(("send", "model"), [(_block, Block), (_report, Report)])
async def test_blocks_and_reports_replay_their_first_response(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, send: Send, model: Any
) -> None:
    man, woman = await pair(person)
    key = new_key()
    first = await send(client, man, woman, key)
    assert first.status_code == 201, first.text
    assert_replay_of(first, await send(client, man, woman, key))
    owner = Block.blocker_id if model is Block else Report.reporter_id
    assert await count_rows(app, model, owner == uid(man)) == 1


async def test_a_retried_boost_is_replayed_not_409_boost_active(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    await set_tier(app, man, "premium")
    key = new_key()
    first = await client.post("/api/v1/boosts", headers=keyed(man, key))
    assert first.status_code == 201, first.text
    assert_replay_of(first, await client.post("/api/v1/boosts", headers=keyed(man, key)))
    assert_error(await client.post("/api/v1/boosts", headers=keyed(man, new_key())), 409, "boost_active")
    assert await count_rows(app, Boost, Boost.user_id == uid(man)) == 1


# ---------------------------------------------------------------------------------------------- concurrency


async def test_overlapping_retries_run_once_and_the_rest_are_409(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    man, woman = await pair(person)
    original = SwipeService.swipe

    async def slow(self: SwipeService, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0.3)  # the first request is still running when the retries arrive
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(SwipeService, "swipe", slow)
    key = new_key()
    responses = await asyncio.gather(*(keyed_swipe(client, man, woman, key) for _ in range(5)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "idempotency_in_progress")
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


@pytest.mark.postgres_only
async def test_concurrent_identical_requests_on_postgresql_have_exactly_one_effect(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    key = new_key()
    responses = await asyncio.gather(*(keyed_swipe(client, man, woman, key) for _ in range(8)))
    executed = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(executed) == 1, [(r.status_code, r.text) for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "idempotency_in_progress")
        else:
            assert (response.status_code, response.content) == (201, executed[0].content)
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


# ---------------------------------------------------------------------------------------------- contract


CREATING_POSTS = ["/api/v1/swipes", "/api/v1/boosts", "/api/v1/me/photos", "/api/v1/blocks", "/api/v1/reports"]


@pytest.mark.parametrize("path", CREATING_POSTS)
async def test_the_openapi_document_declares_the_key_and_its_errors(app: FastAPI, path: str) -> None:
    operation = app.openapi()["paths"][path]["post"]
    [header] = [p for p in operation["parameters"] if p["in"] == "header" and p["name"] == KEY]
    assert header["required"] is False
    assert "idempotency_in_progress" in operation["responses"]["409"]["description"]
    assert "idempotency_key_reused" in operation["responses"]["422"]["description"]


async def test_a_route_without_the_dependency_ignores_the_key(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    for _ in range(2):
        response = await client.get("/api/v1/me", headers=keyed(account, "k"))
        assert response.status_code == 200 and "idempotent-replayed" not in response.headers
    assert await key_rows(app, account) == []
