"""GET /me and PATCH /me/profile: the Me object, validation, mass assignment, premium-only fields."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit.email import MemoryEmailBackend
from kindred.models import Profile
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account
from tests.swipes.helpers import set_tier

ME = "/api/v1/me"
PROFILE = "/api/v1/me/profile"


async def patch(client: httpx.AsyncClient, account: Account, body: dict[str, Any]) -> httpx.Response:
    return await client.patch(PROFILE, json=body, headers=account.headers)


async def test_me_has_user_profile_photos_quotas_and_entitlements(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user", "profile", "photos", "quotas", "entitlements"}
    assert body["user"]["id"] == account.id and body["user"]["email"] == account.email
    assert body["profile"]["display_name"] == "Alex"
    assert body["profile"]["has_location"] is False
    assert body["photos"] == []
    assert body["quotas"] == {"likes_remaining": 100, "superlikes_remaining": 1, "resets_at": None}
    assert body["entitlements"] == {
        "undo": False, "likes_received": False, "incognito": False, "boosts": False, "superlikes_per_day": 1,
    }  # fmt: skip


async def test_me_never_contains_coordinates(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await client.put("/api/v1/me/location", json={"lat": 52.52, "lng": 13.405}, headers=account.headers)
    body = (await client.get(ME, headers=account.headers)).json()
    assert body["profile"]["has_location"] is True
    assert "52.52" not in str(body) and "13.405" not in str(body)
    assert not {"lat", "lng", "latitude", "longitude", "cell_lat", "cell_lng"} & _all_keys(body)


def _all_keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(_all_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_all_keys(v) for v in value)) if value else set()
    return set()


async def test_premium_entitlements_and_unlimited_likes(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await set_tier(app, account, "premium")
    body = (await client.get(ME, headers=account.headers)).json()
    assert body["quotas"]["likes_remaining"] is None and body["quotas"]["superlikes_remaining"] == 5
    assert body["entitlements"]["undo"] is True and body["entitlements"]["superlikes_per_day"] == 5


async def test_patch_profile_updates_every_field_and_returns_me(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    changes = {
        "display_name": "Sam", "bio": "Coffee, climbing, bad puns.", "gender": "nonbinary",
        "interested_in": ["woman", "nonbinary"], "age_min": 25, "age_max": 40, "max_distance_km": 30,
        "interests": ["climbing", "coffee"], "prompts": [{"question": "Best trip?", "answer": "Lofoten"}],
        "height_cm": 172, "job_title": "Nurse", "school": "UCL", "show_me": False, "hide_presence": True,
    }  # fmt: skip
    response = await patch(client, account, changes)
    assert response.status_code == 200, response.text
    profile = response.json()["profile"]
    for key, value in changes.items():
        assert profile[key] == value, key
    assert response.json()["user"]["display_name"] == "Sam"
    assert (await client.get(ME, headers=account.headers)).json()["user"]["display_name"] == "Sam"
    async with app.state.db.sessionmaker() as session:
        stored = await session.scalar(select(Profile).where(Profile.user_id == uuid.UUID(account.id)))
    assert stored is not None and stored.bio == changes["bio"] and stored.age_min == 25


async def test_only_sent_fields_change(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await patch(client, account, {"bio": "first", "age_max": 50})
    profile = (await patch(client, account, {"bio": "second"})).json()["profile"]
    assert profile["bio"] == "second" and profile["age_max"] == 50


@pytest.mark.parametrize("field", ["role", "tier", "email", "birthdate", "email_verified", "verified", "id"])
async def test_fields_the_user_may_not_set_are_422(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, field: str
) -> None:
    account = await verified_account(client, mail)
    error = assert_error(await patch(client, account, {field: "admin"}), 422, "validation_error")
    assert ["body", field] in [f["loc"] for f in error["details"]["fields"]]
    assert (await client.get(ME, headers=account.headers)).json()["user"]["role"] == "user"


@pytest.mark.parametrize(
    "body",
    [
        {"display_name": ""},
        {"display_name": "x" * 51},
        {"bio": "x" * 501},
        {"gender": "robot"},
        {"interested_in": ["woman", "alien"]},
        {"age_min": 17},
        {"age_max": 101},
        {"age_min": "25"},
        {"age_min": True},
        {"max_distance_km": 0},
        {"max_distance_km": 501},
        {"interests": [f"i{n}" for n in range(11)]},
        {"prompts": [{"question": "q", "answer": "a"}] * 4},
        {"prompts": [{"question": "q", "answer": "a" * 201}]},
        {"prompts": [{"question": "q"}]},
        {"display_name": None},
        {"show_me": None},
    ],
    ids=lambda b: next(iter(b)) + "=" + str(next(iter(b.values())))[:12],
)
async def test_invalid_profile_values_are_422_and_change_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, body: dict[str, Any]
) -> None:
    account = await verified_account(client, mail)
    before = (await client.get(ME, headers=account.headers)).json()["profile"]
    assert_error(await patch(client, account, body), 422, "validation_error")
    assert (await client.get(ME, headers=account.headers)).json()["profile"] == before


async def test_age_min_above_age_max_is_422(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    assert_error(await patch(client, account, {"age_min": 40, "age_max": 30}), 422, "validation_error")
    await patch(client, account, {"age_max": 30})
    assert_error(await patch(client, account, {"age_min": 31}), 422, "validation_error")


async def test_nullable_fields_can_be_cleared(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await patch(client, account, {"job_title": "Chef", "height_cm": 180})
    profile = (await patch(client, account, {"job_title": None, "height_cm": None})).json()["profile"]
    assert profile["job_title"] is None and profile["height_cm"] is None


async def test_incognito_needs_premium(client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI) -> None:
    account = await verified_account(client, mail)
    assert_error(await patch(client, account, {"incognito": True}), 403, "premium_required")
    await set_tier(app, account, "premium")
    assert (await patch(client, account, {"incognito": True})).json()["profile"]["incognito"] is True


async def test_profile_routes_need_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME), 401, "not_authenticated")
    assert_error(await client.patch(PROFILE, json={"bio": "x"}), 401, "not_authenticated")
    assert_error(await client.put("/api/v1/me/location", json={"lat": 1.0, "lng": 1.0}), 401, "not_authenticated")
