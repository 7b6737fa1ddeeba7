"""Chat test steps: a matched pair, sending and reading through the API, event listeners, database reads."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from kindred.auth.service import Principal
from kindred.auth.session_state import SessionState
from kindred.kit import clock
from kindred.kit.cache import Subscription
from kindred.models import Match, Message
from tests.discovery.conftest import MakePerson, Person, add_rows, uid
from tests.support import leaks
from tests.swipes.helpers import pair

MATCHES = "/api/v1/matches"


def messages_url(match_id: uuid.UUID | str) -> str:
    return f"{MATCHES}/{match_id}/messages"


def read_url(match_id: uuid.UUID | str) -> str:
    return f"{MATCHES}/{match_id}/read"


async def match_rows(app: FastAPI, a: Person, b: Person, *, minutes_ago: int = 0) -> Match:
    """A live match between a and b, written straight to the database."""
    low, high = sorted((uid(a), uid(b)))
    at = clock.now() - timedelta(minutes=minutes_ago)
    match = Match(user_low=low, user_high=high, created_at=at, last_activity_at=at)
    await add_rows(app, match)
    return match


async def matched_pair(app: FastAPI, person: MakePerson) -> tuple[Person, Person, Match]:
    man, woman = await pair(person)
    return man, woman, await match_rows(app, man, woman)


async def send(
    client: httpx.AsyncClient, who: Person, match_id: uuid.UUID | str, body: str, client_id: str | None = None
) -> httpx.Response:
    """POST a message; its body becomes a log canary (a message body must never be logged)."""
    leaks.canary(body.strip())
    payload = {"body": body, "client_id": client_id or uuid.uuid4().hex}
    return await client.post(messages_url(match_id), json=payload, headers=who.headers)


async def sent(client: httpx.AsyncClient, who: Person, match_id: uuid.UUID | str, body: str) -> dict[str, Any]:
    response = await send(client, who, match_id, body)
    assert response.status_code == 201, response.text
    return response.json()


async def mark_read(client: httpx.AsyncClient, who: Person, match_id: uuid.UUID | str, up_to: str) -> httpx.Response:
    return await client.post(read_url(match_id), json={"up_to": up_to}, headers=who.headers)


async def stored_messages(app: FastAPI, match_id: uuid.UUID | str) -> list[Message]:
    async with app.state.db.sessionmaker() as session:
        query = select(Message).where(Message.match_id == uuid.UUID(str(match_id)))
        return list((await session.scalars(query.order_by(Message.created_at, Message.id))).all())


def principal_of(who: Person) -> Principal:
    """A Principal for calling services directly (they read only the user id)."""
    now = clock.now()
    state = SessionState(
        user_id=uid(who), role="user", tier="free", status="active", suspended_until=None,
        expires_at=now + timedelta(hours=1), email="", display_name="", email_verified=True, created_at=now,
    )  # fmt: skip
    return Principal(user_id=uid(who), session_id=uuid.uuid4(), state=state)


class Events:
    """What each subscribed person's `user:{id}` channel received, through the app's cache."""

    def __init__(self, app: FastAPI, subscriptions: dict[str, Subscription]) -> None:
        self._cache = app.state.cache
        self._subscriptions = subscriptions

    async def drain(self, who: Person) -> list[dict[str, Any]]:
        """Every frame published to `who` so far, in order; ends at a marker published after them."""
        marker = f"marker-{uuid.uuid4().hex}"
        await self._cache.publish(f"user:{who.id}", marker)
        frames = []
        subscription = self._subscriptions[who.id]
        while True:
            _, message = await asyncio.wait_for(anext(subscription), 5)
            if message == marker:
                return frames
            frames.append(json.loads(message))

    async def types(self, who: Person) -> list[str]:
        return [frame["type"] for frame in await self.drain(who)]


@asynccontextmanager
async def listening(app: FastAPI, *people: Person) -> AsyncIterator[Events]:
    async with AsyncExitStack() as stack:
        subscriptions = {
            who.id: await stack.enter_async_context(app.state.cache.subscribe(f"user:{who.id}")) for who in people
        }
        yield Events(app, subscriptions)
