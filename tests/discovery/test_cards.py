"""GET /users/{id}: visible to a match, to someone they liked, or to a compatible viewer; else 404."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from kindred.models import Block, Match, Swipe
from tests.discovery.conftest import MakePerson, Person, add_rows, uid
from tests.support.assertions import assert_error

NEAR = (52.53, 13.41)


def card_url(other: Person) -> str:
    return f"/api/v1/users/{other.id}"


async def test_a_compatible_person_card_is_visible_even_after_swiping(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR, bio="Hello")
    await add_rows(app, Swipe(swiper_id=uid(viewer), target_id=uid(other), action="pass"))
    response = await client.get(card_url(other), headers=viewer.headers)
    assert response.status_code == 200, response.text
    assert response.json()["bio"] == "Hello" and response.json()["distance_km"] >= 1


async def test_an_incompatible_stranger_card_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["woman"], at=NEAR)
    assert_error(await client.get(card_url(other), headers=viewer.headers), 404, "user_not_found")


async def test_someone_who_liked_me_is_visible_whatever_the_preferences(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    admirer = await person(gender="man", interested_in=["man"], at=(48.1, 11.5))
    await add_rows(app, Swipe(swiper_id=uid(admirer), target_id=uid(viewer), action="like"))
    assert (await client.get(card_url(admirer), headers=viewer.headers)).status_code == 200


async def test_a_match_card_is_visible(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["woman"], at=(48.1, 11.5))
    low, high = sorted((uid(viewer), uid(other)))
    await add_rows(app, Match(user_low=low, user_high=high))
    assert (await client.get(card_url(other), headers=viewer.headers)).status_code == 200


async def test_a_block_hides_the_card_even_from_a_match(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    other = await person(gender="woman", interested_in=["man"], at=NEAR)
    low, high = sorted((uid(viewer), uid(other)))
    await add_rows(app, Match(user_low=low, user_high=high), Block(blocker_id=uid(other), blocked_id=uid(viewer)))
    assert_error(await client.get(card_url(other), headers=viewer.headers), 404, "user_not_found")
    assert_error(await client.get(card_url(viewer), headers=other.headers), 404, "user_not_found")


async def test_my_own_id_is_not_a_card(client: httpx.AsyncClient, person: MakePerson) -> None:
    viewer = await person(gender="man", interested_in=["woman"])
    assert_error(await client.get(card_url(viewer), headers=viewer.headers), 404, "user_not_found")
