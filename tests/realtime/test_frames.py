"""Client frames once signed in: ping, errors that keep the socket, the size and flood limits."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from websockets.exceptions import ConnectionClosed

from tests.realtime.conftest import World

pytestmark = pytest.mark.e2e

TOO_BIG = 1009
POLICY_VIOLATION = 1008


async def test_ping_is_answered_with_pong(world: World) -> None:
    client = await world.socket(await world.person())
    await client.send({"type": "ping"})
    pong = await client.expect("pong")
    assert pong["type"] == "pong"


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("{not json", "malformed_frame"),
        ("[1, 2, 3]", "malformed_frame"),
        ('{"no_type": true}', "malformed_frame"),
        ('{"type": 7}', "malformed_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "typing"}', "validation_error"),
        ('{"type": "typing", "match_id": "not-a-uuid"}', "validation_error"),
    ],
    ids=["bad-json", "array", "no-type", "number-type", "unknown-type", "typing-no-match", "typing-bad-id"],
)
async def test_a_bad_frame_gets_an_error_frame_and_the_socket_stays_open(world: World, sent: str, code: str) -> None:
    client = await world.socket(await world.person())
    await client.send(sent)
    error = await client.expect("error")
    assert error["data"]["code"] == code
    assert isinstance(error["data"]["message"], str) and error["data"]["message"]
    await client.ping()


async def test_a_binary_frame_gets_an_error_frame(world: World) -> None:
    client = await world.socket(await world.person())
    await client.connection.send(b'{"type": "ping"}')
    assert (await client.expect("error"))["data"]["code"] == "malformed_frame"
    await client.ping()


async def test_a_frame_over_64_kib_closes_1009(world: World) -> None:
    client = await world.socket(await world.person())
    await client.send({"type": "ping", "padding": "x" * (64 * 1024)})
    assert await client.close_code() == TOO_BIG


async def test_a_frame_of_just_under_64_kib_is_fine(world: World) -> None:
    client = await world.socket(await world.person())
    frame = '{"type":"ping","padding":"' + "x" * (64 * 1024 - 100) + '"}'
    assert len(frame.encode()) <= 64 * 1024
    await client.send(frame)
    await client.expect("pong")


async def test_an_oversized_first_frame_closes_1009_before_auth(world: World) -> None:
    client = await world.raw_socket()
    await client.send("x" * (64 * 1024 + 1))
    assert await client.close_code() == TOO_BIG


async def test_more_than_20_frames_in_a_second_close_1008(world: World) -> None:
    client = await world.socket(await world.person())  # the auth frame counts too
    with contextlib.suppress(ConnectionClosed):  # the server may close while we are still sending
        for _ in range(60):
            await client.send({"type": "ping"})
    assert await client.close_code() == POLICY_VIOLATION
    assert client.types.count("pong") <= 20


async def test_20_frames_spread_over_more_than_a_second_are_fine(world: World) -> None:
    client = await world.socket(await world.person())
    await asyncio.sleep(1.05)  # the auth frame leaves the window
    for _ in range(10):
        await client.send({"type": "ping"})
    for _ in range(10):
        await client.expect("pong")
    await asyncio.sleep(1.05)
    for _ in range(20):
        await client.send({"type": "ping"})
    for _ in range(20):
        await client.expect("pong")
