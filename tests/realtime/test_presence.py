"""Presence: matches hear `online` when someone's first socket opens and a bucket when the last closes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.realtime.conftest import World

pytestmark = pytest.mark.e2e

QUIET = 0.5


async def test_a_match_hears_online_on_connect_and_today_on_disconnect(world: World) -> None:
    alice, bob = await world.person(), await world.person()
    await world.match(alice, bob)
    watcher = await world.socket(bob, presence=True)

    first = await world.socket(alice)
    online = await watcher.expect("presence")
    assert online == {"type": "presence", "data": {"user_id": str(alice.id), "bucket": "online"}}

    await first.close()
    offline = await watcher.expect("presence")
    assert offline == {"type": "presence", "data": {"user_id": str(alice.id), "bucket": "today"}}


async def test_only_the_first_socket_and_the_last_close_are_announced(world: World) -> None:
    alice, bob = await world.person(), await world.person()
    await world.match(alice, bob)
    watcher = await world.socket(bob, presence=True)
    phone = await world.sign_in(alice.id, alice.email)

    first = await world.socket(alice)
    assert (await watcher.expect("presence"))["data"]["bucket"] == "online"
    second = await world.socket(phone)
    await second.ping()
    await first.close()
    await second.ping()
    await watcher.nothing(QUIET)  # still online on the phone: nothing to say

    await second.close()
    assert (await watcher.expect("presence"))["data"] == {"user_id": str(alice.id), "bucket": "today"}


async def test_nobody_hears_the_presence_of_someone_who_hides_it(world: World) -> None:
    shy, bob = await world.person(hide_presence=True), await world.person()
    match_id = await world.match(shy, bob)
    watcher = await world.socket(bob, presence=True)

    client = await world.socket(shy)
    # Typing goes out after the connect's presence work: if a presence event were due, it came first.
    await client.send({"type": "typing", "data": {"match_id": str(match_id)}})
    assert (await watcher.expect("typing"))["data"]["user_id"] == str(shy.id)
    await client.close()
    await watcher.nothing(QUIET)
    assert "presence" not in watcher.types


async def test_presence_goes_to_open_matches_only(world: World) -> None:
    alice = await world.person()
    matched, unmatched, blocked, stranger = [await world.person() for _ in range(4)]
    await world.match(alice, matched)
    await world.unmatch(await world.match(alice, unmatched))
    await world.match(alice, blocked)
    await world.block(blocked, alice)
    watchers = {
        "matched": await world.socket(matched, presence=True),
        "unmatched": await world.socket(unmatched, presence=True),
        "blocked": await world.socket(blocked, presence=True),
        "stranger": await world.socket(stranger, presence=True),
    }

    await world.socket(alice)
    assert (await watchers["matched"].expect("presence"))["data"]["user_id"] == str(alice.id)
    for name in ("unmatched", "blocked", "stranger"):
        await watchers[name].nothing(QUIET / 3)
        assert "presence" not in watchers[name].types, name


async def test_connecting_updates_last_active_at(world: World) -> None:
    person = await world.person()
    assert await world.last_active_at(person) is None
    before = datetime.now(UTC) - timedelta(seconds=1)
    client = await world.socket(person)
    await client.ping()
    seen = await world.last_active_at(person)
    assert seen is not None and seen >= before
