"""POST/GET /matches/{id}/messages: sending (trimmed, validated, idempotent by client_id), history pages
newest first, `?after=` catch-up oldest first; only the two people, only while the conversation is open."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from kindred.kit import clock
from kindred.models import Block, Message, User
from tests.chat.helpers import (
    match_rows,
    matched_pair,
    messages_url,
    send,
    sent,
    stored_messages,
)
from tests.discovery.conftest import MakePerson, add_rows, uid
from tests.support.assertions import assert_error

# ---------------------------------------------------------------------------------------------- sending


async def test_a_message_is_201_and_stored_trimmed(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, _woman, match = await matched_pair(app, person)
    response = await send(client, man, match.id, "  \n Hello there, line one\nline two \t\n ", client_id="c-1")
    assert response.status_code == 201, response.text
    message = response.json()
    assert set(message) == {"id", "match_id", "sender_id", "body", "client_id", "created_at", "read_at"}
    assert message["body"] == "Hello there, line one\nline two"
    assert message["match_id"] == str(match.id) and message["sender_id"] == man.id
    assert message["client_id"] == "c-1" and message["read_at"] is None
    assert message["created_at"].endswith("Z")
    [row] = await stored_messages(app, match.id)
    assert str(row.id) == message["id"] and row.body == "Hello there, line one\nline two"


async def test_either_participant_may_send(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    await sent(client, man, match.id, "hi from him")
    await sent(client, woman, match.id, "hi from her")
    assert [row.sender_id for row in await stored_messages(app, match.id)] == [uid(man), uid(woman)]


async def test_the_same_client_id_again_is_200_with_the_first_message_and_no_duplicate(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    first = await send(client, man, match.id, "first attempt", client_id="retry-me")
    again = await send(client, man, match.id, "first attempt", client_id="retry-me")
    changed = await send(client, man, match.id, "a different body", client_id="retry-me")
    assert first.status_code == 201 and again.status_code == 200 and changed.status_code == 200
    assert again.json() == first.json() and changed.json() == first.json()
    assert len(await stored_messages(app, match.id)) == 1


async def test_a_client_id_is_scoped_to_its_sender_and_match(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    other = await person(gender="woman", interested_in=["man"])
    second_match = await match_rows(app, man, other)
    assert (await send(client, man, match.id, "his hello", client_id="same")).status_code == 201
    assert (await send(client, woman, match.id, "her hello", client_id="same")).status_code == 201
    assert (await send(client, man, second_match.id, "hello again", client_id="same")).status_code == 201
    assert len(await stored_messages(app, match.id)) == 2
    assert len(await stored_messages(app, second_match.id)) == 1


async def test_concurrent_identical_sends_store_one_message(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    for attempt in range(5):
        client_id = f"twin-{attempt}"
        responses = await asyncio.gather(*(send(client, man, match.id, "twin send", client_id) for _ in range(2)))
        assert sorted(r.status_code for r in responses) == [200, 201], [r.text for r in responses]
        assert responses[0].json() == responses[1].json()
    assert len(await stored_messages(app, match.id)) == 5


@pytest.mark.postgres_only  # SQLite has one writer connection: the second insert could not even start
async def test_the_unique_client_id_settles_concurrent_inserts_without_the_match_lock(
    person: MakePerson, app: FastAPI
) -> None:
    """Below the service's match-row lock: two transactions insert the same (sender, match, client_id);
    the second waits for the first, inserts nothing, and then sees the first one's row."""
    from kindred.chat.repository import ChatRepository

    man, _woman, match = await matched_pair(app, person)
    fields = {"match_id": match.id, "sender_id": uid(man), "body": "race", "client_id": "race-1"}
    async with app.state.db.sessionmaker() as first, app.state.db.sessionmaker() as second:
        assert await ChatRepository(first).insert(Message(id=uuid.uuid4(), created_at=clock.now(), **fields))
        racing = asyncio.create_task(
            ChatRepository(second).insert(Message(id=uuid.uuid4(), created_at=clock.now(), **fields))
        )
        await asyncio.sleep(0.3)
        assert not racing.done()  # blocked on the first transaction's uncommitted row
        await first.commit()
        assert await asyncio.wait_for(racing, 5) is False
        found = await ChatRepository(second).by_client_id(match.id, uid(man), "race-1")
        assert found is not None
        await second.commit()
    assert len(await stored_messages(app, match.id)) == 1


async def test_the_database_refuses_a_second_row_with_the_same_client_id(person: MakePerson, app: FastAPI) -> None:
    man, _woman, match = await matched_pair(app, person)
    rows = [Message(match_id=match.id, sender_id=uid(man), body="x", client_id="dup") for _ in range(2)]
    with pytest.raises(IntegrityError):
        await add_rows(app, *rows)


async def test_messages_sent_at_the_same_instant_keep_their_order(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    man, woman, match = await matched_pair(app, person)
    frozen = datetime.now(UTC)
    monkeypatch.setattr(clock, "now", lambda: frozen)
    bodies = [f"same instant {i}" for i in range(4)]
    ids = [(await sent(client, man if i % 2 else woman, match.id, body))["id"] for i, body in enumerate(bodies)]
    rows = await stored_messages(app, match.id)
    assert [str(row.id) for row in rows] == ids
    assert len({row.created_at for row in rows}) == 4  # strictly increasing within the conversation
    history = (await client.get(messages_url(match.id), headers=man.headers)).json()["items"]
    assert [m["id"] for m in history] == ids[::-1]
    caught_up = await client.get(messages_url(match.id), params={"after": ids[0]}, headers=woman.headers)
    assert [m["id"] for m in caught_up.json()["items"]] == ids[1:]


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "body",
    [
        "",
        "   ",
        " \n\t \u3000 ",  # whitespace only, Unicode spaces included
        "x" * 2001,
        "nul \x00 inside",
        "tab \t inside",
        "carriage \r return",
        "escape \x1b[31m red",
        "delete \x7f char",
        "c1 next line \x85 here",
        "line \u2028 separator",
        "paragraph \u2029 separator",
    ],
    ids=["empty", "spaces", "unicode-whitespace", "2001", "nul", "tab", "cr", "esc", "del", "c1", "u2028", "u2029"],
)
async def test_an_invalid_body_is_422(client: httpx.AsyncClient, person: MakePerson, app: FastAPI, body: str) -> None:
    man, _woman, match = await matched_pair(app, person)
    error = assert_error(await send(client, man, match.id, body), 422, "validation_error")
    assert error["details"]["fields"][0]["loc"] == ["body", "body"]
    assert await stored_messages(app, match.id) == []


async def test_a_lone_surrogate_is_422(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, _woman, match = await matched_pair(app, person)
    raw = b'{"body": "broken \\ud800 text", "client_id": "s-1"}'
    response = await client.post(
        messages_url(match.id), content=raw, headers={**man.headers, "content-type": "application/json"}
    )
    assert_error(response, 422, "validation_error")
    assert await stored_messages(app, match.id) == []


@pytest.mark.parametrize(
    "body",
    ["x" * 2000, "  " + "y" * 2000 + "\n\n", "two\nlines", "emoji 👩\u200d👩\u200d👧 family", "עברית \u200f mark"],
    ids=["2000", "2000-after-trim", "newline", "zwj-emoji", "rtl-mark"],
)
async def test_a_valid_body_is_accepted(client: httpx.AsyncClient, person: MakePerson, app: FastAPI, body: str) -> None:
    man, _woman, match = await matched_pair(app, person)
    response = await send(client, man, match.id, body)
    assert response.status_code == 201, response.text
    assert response.json()["body"] == body.strip()


@pytest.mark.parametrize(
    "payload",
    [
        {"body": "hi"},
        {"client_id": "c"},
        {"body": "hi", "client_id": ""},
        {"body": "hi", "client_id": "x" * 65},
        {"body": "hi", "client_id": "has space"},
        {"body": 123, "client_id": "c"},
        {"body": "hi", "client_id": 5},
        {"body": "hi", "client_id": "c", "sender_id": "00000000-0000-0000-0000-000000000000"},
    ],
    ids=["no-client-id", "no-body", "empty-client-id", "long-client-id", "space", "int-body", "int-id", "unknown"],
)
async def test_an_invalid_send_request_is_422(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, payload: dict[str, object]
) -> None:
    man, _woman, match = await matched_pair(app, person)
    assert_error(await client.post(messages_url(match.id), json=payload, headers=man.headers), 422, "validation_error")
    assert await stored_messages(app, match.id) == []


# ---------------------------------------------------------------------------------------------- who may


async def test_a_stranger_cannot_read_or_post_in_someone_elses_conversation(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    message = await sent(client, man, match.id, "private words")
    stranger = await person(gender="man", interested_in=["woman"])
    assert_error(await client.get(messages_url(match.id), headers=stranger.headers), 404, "match_not_found")
    assert_error(
        await client.get(messages_url(match.id), params={"after": message["id"]}, headers=stranger.headers),
        404,
        "match_not_found",
    )
    assert_error(await send(client, stranger, match.id, "let me in"), 404, "match_not_found")
    assert len(await stored_messages(app, match.id)) == 1


async def test_an_unknown_match_is_404(client: httpx.AsyncClient, person: MakePerson) -> None:
    me = await person(gender="man", interested_in=["woman"])
    assert_error(await client.get(messages_url(uuid.uuid4()), headers=me.headers), 404, "match_not_found")
    assert_error(await send(client, me, uuid.uuid4(), "anyone there"), 404, "match_not_found")


async def test_chat_needs_authentication(client: httpx.AsyncClient) -> None:
    match_id = uuid.uuid4()
    assert_error(await client.get(messages_url(match_id)), 401, "not_authenticated")
    response = await client.post(messages_url(match_id), json={"body": "hi", "client_id": "c"})
    assert_error(response, 401, "not_authenticated")
    assert_error(await client.post(f"/api/v1/matches/{match_id}/read", json={"up_to": str(match_id)}), 401,
                 "not_authenticated")  # fmt: skip


async def test_after_unmatch_the_conversation_is_closed_for_both(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    message = await sent(client, woman, match.id, "before the end")
    assert (await client.delete(f"/api/v1/matches/{match.id}", headers=man.headers)).status_code == 204
    for who in (man, woman):
        assert_error(await send(client, who, match.id, "after the end"), 403, "conversation_closed")
        assert_error(await client.get(messages_url(match.id), headers=who.headers), 403, "conversation_closed")
        response = await client.post(f"/api/v1/matches/{match.id}/read", json={"up_to": message["id"]},
                                     headers=who.headers)  # fmt: skip
        assert_error(response, 403, "conversation_closed")
    assert len(await stored_messages(app, match.id)) == 1


@pytest.mark.parametrize("blocker", ["man", "woman"])
async def test_after_a_block_either_way_the_conversation_is_closed_for_both(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, blocker: str
) -> None:
    man, woman, match = await matched_pair(app, person)
    await sent(client, man, match.id, "hello before")
    by, of = (man, woman) if blocker == "man" else (woman, man)
    assert (await client.post("/api/v1/blocks", json={"user_id": of.id}, headers=by.headers)).status_code == 201
    for who in (man, woman):
        assert_error(await send(client, who, match.id, "hello after"), 403, "conversation_closed")
        assert_error(await client.get(messages_url(match.id), headers=who.headers), 403, "conversation_closed")
    assert len(await stored_messages(app, match.id)) == 1


async def test_a_block_written_elsewhere_closes_the_conversation(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    await add_rows(app, Block(blocker_id=uid(woman), blocked_id=uid(man)))
    assert_error(await send(client, man, match.id, "still there?"), 403, "conversation_closed")


async def test_a_banned_partner_closes_the_conversation(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    async with app.state.db.sessionmaker() as session, session.begin():
        user = await session.get(User, uid(woman))
        assert user is not None
        user.status = "banned"
    assert_error(await send(client, man, match.id, "hello?"), 403, "conversation_closed")
    assert_error(await client.get(messages_url(match.id), headers=man.headers), 403, "conversation_closed")


# ---------------------------------------------------------------------------------------------- history


async def test_history_is_newest_first_in_cursor_pages_without_repeats(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    ids = [(await sent(client, man if i % 3 else woman, match.id, f"message number {i}"))["id"] for i in range(7)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get(messages_url(match.id), params=params, headers=woman.headers)).json()
        seen += [m["id"] for m in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1] and pages == 3


async def test_an_empty_conversation_has_no_messages(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    assert (await client.get(messages_url(match.id), headers=man.headers)).json() == {"items": [], "next_cursor": None}


async def test_catch_up_after_a_message_is_oldest_first_and_paged(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    ids = [(await sent(client, woman, match.id, f"catch up {i}"))["id"] for i in range(6)]
    first = (await client.get(messages_url(match.id), params={"after": ids[0], "limit": 2}, headers=man.headers)).json()
    assert [m["id"] for m in first["items"]] == ids[1:3]
    # The cursor continues the catch-up, with `after` repeated or not.
    second = await client.get(
        messages_url(match.id), params={"after": ids[0], "limit": 2, "cursor": first["next_cursor"]},
        headers=man.headers,
    )  # fmt: skip
    third = await client.get(
        messages_url(match.id), params={"limit": 2, "cursor": second.json()["next_cursor"]}, headers=man.headers
    )
    assert [m["id"] for m in second.json()["items"]] == ids[3:5]
    assert [m["id"] for m in third.json()["items"]] == ids[5:] and third.json()["next_cursor"] is None
    latest = await client.get(messages_url(match.id), params={"after": ids[-1]}, headers=man.headers)
    assert latest.json() == {"items": [], "next_cursor": None}


async def test_catch_up_after_a_message_of_another_conversation_is_422(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, _woman, match = await matched_pair(app, person)
    other = await person(gender="woman", interested_in=["man"])
    elsewhere = await match_rows(app, man, other)
    foreign = await sent(client, other, elsewhere.id, "in another chat")
    for after in (foreign["id"], str(uuid.uuid4())):
        response = await client.get(messages_url(match.id), params={"after": after}, headers=man.headers)
        error = assert_error(response, 422, "validation_error")
        assert error["details"]["fields"][0]["loc"] == ["query", "after"]


async def test_bad_history_parameters(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, _woman, match = await matched_pair(app, person)
    ids = [(await sent(client, man, match.id, f"page me {i}"))["id"] for i in range(3)]
    history_cursor = (await client.get(messages_url(match.id), params={"limit": 1}, headers=man.headers)).json()[
        "next_cursor"
    ]
    url = messages_url(match.id)
    assert_error(await client.get(url, params={"cursor": "nope"}, headers=man.headers), 400, "malformed_request")
    response = await client.get(url, params={"cursor": history_cursor, "after": ids[0]}, headers=man.headers)
    assert_error(response, 400, "malformed_request")
    assert_error(await client.get(url, params={"after": "not-a-uuid"}, headers=man.headers), 422, "validation_error")
    assert_error(await client.get(url, params={"limit": 0}, headers=man.headers), 422, "validation_error")
    assert_error(await client.get(url, params={"limit": 101}, headers=man.headers), 422, "validation_error")


async def test_sending_moves_the_match_activity_forward(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman = (
        await person(gender="man", interested_in=["woman"]),
        await person(gender="woman", interested_in=["man"]),
    )
    match = await match_rows(app, man, woman, minutes_ago=60)
    message = await sent(client, man, match.id, "wake up")
    async with app.state.db.sessionmaker() as session:
        from kindred.models import Match

        stored = await session.get(Match, match.id)
        assert stored is not None
        assert stored.last_activity_at == datetime.fromisoformat(message["created_at"].replace("Z", "+00:00"))
