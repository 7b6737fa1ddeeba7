"""GET /matches and DELETE /matches/{id}: the caller's live matches only; strangers get 404."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from fastapi import FastAPI

from kindred.kit import clock
from kindred.models import AuditEntry, Block, Match
from tests.discovery.conftest import MakePerson, Person, add_rows, uid
from tests.support.assertions import assert_error
from tests.swipes.helpers import count_rows, pair, swipe

MATCHES = "/api/v1/matches"


async def _match(app: FastAPI, a: Person, b: Person, *, minutes_ago: int = 0) -> Match:
    low, high = sorted((uid(a), uid(b)))
    at = clock.now() - timedelta(minutes=minutes_ago)
    match = Match(user_low=low, user_high=high, created_at=at, last_activity_at=at)
    await add_rows(app, match)
    return match


async def _load(app: FastAPI, match_id: uuid.UUID) -> Match:
    async with app.state.db.sessionmaker() as session:
        match = await session.get(Match, match_id)
        assert match is not None
        return match


async def test_a_match_made_by_likes_is_listed_for_both(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    await swipe(client, woman, man)
    made = (await swipe(client, man, woman)).json()["match"]
    for me, other in ((man, woman), (woman, man)):
        body = (await client.get(MATCHES, headers=me.headers)).json()
        assert [m["id"] for m in body["items"]] == [made["id"]] and body["next_cursor"] is None
        item = body["items"][0]
        assert item["user"]["id"] == other.id and item["last_message"] is None and item["unread_count"] == 0


async def test_matches_are_listed_newest_activity_first_and_paged(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    me = await person(gender="man", interested_in=["woman"])
    others = [await person(gender="woman", interested_in=["man"]) for _ in range(3)]
    made = [await _match(app, me, other, minutes_ago=i) for i, other in enumerate(others)]
    page1 = (await client.get(MATCHES, params={"limit": 2}, headers=me.headers)).json()
    page2 = (await client.get(MATCHES, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=me.headers)).json()
    assert [m["id"] for m in page1["items"] + page2["items"]] == [str(m.id) for m in made]
    assert page2["next_cursor"] is None


async def test_unmatched_and_blocked_matches_are_not_listed(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    me = await person(gender="man", interested_in=["woman"])
    ended, blocked, live = [await person(gender="woman", interested_in=["man"]) for _ in range(3)]
    low, high = sorted((uid(me), uid(ended)))
    await add_rows(
        app,
        Match(user_low=low, user_high=high, unmatched_at=clock.now(), unmatched_by=uid(ended)),
        Block(blocker_id=uid(blocked), blocked_id=uid(me)),
    )
    await _match(app, me, blocked)
    kept = await _match(app, me, live)
    body = (await client.get(MATCHES, headers=me.headers)).json()
    assert [m["id"] for m in body["items"]] == [str(kept.id)]


async def test_other_peoples_matches_are_not_listed(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    stranger = await person(gender="man", interested_in=["woman"])
    await _match(app, man, woman)
    assert (await client.get(MATCHES, headers=stranger.headers)).json()["items"] == []


async def test_a_malformed_cursor_is_400(client: httpx.AsyncClient, person: MakePerson) -> None:
    me = await person(gender="man", interested_in=["woman"])
    assert_error(await client.get(MATCHES, params={"cursor": "nope"}, headers=me.headers), 400, "malformed_request")


async def test_unmatch_is_204_and_ends_the_match(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    match = await _match(app, man, woman)
    response = await client.delete(f"{MATCHES}/{match.id}", headers=woman.headers)
    assert response.status_code == 204 and response.content == b""
    stored = await _load(app, match.id)
    assert stored.unmatched_at is not None and stored.unmatched_by == uid(woman)
    assert (await client.get(MATCHES, headers=man.headers)).json()["items"] == []
    assert (
        await count_rows(app, AuditEntry, AuditEntry.action == "match.removed", AuditEntry.target_id == str(match.id))
        == 1
    )


async def test_unmatching_twice_is_404(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    match = await _match(app, man, woman)
    assert (await client.delete(f"{MATCHES}/{match.id}", headers=man.headers)).status_code == 204
    assert_error(await client.delete(f"{MATCHES}/{match.id}", headers=woman.headers), 404, "match_not_found")


async def test_a_third_person_cannot_delete_my_match(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    stranger = await person(gender="man", interested_in=["woman"])
    match = await _match(app, man, woman)
    assert_error(await client.delete(f"{MATCHES}/{match.id}", headers=stranger.headers), 404, "match_not_found")
    assert (await _load(app, match.id)).unmatched_at is None
    assert [m["id"] for m in (await client.get(MATCHES, headers=man.headers)).json()["items"]] == [str(match.id)]


async def test_unmatching_an_unknown_id_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    me = await person(gender="man", interested_in=["woman"])
    assert_error(await client.delete(f"{MATCHES}/{uuid.uuid4()}", headers=me.headers), 404, "match_not_found")


async def test_matches_need_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(MATCHES), 401, "not_authenticated")
    assert_error(await client.delete(f"{MATCHES}/{uuid.uuid4()}"), 401, "not_authenticated")
