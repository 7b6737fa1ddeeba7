"""People with profiles and locations, made through the API; relations (swipes, blocks...) set in the DB."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from tests.support.factories import Account, birthdate_years_ago, verified_account

BERLIN = (52.520008, 13.404954)
Person = Account
MakePerson = Callable[..., Awaitable[Person]]


@pytest.fixture
def person(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> MakePerson:
    """`await person(gender="woman", interested_in=["man"], age=30, at=(lat, lng), **profile_fields)`."""

    async def make(
        *,
        gender: str = "woman",
        interested_in: list[str] | None = None,
        age: int = 30,
        at: tuple[float, float] | None = BERLIN,
        **profile: Any,
    ) -> Person:
        birthdate = birthdate_years_ago(age, clock.now().date()) if age else date(1990, 1, 1).isoformat()
        account = await verified_account(client, mail, birthdate=birthdate)
        body = {"gender": gender, "interested_in": interested_in or ["man"], **profile}
        response = await client.patch("/api/v1/me/profile", json=body, headers=account.headers)
        assert response.status_code == 200, response.text
        if at is not None:
            located = await client.put(
                "/api/v1/me/location", json={"lat": at[0], "lng": at[1]}, headers=account.headers
            )
            assert located.status_code == 204, located.text
        return account

    return make


async def add_rows(app: FastAPI, *rows: Any) -> None:
    async with app.state.db.sessionmaker() as session, session.begin():
        session.add_all(rows)


def uid(account: Account) -> uuid.UUID:
    return uuid.UUID(account.id)
