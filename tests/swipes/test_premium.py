"""Premium features: undo the last pass, likes-received cards (free: count only), and boosts."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI

from kindred.kit import clock
from kindred.models import Block, Boost, Match, Profile, Swipe
from tests.discovery.conftest import MakePerson, add_rows, uid
from tests.support.assertions import assert_error
from tests.swipes.helpers import count_rows, pair, set_tier, swipe

UNDO = "/api/v1/swipes/undo"
LIKES = "/api/v1/likes/received"
BOOSTS = "/api/v1/boosts"


# ---------------------------------------------------------------------------------------------- undo


async def test_undo_is_403_for_free_members(client: httpx.AsyncClient, person: MakePerson) -> None:
    man, woman = await pair(person)
    await swipe(client, man, woman, "pass")
    assert_error(await client.post(UNDO, headers=man.headers), 403, "premium_required")


async def test_undo_removes_the_last_pass_and_returns_the_card(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    await set_tier(app, man, "premium")
    assert (await swipe(client, man, woman, "pass")).status_code == 201
    response = await client.post(UNDO, headers=man.headers)
    assert response.status_code == 200, response.text
    assert response.json()["target"]["id"] == woman.id
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 0
    assert (await swipe(client, man, woman, "like")).status_code == 201


async def test_undo_only_touches_the_most_recent_swipe(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = await pair(person)
    other = await person(gender="woman", interested_in=["man"])
    await set_tier(app, man, "premium")
    await swipe(client, man, woman, "pass")
    await swipe(client, man, other, "pass")
    assert (await client.post(UNDO, headers=man.headers)).json()["target"]["id"] == other.id
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man), Swipe.target_id == uid(woman)) == 1


async def test_undo_after_a_like_is_409(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman = await pair(person)
    await set_tier(app, man, "premium")
    await swipe(client, man, woman, "like")
    assert_error(await client.post(UNDO, headers=man.headers), 409, "nothing_to_undo")
    assert await count_rows(app, Swipe, Swipe.swiper_id == uid(man)) == 1


async def test_undo_with_no_swipes_is_409(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man = await person(gender="man", interested_in=["woman"])
    await set_tier(app, man, "premium")
    assert_error(await client.post(UNDO, headers=man.headers), 409, "nothing_to_undo")


# ---------------------------------------------------------------------------------------------- likes received


async def test_free_members_see_the_count_of_likes_received_but_no_cards(
    client: httpx.AsyncClient, person: MakePerson
) -> None:
    man, woman = await pair(person)
    await swipe(client, woman, man, "like")
    body = (await client.get(LIKES, headers=man.headers)).json()
    assert body == {"count": 1, "items": [], "next_cursor": None}


async def test_premium_members_see_admirers_cards_newest_first(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    first = await person(gender="woman", interested_in=["man"])
    second = await person(gender="woman", interested_in=["man"])
    now = clock.now()
    await add_rows(
        app,
        Swipe(swiper_id=uid(first), target_id=uid(man), action="like", created_at=now - timedelta(hours=2)),
        Swipe(swiper_id=uid(second), target_id=uid(man), action="superlike", created_at=now - timedelta(hours=1)),
    )
    await set_tier(app, man, "premium")
    body = (await client.get(LIKES, headers=man.headers)).json()
    assert body["count"] == 2 and [c["id"] for c in body["items"]] == [second.id, first.id]
    assert body["next_cursor"] is None and "email" not in body["items"][0]


async def test_likes_received_pages_with_a_cursor(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man = await person(gender="man", interested_in=["woman"])
    admirers = [await person(gender="woman", interested_in=["man"]) for _ in range(3)]
    now = clock.now()
    await add_rows(
        app,
        *[
            Swipe(swiper_id=uid(a), target_id=uid(man), action="like", created_at=now - timedelta(minutes=i))
            for i, a in enumerate(admirers)
        ],
    )
    await set_tier(app, man, "premium")
    page1 = (await client.get(LIKES, params={"limit": 2}, headers=man.headers)).json()
    page2 = (await client.get(LIKES, params={"limit": 2, "cursor": page1["next_cursor"]}, headers=man.headers)).json()
    assert [c["id"] for c in page1["items"] + page2["items"]] == [a.id for a in admirers]
    assert page2["next_cursor"] is None


async def test_likes_received_leave_out_swiped_matched_blocked_and_passes(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    swiped, matched, blocked, passed, waiting = [await person(gender="woman", interested_in=["man"]) for _ in range(5)]
    low, high = sorted((uid(man), uid(matched)))
    await add_rows(
        app,
        *[Swipe(swiper_id=uid(p), target_id=uid(man), action="like") for p in (swiped, matched, blocked, waiting)],
        Swipe(swiper_id=uid(passed), target_id=uid(man), action="pass"),
        Swipe(swiper_id=uid(man), target_id=uid(swiped), action="pass"),
        Match(user_low=low, user_high=high),
        Block(blocker_id=uid(blocked), blocked_id=uid(man)),
    )
    await set_tier(app, man, "premium")
    body = (await client.get(LIKES, headers=man.headers)).json()
    assert body["count"] == 1 and [c["id"] for c in body["items"]] == [waiting.id]


# ---------------------------------------------------------------------------------------------- boosts


async def test_boost_is_403_for_free_members(client: httpx.AsyncClient, person: MakePerson) -> None:
    man = await person(gender="man", interested_in=["woman"])
    assert_error(await client.post(BOOSTS, headers=man.headers), 403, "premium_required")


async def test_a_premium_boost_lasts_30_minutes_and_marks_the_profile(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    await set_tier(app, man, "premium")
    before = clock.now()
    response = await client.post(BOOSTS, headers=man.headers)
    assert response.status_code == 201, response.text
    assert response.json()["ends_at"].endswith("Z")
    ends_at = datetime.fromisoformat(response.json()["ends_at"])
    assert timedelta(minutes=29) < ends_at - before <= timedelta(minutes=31)
    async with app.state.db.sessionmaker() as session:
        profile = await session.get(Profile, uid(man))
        assert profile is not None and profile.boost_until == ends_at
    assert await count_rows(app, Boost, Boost.user_id == uid(man)) == 1


async def test_a_second_boost_while_one_is_active_is_409(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    await set_tier(app, man, "premium")
    responses = await asyncio.gather(*(client.post(BOOSTS, headers=man.headers) for _ in range(2)))
    assert sorted(r.status_code for r in responses) == [201, 409]
    assert_error(next(r for r in responses if r.status_code == 409), 409, "boost_active")
    assert await count_rows(app, Boost, Boost.user_id == uid(man)) == 1


async def test_a_new_boost_may_start_after_the_last_one_ended(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man = await person(gender="man", interested_in=["woman"])
    await set_tier(app, man, "premium")
    past = clock.now() - timedelta(hours=1)
    await add_rows(app, Boost(user_id=uid(man), started_at=past, ends_at=past + timedelta(minutes=30)))
    assert (await client.post(BOOSTS, headers=man.headers)).status_code == 201
