"""`message.new` and `message.read` on the participants' `user:{id}` channels: right payload, only to the
two people, only once the transaction has committed."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from kindred.chat.schemas import MessageCreate, ReadCreate
from kindred.chat.service import ChatService
from tests.chat.helpers import listening, mark_read, matched_pair, principal_of, send, sent, stored_messages
from tests.discovery.conftest import MakePerson


async def test_a_new_message_reaches_both_participants_and_nobody_else(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    stranger = await person(gender="man", interested_in=["woman"])
    async with listening(app, man, woman, stranger) as events:
        message = await sent(client, man, match.id, "hello over the wire")
        for who in (man, woman):  # the receiver, and the sender's other devices
            assert await events.drain(who) == [{"type": "message.new", "data": {"message": message}}]
        assert await events.drain(stranger) == []


async def test_a_retried_send_announces_nothing_new(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    assert (await send(client, man, match.id, "only once please", client_id="once")).status_code == 201
    async with listening(app, man, woman) as events:
        assert (await send(client, man, match.id, "only once please", client_id="once")).status_code == 200
        assert await events.drain(woman) == [] and await events.drain(man) == []


async def test_refused_sends_announce_nothing(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    stranger = await person(gender="man", interested_in=["woman"])
    async with listening(app, man, woman, stranger) as events:
        assert (await send(client, man, match.id, "")).status_code == 422
        assert (await send(client, stranger, match.id, "intruding words")).status_code == 404
        assert (await client.delete(f"/api/v1/matches/{match.id}", headers=woman.headers)).status_code == 204
        assert await events.types(man) == ["match.removed"] and await events.types(woman) == ["match.removed"]
        assert (await send(client, man, match.id, "too late now")).status_code == 403
        for who in (man, woman, stranger):
            assert await events.drain(who) == []


async def test_reading_tells_both_participants(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    stranger = await person(gender="man", interested_in=["woman"])
    message = await sent(client, woman, match.id, "read me please")
    async with listening(app, man, woman, stranger) as events:
        assert (await mark_read(client, man, match.id, message["id"])).status_code == 204
        [row] = await stored_messages(app, match.id)
        assert row.read_at is not None
        expected = {
            "type": "message.read",
            "data": {"match_id": str(match.id), "up_to": message["id"], "read_at": row.read_at.isoformat()},
        }
        for who in (woman, man):
            [frame] = await events.drain(who)
            assert frame["type"] == expected["type"] and frame["data"].keys() == expected["data"].keys()
            assert frame["data"]["match_id"] == str(match.id) and frame["data"]["up_to"] == message["id"]
            assert frame["data"]["read_at"].replace("Z", "+00:00") == row.read_at.isoformat()
        assert await events.drain(stranger) == []


async def test_a_receipt_that_marks_nothing_announces_nothing(
    client: httpx.AsyncClient, person: MakePerson, app: FastAPI
) -> None:
    man, woman, match = await matched_pair(app, person)
    message = await sent(client, woman, match.id, "already seen")
    assert (await mark_read(client, man, match.id, message["id"])).status_code == 204
    own = await sent(client, man, match.id, "my own words")
    async with listening(app, man, woman) as events:
        assert (await mark_read(client, man, match.id, message["id"])).status_code == 204
        assert (await mark_read(client, woman, match.id, message["id"])).status_code == 204  # her own: nothing
        assert (await mark_read(client, man, match.id, own["id"])).status_code == 204  # his own: nothing new
        assert await events.drain(woman) == [] and await events.drain(man) == []


async def test_a_message_is_announced_only_after_its_transaction_commits(person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    async with listening(app, man, woman) as events:
        async with app.state.db.unit_of_work() as session:
            message, created = await ChatService(session).send(
                principal_of(man), match.id, MessageCreate(body="committed first", client_id="c-commit")
            )
            assert created
            assert await events.drain(woman) == []  # written, not committed: nobody is told yet
        [frame] = await events.drain(woman)
        assert frame["data"]["message"]["id"] == str(message.id)
        assert [row.id for row in await stored_messages(app, match.id)] == [message.id]  # and it is there


async def test_a_rolled_back_send_or_receipt_announces_nothing(person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    async with listening(app, man, woman) as events:
        with pytest.raises(RuntimeError):
            async with app.state.db.unit_of_work() as session:
                await ChatService(session).send(
                    principal_of(man), match.id, MessageCreate(body="never committed", client_id="c-rollback")
                )
                raise RuntimeError("the request failed after the write")
        assert await events.drain(woman) == [] and await events.drain(man) == []
        assert await stored_messages(app, match.id) == []
    async with app.state.db.unit_of_work() as session:
        kept, _ = await ChatService(session).send(
            principal_of(woman), match.id, MessageCreate(body="this one stays", client_id="c-kept")
        )
    async with listening(app, man, woman) as events:
        with pytest.raises(RuntimeError):
            async with app.state.db.unit_of_work() as session:
                await ChatService(session).mark_read(principal_of(man), match.id, ReadCreate(up_to=kept.id))
                raise RuntimeError("the request failed after the write")
        assert await events.drain(woman) == [] and await events.drain(man) == []
        assert [row.read_at for row in await stored_messages(app, match.id)] == [None]


async def test_event_payloads_are_plain_json(client: httpx.AsyncClient, person: MakePerson, app: FastAPI) -> None:
    man, woman, match = await matched_pair(app, person)
    async with listening(app, woman) as events:
        message = await sent(client, man, match.id, "json all the way")
        [frame] = await events.drain(woman)
    payload = frame["data"]["message"]
    assert payload == message
    uuid.UUID(payload["id"])
    assert payload["created_at"].endswith("Z")
