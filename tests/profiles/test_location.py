"""PUT /me/location: stored exactly, snapped for everyone else, impossible travel refused, never logged."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.models import Profile
from kindred.profiles import geo
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account

LOCATION = "/api/v1/me/location"
BERLIN = {"lat": 52.520008, "lng": 13.404954}
POTSDAM = {"lat": 52.390569, "lng": 13.064473}  # ~27 km away
NEW_YORK = {"lat": 40.712776, "lng": -74.005974}


async def stored(app: FastAPI, account: Account) -> Profile:
    async with app.state.db.sessionmaker() as session:
        profile = await session.scalar(select(Profile).where(Profile.user_id == uuid.UUID(account.id)))
    assert profile is not None
    return profile


async def test_location_is_stored_exactly_with_its_snapped_cell(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    response = await client.put(LOCATION, json=BERLIN, headers=account.headers)
    assert response.status_code == 204, response.text
    profile = await stored(app, account)
    assert (profile.lat, profile.lng) == (BERLIN["lat"], BERLIN["lng"])
    assert (profile.cell_lat, profile.cell_lng) == geo.snap(BERLIN["lat"], BERLIN["lng"])
    assert profile.location_updated_at is not None


async def test_a_short_move_is_accepted(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await client.put(LOCATION, json=BERLIN, headers=account.headers)
    assert (
        await client.put(LOCATION, json={"lat": 52.5201, "lng": 13.4051}, headers=account.headers)
    ).status_code == 204


async def test_crossing_the_atlantic_in_a_minute_is_implausible(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await client.put(LOCATION, json=BERLIN, headers=account.headers)
    assert_error(await client.put(LOCATION, json=NEW_YORK, headers=account.headers), 422, "implausible_location")
    profile = await stored(app, account)
    assert (profile.lat, profile.lng) == (BERLIN["lat"], BERLIN["lng"])  # nothing changed


async def test_the_same_trip_after_a_day_is_fine(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)
    await client.put(LOCATION, json=BERLIN, headers=account.headers)
    later = clock.now() + timedelta(hours=24)
    monkeypatch.setattr("kindred.kit.clock.now", lambda: later)
    assert (await client.put(LOCATION, json=NEW_YORK, headers=account.headers)).status_code == 204


async def test_a_drive_to_the_next_town_in_half_an_hour_is_fine(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)
    await client.put(LOCATION, json=BERLIN, headers=account.headers)
    later = clock.now() + timedelta(minutes=30)
    monkeypatch.setattr("kindred.kit.clock.now", lambda: later)
    assert (await client.put(LOCATION, json=POTSDAM, headers=account.headers)).status_code == 204


@pytest.mark.parametrize(
    "body",
    [
        {"lat": 91.0, "lng": 0.0},
        {"lat": 0.0, "lng": -180.5},
        {"lat": "52.5", "lng": 13.4},
        {"lat": 52.5},
        {"lat": 52.5, "lng": 13.4, "accuracy": 5},
        {"lat": None, "lng": 13.4},
    ],
)
async def test_invalid_coordinates_are_422(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, body: dict[str, object]
) -> None:
    account = await verified_account(client, mail)
    assert_error(await client.put(LOCATION, json=body, headers=account.headers), 422, "validation_error")


async def test_integer_coordinates_are_accepted(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    assert (await client.put(LOCATION, json={"lat": 52, "lng": 13}, headers=account.headers)).status_code == 204


async def test_coordinates_never_reach_the_log(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, caplog: pytest.LogCaptureFixture
) -> None:
    account = await verified_account(client, mail)
    await client.put(LOCATION, json=BERLIN, headers=account.headers)
    text = caplog.text
    assert "profile.location_updated" in text
    assert "52.52" not in text and "13.40" not in text
