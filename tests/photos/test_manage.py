"""PUT /me/photos/order and DELETE /me/photos/{id}: only the caller's photos, files removed after commit."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.photos.service import photos_for
from tests.photos import images
from tests.photos.conftest import stored_files, upload_ok
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account


async def _three_photos(client: httpx.AsyncClient, account: Account) -> list[str]:
    return [(await upload_ok(client, account, images.small_jpeg((i * 60, 10, 10))))["id"] for i in range(3)]


async def _positions(app: FastAPI, account: Account) -> list[tuple[str, int]]:
    async with app.state.db.unit_of_work() as session:
        photos = await photos_for(session, uuid.UUID(account.id), now=clock.now())
    return [(str(p.id), p.position) for p in photos]


def _key(url: str) -> str:
    return url.split("?", 1)[0].removeprefix("/media/").split("_", 1)[0]


async def test_reorder_returns_the_photos_in_the_new_order(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    a, b, c = await _three_photos(client, account)
    response = await client.put("/api/v1/me/photos/order", headers=account.headers, json={"photo_ids": [c, a, b]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body, list)
    assert [(p["id"], p["position"]) for p in body] == [(c, 0), (a, 1), (b, 2)]
    assert await _positions(app, account) == [(c, 0), (a, 1), (b, 2)]


async def test_reorder_must_name_exactly_my_photos(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    other = await verified_account(client, mail)
    a, b, c = await _three_photos(client, me)
    foreign = (await upload_ok(client, other, images.small_jpeg()))["id"]
    for ids in ([a, b], [a, b, foreign], [a, b, c, foreign], [a, a, b, c], [a, b, str(uuid.uuid4())], []):
        response = await client.put("/api/v1/me/photos/order", headers=me.headers, json={"photo_ids": ids})
        error = assert_error(response, 422, "validation_error")
        assert error["details"]["fields"][0]["loc"] == ["body", "photo_ids"]
    response = await client.put(
        "/api/v1/me/photos/order", headers=me.headers, json={"photo_ids": [a, b, c], "extra": 1}
    )
    assert_error(response, 422, "validation_error")
    response = await client.put("/api/v1/me/photos/order", headers=me.headers, json={"photo_ids": ["nope"]})
    assert_error(response, 422, "validation_error")


async def test_delete_removes_the_row_the_files_and_compacts_positions(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    account = await verified_account(client, mail)
    photos = [await upload_ok(client, account, images.small_jpeg((i * 60, 10, 10))) for i in range(3)]
    middle = photos[1]
    assert len(stored_files(media_dir)) == 9

    response = await client.delete(f"/api/v1/me/photos/{middle['id']}", headers=account.headers)
    assert response.status_code == 204
    assert response.content == b""
    remaining = stored_files(media_dir)
    assert len(remaining) == 6
    assert not [name for name in remaining if name.startswith(_key(middle["urls"]["large"]))]
    assert await _positions(app, account) == [(photos[0]["id"], 0), (photos[2]["id"], 1)]
    media = await client.get(middle["urls"]["thumb"])
    assert_error(media, 404, "not_found")


async def test_another_user_cannot_delete_my_photo(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, media_dir: Path
) -> None:
    me = await verified_account(client, mail)
    stranger = await verified_account(client, mail)
    photo = await upload_ok(client, me, images.small_jpeg())
    response = await client.delete(f"/api/v1/me/photos/{photo['id']}", headers=stranger.headers)
    assert_error(response, 404, "photo_not_found")
    assert len(stored_files(media_dir)) == 3
    assert (await client.get(photo["urls"]["large"])).status_code == 200


async def test_deleting_an_unknown_photo_is_404(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.delete(f"/api/v1/me/photos/{uuid.uuid4()}", headers=account.headers)
    assert_error(response, 404, "photo_not_found")


async def test_a_freed_slot_can_be_used_again(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    ids = [(await upload_ok(client, account, images.small_jpeg()))["id"] for _ in range(6)]
    assert (await client.delete(f"/api/v1/me/photos/{ids[0]}", headers=account.headers)).status_code == 204
    photo = await upload_ok(client, account, images.small_jpeg())
    assert photo["position"] == 5
