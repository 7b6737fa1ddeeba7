"""Events reach exactly their user's sockets: typing between participants, never to anyone else."""

from __future__ import annotations

import pytest

from tests.realtime.conftest import World

pytestmark = pytest.mark.e2e

QUIET = 0.4  # how long "nothing arrives" is watched; every positive event here arrives in milliseconds


async def test_typing_reaches_the_other_participant_and_nobody_else(world: World) -> None:
    alice, bob, carol = await world.person(), await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    await world.match(alice, carol)  # Carol is Alice's match too, but not in this conversation
    a, b, c = await world.socket(alice), await world.socket(bob), await world.socket(carol)

    await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    typing = await b.expect("typing")
    assert typing == {"type": "typing", "data": {"match_id": str(match_id), "user_id": str(alice.id)}}
    await a.ping()  # the sender gets nothing back but its own pong
    assert "typing" not in a.types
    await c.nothing(QUIET)
    assert "typing" not in c.types


async def test_typing_with_a_flat_match_id_is_accepted_too(world: World) -> None:
    alice, bob = await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    a, b = await world.socket(alice), await world.socket(bob)
    await a.send({"type": "typing", "match_id": str(match_id)})
    assert (await b.expect("typing"))["data"]["user_id"] == str(alice.id)


async def test_typing_in_someone_elses_match_goes_nowhere(world: World) -> None:
    alice, bob, mallory = await world.person(), await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    a, b, m = await world.socket(alice), await world.socket(bob), await world.socket(mallory)
    await m.send({"type": "typing", "data": {"match_id": str(match_id)}})
    assert (await m.expect("error"))["data"]["code"] == "match_not_found"
    for client in (a, b):
        await client.nothing(QUIET)
        assert "typing" not in client.types


async def test_typing_in_an_unknown_match_is_match_not_found(world: World) -> None:
    import uuid

    client = await world.socket(await world.person())
    await client.send({"type": "typing", "data": {"match_id": str(uuid.uuid4())}})
    assert (await client.expect("error"))["data"]["code"] == "match_not_found"


@pytest.mark.parametrize("how", ["unmatched", "blocked-by-sender", "blocked-by-receiver"])
async def test_typing_in_a_closed_conversation_goes_nowhere(world: World, how: str) -> None:
    alice, bob = await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    a, b = await world.socket(alice), await world.socket(bob)
    await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    await b.expect("typing")  # open: it arrives
    if how == "unmatched":
        await world.unmatch(match_id)
    elif how == "blocked-by-sender":
        await world.block(alice, bob)
    else:
        await world.block(bob, alice)
    b.received.clear()
    await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    assert (await a.expect("error"))["data"]["code"] == "conversation_closed"
    await b.nothing(QUIET)
    assert "typing" not in b.types


async def test_more_than_three_typing_frames_a_second_are_refused(world: World) -> None:
    alice, bob = await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    a, b = await world.socket(alice), await world.socket(bob)
    for _ in range(5):
        await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    errors = [await a.expect("error") for _ in range(2)]
    assert [e["data"]["code"] for e in errors] == ["rate_limited", "rate_limited"]
    await a.ping()
    for _ in range(3):
        await b.expect("typing")
    await b.nothing(QUIET)


async def test_every_socket_of_a_user_gets_every_event(world: World) -> None:
    alice, bob = await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    bob_phone = await world.sign_in(bob.id, bob.email)
    a = await world.socket(alice)
    b1, b2, b3 = await world.socket(bob), await world.socket(bob_phone), await world.socket(bob)
    await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
    for client in (b1, b2, b3):
        assert (await client.expect("typing"))["data"]["match_id"] == str(match_id)


async def test_an_event_for_one_user_never_reaches_another_users_socket(world: World) -> None:
    alice, bob, eve = await world.person(), await world.person(), await world.person()
    match_id = await world.match(alice, bob)
    await world.match(eve, alice)
    await world.match(eve, bob)  # Eve is matched with both and still must not see their typing
    a, b, e = await world.socket(alice), await world.socket(bob), await world.socket(eve)
    for _ in range(3):
        await a.send({"type": "typing", "data": {"match_id": str(match_id)}})
        await b.send({"type": "typing", "data": {"match_id": str(match_id)}})
    for _ in range(3):
        await a.expect("typing")
        await b.expect("typing")
    await e.nothing(QUIET)
    assert "typing" not in e.types
