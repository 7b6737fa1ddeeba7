"""GET /discover: both people's preferences, every exclusion (one test each), ranking pages without repeats."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from kindred.kit import clock
from kindred.models import Block, Match, Profile, Report, Swipe, User
from tests.discovery.conftest import MakePerson, Person, add_rows, uid
from tests.support.assertions import assert_error

DISCOVER = "/api/v1/discover"
NEAR = (52.53, 13.41)  # ~1 km from Berlin centre
FAR = (48.137, 11.575)  # Munich, ~500 km


async def seen_ids(client: httpx.AsyncClient, viewer: Person, **params: object) -> list[str]:
    response = await client.get(DISCOVER, params=params, headers=viewer.headers)
    assert response.status_code == 200, response.text
    return [card["id"] for card in response.json()["items"]]


async def pair(person: MakePerson) -> tuple[Person, Person]:
    """A man looking for women and a nearby woman looking for men: compatible both ways."""
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR)
    return viewer, other


async def test_a_compatible_nearby_person_is_shown_as_a_card(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer, other = await pair(person)
    response = await client.get(DISCOVER, headers=viewer.headers)
    assert response.status_code == 200
    [card] = response.json()["items"]
    assert card["id"] == other.id and card["age"] == 30 and card["gender"] == "woman"
    assert isinstance(card["distance_km"], int) and 1 <= card["distance_km"] <= 3
    assert set(card) == {
        "id", "display_name", "age", "bio", "gender", "interests", "prompts", "photos", "distance_km", "verified",
        "last_active_bucket",
    }  # fmt: skip
    assert card["last_active_bucket"] is None  # shown to matches only
    assert response.json()["next_cursor"] is None


async def test_without_a_location_discover_is_409(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"], at=None)
    assert_error(await client.get(DISCOVER, headers=viewer.headers), 409, "location_required")


async def test_nobody_sees_themselves(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["man"])
    assert await seen_ids(client, viewer) == []


async def test_people_i_already_swiped_are_excluded(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer, other = await pair(person)
    await add_rows(app, Swipe(swiper_id=uid(viewer), target_id=uid(other), action="pass"))
    assert await seen_ids(client, viewer) == []


async def test_matched_people_are_excluded(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    viewer, other = await pair(person)
    low, high = sorted((uid(viewer), uid(other)))
    await add_rows(app, Match(user_low=low, user_high=high))
    assert await seen_ids(client, viewer) == []


async def test_people_i_blocked_are_excluded(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    viewer, other = await pair(person)
    await add_rows(app, Block(blocker_id=uid(viewer), blocked_id=uid(other)))
    assert await seen_ids(client, viewer) == []


async def test_people_who_blocked_me_are_excluded(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    viewer, other = await pair(person)
    await add_rows(app, Block(blocker_id=uid(other), blocked_id=uid(viewer)))
    assert await seen_ids(client, viewer) == []


async def test_people_i_reported_are_excluded(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    viewer, other = await pair(person)
    await add_rows(app, Report(reporter_id=uid(viewer), reported_id=uid(other), reason="spam"))
    assert await seen_ids(client, viewer) == []


@pytest.mark.parametrize("status", ["suspended", "banned", "deleted"])
async def test_suspended_banned_and_deleted_accounts_are_excluded(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, status: str
) -> None:
    viewer, other = await pair(person)
    until = clock.now() + timedelta(days=3)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uid(other)).values(status=status, suspended_until=until))
    assert await seen_ids(client, viewer) == []


async def test_a_suspension_that_ended_shows_the_person_again(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer, other = await pair(person)
    ended = clock.now() - timedelta(hours=1)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(
            update(User).where(User.id == uid(other)).values(status="suspended", suspended_until=ended)
        )
    assert await seen_ids(client, viewer) == [other.id]


async def test_show_me_false_is_excluded(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    await person(gender="woman", interested_in=["man"], at=NEAR, show_me=False)
    assert await seen_ids(client, viewer) == []


async def test_people_hidden_pending_review_are_excluded(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer, other = await pair(person)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(Profile).where(Profile.user_id == uid(other)).values(hidden_pending_review=True))
    assert await seen_ids(client, viewer) == []


async def test_incognito_people_are_excluded_unless_they_liked_me(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer, other = await pair(person)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(Profile).where(Profile.user_id == uid(other)).values(incognito=True))
    assert await seen_ids(client, viewer) == []
    await add_rows(app, Swipe(swiper_id=uid(other), target_id=uid(viewer), action="like"))
    assert await seen_ids(client, viewer) == [other.id]


async def test_gender_preference_applies_both_ways(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    await person(gender="woman", interested_in=["woman"], at=NEAR)  # she is not looking for men
    await person(gender="man", interested_in=["man"], at=NEAR)  # he is not what the viewer wants
    assert await seen_ids(client, viewer) == []


async def test_age_preferences_apply_both_ways(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"], age=30, age_min=25, age_max=35)
    too_old = await person(gender="woman", interested_in=["man"], age=40, at=NEAR)
    wants_older = await person(gender="woman", interested_in=["man"], age=28, at=NEAR, age_min=35, age_max=50)
    fits = await person(gender="woman", interested_in=["man"], age=33, at=NEAR, age_min=28, age_max=40)
    ids = await seen_ids(client, viewer)
    assert fits.id in ids and too_old.id not in ids and wants_older.id not in ids


async def test_distance_limits_apply_both_ways(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"], max_distance_km=100)
    far_away = await person(gender="woman", interested_in=["man"], at=FAR, max_distance_km=500)
    strict = await person(gender="woman", interested_in=["man"], at=(52.70, 13.40), max_distance_km=5)  # ~20 km
    near = await person(gender="woman", interested_in=["man"], at=NEAR, max_distance_km=10)
    ids = await seen_ids(client, viewer)
    assert ids == [near.id]
    assert far_away.id not in ids and strict.id not in ids


async def test_pages_continue_the_ranking_without_repeats(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    others = {(await person(gender="woman", interested_in=["man"], at=NEAR)).id for _ in range(7)}
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, object] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get(DISCOVER, params=params, headers=viewer.headers)).json()
        seen += [card["id"] for card in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == others


async def test_a_complete_profile_ranks_above_an_empty_one(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    plain = await person(gender="woman", interested_in=["man"], at=NEAR)
    rich = await person(
        gender="woman", interested_in=["man"], at=NEAR, bio="Hi!", interests=["chess"],
        prompts=[{"question": "Sunday?", "answer": "Markets"}],
    )  # fmt: skip
    assert await seen_ids(client, viewer) == [rich.id, plain.id]


async def test_a_bad_cursor_is_400(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer, _ = await pair(person)
    assert_error(
        await client.get(DISCOVER, params={"cursor": "not-a-cursor"}, headers=viewer.headers), 400, "malformed_request"
    )


async def test_discover_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(DISCOVER), 401, "not_authenticated")


async def test_unknown_user_card_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer, _ = await pair(person)
    assert_error(await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=viewer.headers), 404, "user_not_found")
