"""An ended session closes its sockets with 4001 at once; the user's other sessions keep theirs."""

from __future__ import annotations

import time

import pytest

from tests.realtime.conftest import PASSWORD, World

pytestmark = pytest.mark.e2e

UNAUTHENTICATED = 4001
BOUND = 5.0  # API.md: a revoked session's sockets close within 5 s


async def test_logout_closes_that_sessions_sockets_and_leaves_the_other_sessions_open(world: World) -> None:
    laptop = await world.person()
    phone = await world.sign_in(laptop.id, laptop.email)
    on_laptop, also_on_laptop, on_phone = (
        await world.socket(laptop),
        await world.socket(laptop),
        await world.socket(phone),
    )
    async with world.http() as http:
        started = time.monotonic()
        assert (await http.post("/api/v1/auth/logout", headers=laptop.headers)).status_code == 204
    assert await on_laptop.close_code(timeout=BOUND) == UNAUTHENTICATED
    assert await also_on_laptop.close_code(timeout=BOUND) == UNAUTHENTICATED
    assert time.monotonic() - started < BOUND
    await on_phone.ping()
    # The internal revocation frame was never shown to any client.
    assert not [t for t in on_phone.types + on_laptop.types if t.startswith("_")]


async def test_logout_all_closes_every_socket_of_the_user(world: World) -> None:
    laptop = await world.person()
    phone = await world.sign_in(laptop.id, laptop.email)
    stranger = await world.person()
    sockets = [await world.socket(laptop), await world.socket(phone)]
    bystander = await world.socket(stranger)
    async with world.http() as http:
        assert (await http.post("/api/v1/auth/logout-all", headers=phone.headers)).status_code == 204
    for client in sockets:
        assert await client.close_code(timeout=BOUND) == UNAUTHENTICATED
    await bystander.ping()


async def test_revoking_one_session_from_the_sessions_list_closes_its_socket(world: World) -> None:
    laptop = await world.person()
    phone = await world.sign_in(laptop.id, laptop.email)
    on_laptop, on_phone = await world.socket(laptop), await world.socket(phone)
    async with world.http() as http:
        response = await http.delete(f"/api/v1/auth/sessions/{phone.session_id}", headers=laptop.headers)
        assert response.status_code == 204, response.text
    assert await on_phone.close_code(timeout=BOUND) == UNAUTHENTICATED
    await on_laptop.ping()


async def test_a_password_change_closes_the_other_sessions_sockets(world: World) -> None:
    laptop = await world.person()
    phone = await world.sign_in(laptop.id, laptop.email)
    on_laptop, on_phone = await world.socket(laptop), await world.socket(phone)
    async with world.http() as http:
        response = await http.post(
            "/api/v1/auth/change-password",
            headers=laptop.headers,
            json={"current_password": PASSWORD, "new_password": "an entirely new passphrase"},
        )
        assert response.status_code == 204, response.text
    assert await on_phone.close_code(timeout=BOUND) == UNAUTHENTICATED
    await on_laptop.ping()
