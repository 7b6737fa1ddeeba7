"""The feed ranks a bounded window of the most recently active people at a time (docs/discovery.md).

With DISCOVERY_WINDOW = 3 the windows are small enough to cross in a few pages: every candidate still
appears exactly once, windows come newest first, the boosted are in the first window whatever their
activity, and people who were never active come last.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from kindred.discovery import repository
from kindred.kit import clock
from kindred.kit.pagination import encode_cursor
from kindred.models import Profile, User
from tests.discovery.conftest import MakePerson, Person, uid

DISCOVER = "/api/v1/discover"
NEAR = (52.53, 13.41)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"discovery_window": 3}


async def _set(app: FastAPI, person: Person, **values: object) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uid(person)).values(**values))


async def _boost(app: FastAPI, person: Person) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        until = clock.now() + timedelta(minutes=30)
        await session.execute(update(Profile).where(Profile.user_id == uid(person)).values(boost_until=until))


async def _all_pages(client: httpx.AsyncClient, viewer: Person, limit: int) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    for _ in range(20):
        params: dict[str, object] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(DISCOVER, params=params, headers=viewer.headers)
        assert response.status_code == 200, response.text
        pages.append([card["id"] for card in response.json()["items"]])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return pages
    raise AssertionError("the feed never ended")


async def _people(app: FastAPI, person: MakePerson, hours_ago: list[int | None]) -> list[Person]:
    """One candidate per entry, last active that many hours ago (None: never active)."""
    people = []
    now = clock.now()
    for hours in hours_ago:
        someone = await person(gender="woman", interested_in=["man"], at=NEAR)
        await _set(app, someone, last_active_at=None if hours is None else now - timedelta(hours=hours, minutes=1))
        people.append(someone)
    return people


async def test_windows_come_newest_first_and_every_candidate_appears_once(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    # hours ago: windows of 3 → {0,2,5}, {30,50,100}, {200, never}
    people = await _people(app, person, [200, 0, 100, 5, None, 2, 50, 30])
    by_hours = dict(zip([200, 0, 100, 5, None, 2, 50, 30], [p.id for p in people], strict=True))
    seen = [card for page in await _all_pages(client, viewer, limit=2) for card in page]
    assert len(seen) == len(set(seen)) == 8
    assert set(seen[:3]) == {by_hours[0], by_hours[2], by_hours[5]}
    assert set(seen[3:6]) == {by_hours[30], by_hours[50], by_hours[100]}
    assert set(seen[6:]) == {by_hours[200], by_hours[None]}


async def test_one_page_spans_windows_when_the_first_runs_out(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    people = await _people(app, person, [1, 2, 3, 400, 500])
    pages = await _all_pages(client, viewer, limit=10)
    assert len(pages) == 1 and set(pages[0]) == {p.id for p in people}


async def test_the_boosted_are_in_the_first_window_whatever_their_activity(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    people = await _people(app, person, [0, 1, 2, 3, 300])
    stale_but_boosted = people[-1]
    await _boost(app, stale_but_boosted)
    seen = [card for page in await _all_pages(client, viewer, limit=2) for card in page]
    assert seen[0] == stale_but_boosted.id  # the boost outweighs everything else in the score
    assert len(seen) == len(set(seen)) == 5


async def test_swiping_through_a_window_brings_the_next_one_to_the_top(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    people = await _people(app, person, [0, 1, 2, 100, 200])
    first = (await client.get(DISCOVER, params={"limit": 3}, headers=viewer.headers)).json()["items"]
    assert {card["id"] for card in first} == {p.id for p in people[:3]}
    for card in first:
        swiped = await client.post(
            "/api/v1/swipes", json={"target_id": card["id"], "action": "pass"}, headers=viewer.headers
        )
        assert swiped.status_code == 201, swiped.text
    fresh = (await client.get(DISCOVER, params={"limit": 3}, headers=viewer.headers)).json()["items"]
    assert {card["id"] for card in fresh} == {people[3].id, people[4].id}


async def test_a_cursor_from_an_old_format_is_400(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    stale = encode_cursor(clock.now().isoformat(), 5, "00000000-0000-0000-0000-000000000000")
    response = await client.get(DISCOVER, params={"cursor": stale}, headers=viewer.headers)
    assert response.status_code == 400 and response.json()["error"]["code"] == "malformed_request"


async def test_a_walk_stops_at_its_budget_and_the_next_window_goes_on(
    app: FastAPI, client: httpx.AsyncClient, person: MakePerson, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a walk budget of 1 x the window, recent people who fit no rule end a window early; nobody is lost."""
    monkeypatch.setattr(repository, "WALK_LIMIT_FACTOR", 1)
    viewer = await person(gender="man", interested_in=["woman"])
    now = clock.now()
    for hours in (0, 1, 2, 3, 4):  # the most recently active are not interested in men
        other = await person(gender="woman", interested_in=["woman"], at=NEAR)
        await _set(app, other, last_active_at=now - timedelta(hours=hours))
    wanted = await _people(app, person, [10, 20, 30, 40])
    pages = await _all_pages(client, viewer, limit=1)
    seen = [card for page in pages for card in page]
    assert sorted(seen) == sorted(p.id for p in wanted)
    assert len(seen) == len(set(seen)) == 4
