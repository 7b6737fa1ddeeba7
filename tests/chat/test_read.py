"""POST /matches/{id}/read: the other person's messages up to one become read; idempotent, never backwards."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from tests.chat.helpers import mark_read, match_rows, matched_pair, read_url, sent, stored_messages
from tests.discovery.conftest import MakePerson, uid
from tests.support.assertions import assert_error


async def test_reading_marks_the_other_persons_messages_up_to_the_given_one(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    first = await sent(client, woman, match.id, "her first")
    mine = await sent(client, man, match.id, "his reply")
    second = await sent(client, woman, match.id, "her second")
    later = await sent(client, woman, match.id, "her third")
    response = await mark_read(client, man, match.id, second["id"])
    assert response.status_code == 204 and response.content == b""
    read = {str(row.id): row.read_at for row in await stored_messages(app, match.id)}
    assert read[first["id"]] is not None and read[second["id"]] is not None
    assert read[first["id"]] == read[second["id"]]
    assert read[mine["id"]] is None  # his own message is not his to mark
    assert read[later["id"]] is None  # after up_to
    history = (await client.get(f"/api/v1/matches/{match.id}/messages", headers=woman.headers)).json()["items"]
    shown = {m["id"]: m["read_at"] for m in history}
    assert shown[first["id"]] is not None and shown[later["id"]] is None


async def test_reading_up_to_my_own_message_marks_what_came_before_it(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    hers = await sent(client, woman, match.id, "a question")
    mine = await sent(client, man, match.id, "an answer")
    assert (await mark_read(client, man, match.id, mine["id"])).status_code == 204
    read = {str(row.id): row.read_at for row in await stored_messages(app, match.id)}
    assert read[hers["id"]] is not None and read[mine["id"]] is None


async def test_reading_is_idempotent_and_never_moves_backwards(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    early = await sent(client, woman, match.id, "early words")
    late = await sent(client, woman, match.id, "late words")
    assert (await mark_read(client, man, match.id, late["id"])).status_code == 204
    before = {row.id: row.read_at for row in await stored_messages(app, match.id)}
    assert all(before.values())
    assert (await mark_read(client, man, match.id, late["id"])).status_code == 204
    assert (await mark_read(client, man, match.id, early["id"])).status_code == 204
    after = {row.id: row.read_at for row in await stored_messages(app, match.id)}
    assert after == before  # nothing un-read, no read time moved


async def test_reading_an_older_message_leaves_newer_ones_unread(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    early = await sent(client, woman, match.id, "first of two")
    late = await sent(client, woman, match.id, "second of two")
    assert (await mark_read(client, man, match.id, early["id"])).status_code == 204
    read = {str(row.id): row.read_at for row in await stored_messages(app, match.id)}
    assert read[early["id"]] is not None and read[late["id"]] is None
    assert (await mark_read(client, man, match.id, late["id"])).status_code == 204
    read_again = {str(row.id): row.read_at for row in await stored_messages(app, match.id)}
    assert read_again[early["id"]] == read[early["id"]] and read_again[late["id"]] is not None


async def test_up_to_a_message_of_another_conversation_is_422(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    await sent(client, woman, match.id, "mine to read")
    other = await person(gender="woman", interested_in=["man"])
    elsewhere = await match_rows(app, man, other)
    foreign = await sent(client, other, elsewhere.id, "elsewhere words")
    for up_to in (foreign["id"], str(uuid.uuid4())):
        error = assert_error(await mark_read(client, man, match.id, up_to), 422, "validation_error")
        assert error["details"]["fields"][0]["loc"] == ["body", "up_to"]
    assert all(row.read_at is None for row in await stored_messages(app, elsewhere.id))
    assert all(row.read_at is None for row in await stored_messages(app, match.id))


@pytest.mark.parametrize(
    "payload",
    [{}, {"up_to": "nope"}, {"up_to": 5}, {"up_to": None}, {"up_to": "00000000-0000-0000-0000-000000000000", "x": 1}],
    ids=["missing", "not-uuid", "int", "null", "unknown-field"],
)
async def test_an_invalid_read_request_is_422(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI, payload: dict[str, object]
) -> None:
    man, _woman, match = await matched_pair(app, person)
    response = await client.post(read_url(match.id), json=payload, headers=man.headers)
    assert_error(response, 422, "validation_error")


async def test_a_stranger_cannot_mark_someone_elses_messages_read(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    _man, woman, match = await matched_pair(app, person)
    message = await sent(client, woman, match.id, "for him only")
    stranger = await person(gender="man", interested_in=["woman"])
    assert_error(await mark_read(client, stranger, match.id, message["id"]), 404, "match_not_found")
    assert_error(await mark_read(client, stranger, uuid.uuid4(), message["id"]), 404, "match_not_found")
    [row] = await stored_messages(app, match.id)
    assert row.read_at is None and row.sender_id == uid(woman)
