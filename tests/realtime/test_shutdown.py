"""SIGTERM: every open socket closes with 1001 (going away), then `kindred serve` exits 0."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.realtime.conftest import Servers, world_for

pytestmark = pytest.mark.e2e


async def test_sigterm_closes_every_socket_with_1001_and_exits_0(servers: Servers) -> None:
    server = await asyncio.to_thread(servers.start, "shutdown")
    async with world_for(servers, server) as world:
        alice, bob = await world.person(), await world.person()
        await world.match(alice, bob)
        sockets = [await world.socket(alice), await world.socket(alice), await world.socket(bob)]
        waiting = await world.raw_socket()  # not signed in yet: closed the same way
        for client in sockets:
            await client.ping()

        started = time.monotonic()
        code = await asyncio.to_thread(server.stop)  # SIGTERM to our child, waits for it to exit
        stopped_in = time.monotonic() - started

        for client in [*sockets, waiting]:
            assert await client.close_code(timeout=2) == 1001
    assert code == 0, f"`kindred serve` exited with {code} after SIGTERM"
    assert stopped_in < 5, f"shutdown took {stopped_in:.1f}s"
    assert "Traceback" not in server.text()
    events = [record.get("event") for record in server.log_records()]
    assert "ws.closed_all" in events and "app.stopped" in events
    closed = [r for r in server.log_records() if r.get("event") == "ws.closed"]
    assert len(closed) == 4 and {r["code"] for r in closed} == {1001}
