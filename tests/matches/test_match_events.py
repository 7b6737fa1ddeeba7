"""`match.new` when a mutual like makes a match, `match.removed` on unmatch and on a block: to both
people, each seeing the other's card, never to anyone else, never for a write that did not commit."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit.errors import AppError
from kindred.matches.service import MatchService
from kindred.models import Match
from tests.chat.helpers import listening, matched_pair, principal_of, send
from tests.discovery.conftest import MakePerson
from tests.swipes.helpers import pair, swipe


async def test_a_mutual_like_announces_the_match_to_both_with_the_other_persons_card(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    stranger = await person(gender="man", interested_in=["woman"])
    async with listening(app, man, woman, stranger) as events:
        assert (await swipe(client, woman, man)).status_code == 201
        assert await events.drain(man) == [] and await events.drain(woman) == []  # a one-sided like: nothing
        response = await swipe(client, man, woman)
        made = response.json()["match"]
        [for_him] = await events.drain(man)
        [for_her] = await events.drain(woman)
        assert await events.drain(stranger) == []
    assert for_him["type"] == for_her["type"] == "match.new"
    assert for_him["data"]["match"] == made  # exactly what the liker's response said
    assert for_her["data"]["match"]["id"] == made["id"] and for_her["data"]["match"]["user"]["id"] == man.id
    assert for_her["data"]["match"]["last_message"] is None and for_her["data"]["match"]["unread_count"] == 0
    listed = (await client.get("/api/v1/matches", headers=woman.headers)).json()["items"]
    assert listed == [for_her["data"]["match"]]  # as she will see it in her list


async def test_a_like_on_an_existing_match_announces_nothing(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    await swipe(client, woman, man)
    await swipe(client, man, woman)
    async with listening(app, man, woman) as events:
        assert (await swipe(client, man, woman)).status_code == 409
        assert await events.drain(man) == [] and await events.drain(woman) == []


async def test_unmatching_tells_both_and_nobody_else(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    stranger = await person(gender="man", interested_in=["woman"])
    async with listening(app, man, woman, stranger) as events:
        assert (await client.delete(f"/api/v1/matches/{match.id}", headers=stranger.headers)).status_code == 404
        assert (await client.delete(f"/api/v1/matches/{match.id}", headers=man.headers)).status_code == 204
        expected = [{"type": "match.removed", "data": {"match_id": str(match.id)}}]
        assert await events.drain(man) == expected and await events.drain(woman) == expected
        assert await events.drain(stranger) == []
        assert (await client.delete(f"/api/v1/matches/{match.id}", headers=woman.headers)).status_code == 404
        assert await events.drain(man) == [] and await events.drain(woman) == []


@pytest.mark.parametrize("blocker", ["man", "woman"])
async def test_blocking_a_match_tells_both(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, blocker: str
) -> None:
    man, woman, match = await matched_pair(app, person)
    by, of = (man, woman) if blocker == "man" else (woman, man)
    async with listening(app, man, woman) as events:
        assert (await client.post("/api/v1/blocks", json={"user_id": of.id}, headers=by.headers)).status_code == 201
        expected = [{"type": "match.removed", "data": {"match_id": str(match.id)}}]
        assert await events.drain(man) == expected and await events.drain(woman) == expected
        # Blocking again changes nothing and says nothing.
        assert (await client.post("/api/v1/blocks", json={"user_id": of.id}, headers=by.headers)).status_code == 201
        assert await events.drain(man) == [] and await events.drain(woman) == []


async def test_a_block_ends_the_match_for_good_even_after_an_unblock(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    assert (await client.post("/api/v1/blocks", json={"user_id": woman.id}, headers=man.headers)).status_code == 201
    assert (await client.delete(f"/api/v1/blocks/{woman.id}", headers=man.headers)).status_code == 204
    for who in (man, woman):
        listed = (await client.get("/api/v1/matches", headers=who.headers)).json()["items"]
        assert listed == []
        sent = await send(client, who, match.id, "still there?")
        assert sent.status_code == 403 and sent.json()["error"]["code"] == "conversation_closed"
    async with app.state.db.sessionmaker() as session:
        ended = await session.get(Match, match.id)
        assert ended is not None and ended.unmatched_at is not None and ended.unmatched_by == uuid.UUID(man.id)


async def test_blocking_someone_without_a_match_announces_nothing(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    async with listening(app, man, woman) as events:
        assert (await client.post("/api/v1/blocks", json={"user_id": woman.id}, headers=man.headers)).status_code == 201
        assert await events.drain(man) == [] and await events.drain(woman) == []


async def test_blocking_after_an_unmatch_announces_nothing(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    assert (await client.delete(f"/api/v1/matches/{match.id}", headers=man.headers)).status_code == 204
    async with listening(app, man, woman) as events:
        assert (await client.post("/api/v1/blocks", json={"user_id": woman.id}, headers=man.headers)).status_code == 201
        assert await events.drain(man) == [] and await events.drain(woman) == []


async def test_an_unmatch_that_rolls_back_announces_nothing(person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    async with listening(app, man, woman) as events:
        with pytest.raises(AppError):
            async with app.state.db.unit_of_work() as session:
                await MatchService(session).unmatch(principal_of(man), match.id)
                assert await events.drain(woman) == []  # not committed yet: nobody told
                raise AppError("a later step failed")
        assert await events.drain(man) == [] and await events.drain(woman) == []
    async with app.state.db.sessionmaker() as session:
        stored = await session.get(Match, match.id)
        assert stored is not None and stored.unmatched_at is None
