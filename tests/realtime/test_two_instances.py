"""Two `kindred serve` processes sharing PostgreSQL and Redis, as behind a load balancer: events reach a
user's sockets whichever instance caused them, and a revocation on one closes sockets on the other.

PostgreSQL pass only (deselected on the embedded stack); it also needs the shared Redis, TEST_REDIS_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.e2e.test_server import Server
from tests.realtime.conftest import Servers, World, world_for
from tests.support.requirements import missing

pytestmark = [pytest.mark.e2e, pytest.mark.postgres_only]

UNAUTHENTICATED = 4001
QUIET = 0.5


@dataclass
class Pair:
    a: World  # people live in the one database; `a` and `b` differ in which instance their sockets use
    b: World


@pytest.fixture(scope="module")
def instances(servers: Servers, server: Server) -> tuple[Server, Server]:
    """The package's server, and a second one of the same deployment (same database, Redis channels, keys)."""
    if not os.environ.get("TEST_REDIS_URL"):
        missing("two instances need a shared Redis: set TEST_REDIS_URL")
    return server, servers.start("instance-b", prefix=servers.prefix_of(server))


@pytest.fixture
async def pair(servers: Servers, instances: tuple[Server, Server]) -> AsyncIterator[Pair]:
    async with world_for(servers, instances[0]) as a, world_for(servers, instances[1]) as b:
        yield Pair(a, b)


async def test_typing_sent_on_one_instance_reaches_the_socket_on_the_other(pair: Pair) -> None:
    alice, bob, eve = await pair.a.person(), await pair.a.person(), await pair.a.person()
    match_id = await pair.a.match(alice, bob)
    on_a = await pair.a.socket(alice)
    on_b = await pair.b.socket(bob)
    eve_on_b = await pair.b.socket(eve)
    await on_a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    typing = await on_b.expect("typing")
    assert typing["data"] == {"match_id": str(match_id), "user_id": str(alice.id)}
    await eve_on_b.nothing(QUIET)


async def test_every_socket_of_a_user_on_both_instances_gets_the_event(pair: Pair) -> None:
    alice, bob = await pair.a.person(), await pair.a.person()
    match_id = await pair.a.match(alice, bob)
    bob_sockets = [await pair.a.socket(bob), await pair.b.socket(bob), await pair.b.socket(bob)]
    alice_on_b = await pair.b.socket(alice)
    await alice_on_b.send({"type": "typing", "data": {"match_id": str(match_id)}})
    for client in bob_sockets:
        assert (await client.expect("typing"))["data"]["user_id"] == str(alice.id)


async def test_logout_on_one_instance_closes_that_sessions_socket_on_the_other(pair: Pair) -> None:
    laptop = await pair.a.person()
    phone = await pair.a.sign_in(laptop.id, laptop.email)
    laptop_on_b = await pair.b.socket(laptop)
    phone_on_b = await pair.b.socket(phone)
    async with pair.a.http() as http:
        assert (await http.post("/api/v1/auth/logout", headers=laptop.headers)).status_code == 204
    assert await laptop_on_b.close_code(timeout=5) == UNAUTHENTICATED
    await phone_on_b.ping()


async def test_logout_all_on_one_instance_closes_every_socket_on_both(pair: Pair) -> None:
    laptop = await pair.a.person()
    phone = await pair.a.sign_in(laptop.id, laptop.email)
    sockets = [await pair.a.socket(laptop), await pair.b.socket(phone), await pair.b.socket(laptop)]
    async with pair.b.http() as http:
        assert (await http.post("/api/v1/auth/logout-all", headers=phone.headers)).status_code == 204
    for client in sockets:
        assert await client.close_code(timeout=5) == UNAUTHENTICATED


async def test_presence_is_one_per_user_across_instances(pair: Pair) -> None:
    alice, bob = await pair.a.person(), await pair.a.person()
    await pair.a.match(alice, bob)
    watcher = await pair.a.socket(bob, presence=True)
    on_b = await pair.b.socket(alice)
    assert (await watcher.expect("presence"))["data"] == {"user_id": str(alice.id), "bucket": "online"}
    on_a = await pair.a.socket(alice)  # already online (on the other instance): nothing new
    await on_a.ping()
    await on_b.close()  # still online on instance a
    await on_a.ping()
    await watcher.nothing(QUIET)
    await on_a.close()
    assert (await watcher.expect("presence"))["data"] == {"user_id": str(alice.id), "bucket": "today"}


# ---------------------------------------------------------------------------------------------- chat (API.md)


async def test_a_message_posted_to_one_instance_is_delivered_on_the_other(pair: Pair) -> None:
    sender, receiver = await pair.a.person(), await pair.a.person()
    match_id = await pair.a.match(sender, receiver)
    receiver_on_b = await pair.b.socket(receiver)
    async with pair.a.http() as http:
        response = await http.post(
            f"/api/v1/matches/{match_id}/messages",
            headers=sender.headers,
            json={"body": "Hello from instance A", "client_id": str(uuid.uuid4())},
        )
    assert response.status_code == 201, response.text
    message = response.json()
    event = await receiver_on_b.expect("message.new")
    assert event["data"]["message"] == message
    assert message["match_id"] == str(match_id) and message["sender_id"] == str(sender.id)


async def test_a_read_receipt_posted_to_one_instance_reaches_the_sender_on_the_other(pair: Pair) -> None:
    sender, receiver = await pair.a.person(), await pair.a.person()
    match_id = await pair.a.match(sender, receiver)
    sender_on_a = await pair.a.socket(sender)
    async with pair.a.http() as http:
        sent = await http.post(
            f"/api/v1/matches/{match_id}/messages",
            headers=sender.headers,
            json={"body": "Did you get this?", "client_id": str(uuid.uuid4())},
        )
    assert sent.status_code == 201, sent.text
    message_id = sent.json()["id"]
    async with pair.b.http() as http:
        read = await http.post(f"/api/v1/matches/{match_id}/read", headers=receiver.headers, json={"up_to": message_id})
    assert read.status_code == 204, read.text
    while True:  # the sender's own socket may hear its message.new first
        event = await sender_on_a.recv()
        if event["type"] == "message.read":
            break
        assert event["type"] == "message.new", event
    assert event["data"]["match_id"] == str(match_id)
    assert event["data"]["up_to"] == message_id
    assert isinstance(event["data"]["read_at"], str) and event["data"]["read_at"]
