"""Cards' photo lists are cached (one cache round trip per page) and never served stale after a change."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from tests.discovery.conftest import MakePerson, Person, person
from tests.matches.test_chat_fields import counting_queries
from tests.photos.conftest import upload_ok
from tests.photos.images import png, small_jpeg, webp

__all__ = ["person"]
NEAR = (52.53, 13.41)


async def _card_photos(client: httpx.AsyncClient, viewer: Person, other_id: str) -> list[str]:
    response = await client.get(f"/api/v1/users/{other_id}", headers=viewer.headers)
    assert response.status_code == 200, response.text
    return [photo["id"] for photo in response.json()["photos"]]


async def test_a_second_read_takes_the_photos_from_the_cache(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("kindred.photos.service._STALE_TTL", 0.2)
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR)
    photo = await upload_ok(client, other, small_jpeg())
    await asyncio.sleep(0.3)  # the upload's tombstone has expired: the next read may cache again
    assert await _card_photos(client, viewer, other.id) == [photo["id"]]  # loads and caches
    hits_before = app.state.cache.stats()["hits"]
    with counting_queries(app) as statements:
        assert await _card_photos(client, viewer, other.id) == [photo["id"]]
    assert not [s for s in statements if "FROM photos" in s], statements
    assert app.state.cache.stats()["hits"] > hits_before


async def test_uploads_deletes_and_reorders_show_at_once(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR)
    first = await upload_ok(client, other, small_jpeg())
    assert await _card_photos(client, viewer, other.id) == [first["id"]]  # cached now
    second = await upload_ok(client, other, png())
    assert await _card_photos(client, viewer, other.id) == [first["id"], second["id"]]
    order = {"photo_ids": [second["id"], first["id"]]}
    assert (await client.put("/api/v1/me/photos/order", json=order, headers=other.headers)).status_code == 200
    assert await _card_photos(client, viewer, other.id) == [second["id"], first["id"]]
    assert (await client.delete(f"/api/v1/me/photos/{second['id']}", headers=other.headers)).status_code == 204
    assert await _card_photos(client, viewer, other.id) == [first["id"]]
    third = await upload_ok(client, other, webp())
    assert await _card_photos(client, viewer, other.id) == [first["id"], third["id"]]


async def test_signed_urls_are_made_per_request_not_cached(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR)
    await upload_ok(client, other, small_jpeg())
    await _card_photos(client, viewer, other.id)
    response = await client.get(f"/api/v1/users/{other.id}", headers=viewer.headers)
    [photo] = response.json()["photos"]
    assert {"thumb", "medium", "large"} == set(photo["urls"])
    assert all("sig=" in url and "exp=" in url for url in photo["urls"].values())
    media = await client.get(photo["urls"]["thumb"])
    assert media.status_code == 200 and media.headers["content-type"] == "image/webp"
