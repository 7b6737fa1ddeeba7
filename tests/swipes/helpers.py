"""Shared steps for swipe and match tests: pairs of compatible people, tiers, filler users, swipes."""

from __future__ import annotations

import uuid
from datetime import date

import httpx
import jwt
from fastapi import FastAPI
from sqlalchemy import func, select

from kindred.models import Match, User
from tests.discovery.conftest import MakePerson, Person, add_rows, uid

SWIPES = "/api/v1/swipes"
NEAR = (52.53, 13.41)


async def pair(person: MakePerson) -> tuple[Person, Person]:
    """A man and a woman who are each other's compatible, visible candidates."""
    man = await person(gender="man", interested_in=["woman"])
    woman = await person(gender="woman", interested_in=["man"], at=NEAR)
    return man, woman


async def swipe(client: httpx.AsyncClient, who: Person, target: Person, action: str = "like", **extra: object):
    return await client.post(SWIPES, json={"target_id": target.id, "action": action, **extra}, headers=who.headers)


async def set_tier(app: FastAPI, account: Person, tier: str) -> None:
    """Change the tier in the database and drop the cached session state, as `kindred set-tier` does."""
    async with app.state.db.sessionmaker() as session, session.begin():
        user = await session.get(User, uid(account))
        assert user is not None
        user.tier = tier
    sid = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
    await app.state.cache.delete(f"auth:sess:{sid}")


async def filler_users(app: FastAPI, count: int) -> list[uuid.UUID]:
    """Bare accounts written straight to the database: swipe targets for quota tests."""
    users = [
        User(email=f"filler-{uuid.uuid4().hex}@example.invalid", password_hash="x", birthdate=date(1990, 1, 1),
             terms_version="2026-01")
        for _ in range(count)
    ]  # fmt: skip
    await add_rows(app, *users)
    return [user.id for user in users]


async def matches_between(app: FastAPI, a: Person, b: Person) -> list[Match]:
    low, high = sorted((uid(a), uid(b)))
    async with app.state.db.sessionmaker() as session:
        return list((await session.scalars(select(Match).where(Match.user_low == low, Match.user_high == high))).all())


async def count_rows(app: FastAPI, model: type, *where: object) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)  # type: ignore[arg-type]
