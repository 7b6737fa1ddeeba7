"""GET /matches with chat: each Match's last message and the caller's unread count, newest activity first,
in a fixed number of queries whatever the page holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event

from tests.chat.helpers import mark_read, match_rows, matched_pair, sent
from tests.discovery.conftest import MakePerson

MATCHES = "/api/v1/matches"


async def _listed(client: httpx.AsyncClient, who: Any, **params: Any) -> dict[str, Any]:
    response = await client.get(MATCHES, params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_a_match_shows_its_last_message_and_my_unread_count(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    first = await sent(client, woman, match.id, "hello you")
    second = await sent(client, woman, match.id, "are you there")
    [his] = (await _listed(client, man))["items"]
    [hers] = (await _listed(client, woman))["items"]
    assert his["last_message"] == second and hers["last_message"] == second
    assert his["unread_count"] == 2 and hers["unread_count"] == 0  # her own messages are never unread to her
    assert (await mark_read(client, man, match.id, first["id"])).status_code == 204
    assert (await _listed(client, man))["items"][0]["unread_count"] == 1
    reply = await sent(client, man, match.id, "yes I am here")
    [his] = (await _listed(client, man))["items"]
    [hers] = (await _listed(client, woman))["items"]
    assert his["last_message"] == reply and hers["last_message"] == reply
    assert his["unread_count"] == 1 and hers["unread_count"] == 1
    assert (await mark_read(client, woman, match.id, reply["id"])).status_code == 204
    assert (await _listed(client, woman))["items"][0]["unread_count"] == 0
    # The read receipt shows on the last message as its sender sees it.
    assert (await _listed(client, man))["items"][0]["last_message"]["read_at"] is not None


async def test_a_match_without_messages_has_no_last_message(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    [item] = (await _listed(client, man))["items"]
    assert item["id"] == str(match.id) and item["last_message"] is None and item["unread_count"] == 0


async def test_counts_are_per_match(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    me = await person(gender="man", interested_in=["woman"])
    a, b = [await person(gender="woman", interested_in=["man"]) for _ in range(2)]
    match_a, match_b = await match_rows(app, me, a, minutes_ago=5), await match_rows(app, me, b, minutes_ago=10)
    for i in range(3):
        await sent(client, a, match_a.id, f"from a {i}")
    last_b = await sent(client, b, match_b.id, "from b")
    items = {m["id"]: m for m in (await _listed(client, me))["items"]}
    assert items[str(match_a.id)]["unread_count"] == 3 and items[str(match_b.id)]["unread_count"] == 1
    assert items[str(match_b.id)]["last_message"] == last_b


async def test_matches_are_ordered_by_latest_message_else_creation(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    me = await person(gender="man", interested_in=["woman"])
    old, middle, new = [await person(gender="woman", interested_in=["man"]) for _ in range(3)]
    m_old = await match_rows(app, me, old, minutes_ago=30)
    m_middle = await match_rows(app, me, middle, minutes_ago=20)
    m_new = await match_rows(app, me, new, minutes_ago=10)
    assert [m["id"] for m in (await _listed(client, me))["items"]] == [str(m_new.id), str(m_middle.id), str(m_old.id)]
    await sent(client, old, m_old.id, "remember me")  # the oldest match now has the newest activity
    assert [m["id"] for m in (await _listed(client, me))["items"]] == [str(m_old.id), str(m_new.id), str(m_middle.id)]
    await sent(client, me, m_middle.id, "my turn")  # my own message counts as activity too
    ordered = [str(m_middle.id), str(m_old.id), str(m_new.id)]
    assert [m["id"] for m in (await _listed(client, me))["items"]] == ordered
    assert [m["id"] for m in (await _listed(client, middle))["items"]] == [str(m_middle.id)]
    # Cursor pages follow the same order, without repeats.
    page1 = await _listed(client, me, limit=2)
    page2 = await _listed(client, me, limit=2, cursor=page1["next_cursor"])
    assert [m["id"] for m in page1["items"] + page2["items"]] == ordered and page2["next_cursor"] is None


@contextmanager
def counting_queries(app: FastAPI) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    engine = app.state.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def test_listing_takes_the_same_number_of_queries_for_one_match_or_many(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    me = await person(gender="man", interested_in=["woman"])
    first = await person(gender="woman", interested_in=["man"])
    match = await match_rows(app, me, first, minutes_ago=60)
    await sent(client, first, match.id, "only one so far")
    await _listed(client, me)  # warm: session state cached
    with counting_queries(app) as one:
        assert len((await _listed(client, me))["items"]) == 1
    for i in range(4):
        other = await person(gender="woman", interested_in=["man"])
        more = await match_rows(app, me, other, minutes_ago=50 - i)
        await sent(client, other, more.id, f"number {i} says hi")
        await sent(client, me, more.id, f"hi back {i}")
    await _listed(client, me)  # warm again: the new people's card photos are cached too
    with counting_queries(app) as five:
        assert len((await _listed(client, me))["items"]) == 5
    assert len(five) == len(one), (one, five)
