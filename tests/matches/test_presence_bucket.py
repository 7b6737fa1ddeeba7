"""`last_active_bucket` on Cards: shown to matches only, coarse, and never for someone who hid it."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from kindred.kit import clock
from kindred.models import Profile, User
from kindred.realtime.presence import presence_key
from tests.chat.helpers import matched_pair
from tests.discovery.conftest import MakePerson, Person

MATCHES = "/api/v1/matches"


async def _last_active(app: FastAPI, who: Person, ago: timedelta) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uuid.UUID(who.id)).values(last_active_at=clock.now() - ago))


async def _bucket_seen_by(client: httpx.AsyncClient, viewer: Person) -> str | None:
    [item] = (await client.get(MATCHES, headers=viewer.headers)).json()["items"]
    return item["user"]["last_active_bucket"]


@pytest.mark.parametrize(
    ("ago", "bucket"),
    [(timedelta(hours=3), "today"), (timedelta(days=3), "this_week"), (timedelta(days=30), "earlier")],
)
async def test_a_match_sees_the_others_coarse_bucket(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson, ago: timedelta, bucket: str
) -> None:
    man, woman, _ = await matched_pair(app, person)
    await _last_active(app, woman, ago)
    assert await _bucket_seen_by(client, man) == bucket


async def test_an_open_socket_anywhere_shows_online(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    man, woman, _ = await matched_pair(app, person)
    await app.state.cache.set(presence_key(woman.id), "1", ttl=60)
    assert await _bucket_seen_by(client, man) == "online"


async def test_hidden_presence_shows_nothing(app: FastAPI, client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman, _ = await matched_pair(app, person)
    await app.state.cache.set(presence_key(woman.id), "1", ttl=60)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(Profile).where(Profile.user_id == uuid.UUID(woman.id)).values(hide_presence=True))
    assert await _bucket_seen_by(client, man) is None


async def test_cards_outside_matches_carry_no_bucket(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    woman = await person(gender="woman", interested_in=["man"], at=(52.53, 13.41))
    await app.state.cache.set(presence_key(woman.id), "1", ttl=60)
    [card] = (await client.get("/api/v1/discover", headers=man.headers)).json()["items"]
    assert card["id"] == woman.id and card["last_active_bucket"] is None
    assert (await client.get(f"/api/v1/users/{woman.id}", headers=man.headers)).json()["last_active_bucket"] is None
