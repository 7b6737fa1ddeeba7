"""Signing a socket in: the first-frame token, the cookie with an allowed Origin, and every refusal."""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.exceptions import InvalidStatus

from tests.e2e.test_server import Server
from tests.realtime.conftest import AUTH_TIMEOUT, EXTRA_ORIGIN, World, open_socket

pytestmark = pytest.mark.e2e

UNAUTHENTICATED = 4001


async def test_first_frame_auth_is_answered_with_auth_ok_and_user_id(world: World) -> None:
    person = await world.person()
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": person.token})
    ok = await client.expect("auth.ok")
    assert ok == {"type": "auth.ok", "data": {"user_id": str(person.id)}}
    await client.ping()


async def test_no_auth_frame_within_the_timeout_closes_4001(world: World) -> None:
    client = await world.raw_socket()
    started = time.monotonic()
    assert await client.close_code(timeout=AUTH_TIMEOUT + 3) == UNAUTHENTICATED
    assert time.monotonic() - started >= AUTH_TIMEOUT - 0.1
    assert client.received == []


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "auth", "token": "not-a-jwt"},
        {"type": "auth", "token": ""},
        {"type": "auth"},
        {"type": "auth", "token": 12345},
        {"type": "ping"},
        "not json at all",
    ],
    ids=["garbage-token", "empty-token", "no-token", "number-token", "ping-first", "malformed"],
)
async def test_a_bad_first_frame_closes_4001(world: World, frame: dict[str, object] | str) -> None:
    client = await world.raw_socket()
    await client.send(frame)
    assert await client.close_code() == UNAUTHENTICATED
    assert "auth.ok" not in client.types


async def test_a_token_signed_by_another_key_closes_4001(world: World) -> None:
    from kindred.kit.security import TokenSigner, generate_key_pair

    person = await world.person()
    private, public = generate_key_pair()
    forged = TokenSigner(private, public, issuer="kindred", audience="kindred-api", ttl=world.signer.ttl)
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": forged.issue(person.id, person.session_id)[0]})
    assert await client.close_code() == UNAUTHENTICATED


async def test_an_expired_token_closes_4001(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    person = await world.person()
    expired = world.signer.issue(person.id, person.session_id, datetime.now(UTC) - timedelta(hours=1))[0]
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": expired})
    assert await client.close_code() == UNAUTHENTICATED


async def test_an_unknown_session_closes_4001(world: World) -> None:
    import uuid

    person = await world.person()
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": world.signer.issue(person.id, uuid.uuid4())[0]})
    assert await client.close_code() == UNAUTHENTICATED


async def test_a_session_revoked_before_connecting_closes_4001(world: World) -> None:
    person = await world.person()
    async with world.http() as http:
        assert (await http.post("/api/v1/auth/logout", headers=person.headers)).status_code == 204
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": person.token})
    assert await client.close_code() == UNAUTHENTICATED


@pytest.mark.parametrize("parameter", ["token", "access_token"])
async def test_a_token_in_the_url_does_not_authenticate(world: World, server: Server, parameter: str) -> None:
    person = await world.person()
    client = await world.raw_socket(suffix=f"?{parameter}={person.token}")
    # Nothing signs the socket in: it waits for an auth frame and times out like any other.
    assert await client.close_code(timeout=AUTH_TIMEOUT + 3) == UNAUTHENTICATED
    assert client.received == []
    # ... and the server's log does not carry the token from the URL (the world fixture scans it too).
    assert person.token not in server.text()


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost.evil.example"])
async def test_a_disallowed_origin_is_refused_at_the_handshake_with_403(server: Server, origin: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await open_socket(server, origin=origin)
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("origin", ["http://localhost:3000", EXTRA_ORIGIN, "http://127.0.0.1:5173"])
async def test_an_allowed_origin_is_accepted_with_token_auth(world: World, origin: str) -> None:
    person = await world.person()
    client = await world.socket(person, origin=origin)
    await client.ping()


async def test_a_missing_origin_is_accepted_with_token_auth(world: World) -> None:
    # world.socket sends no Origin header, like a native app.
    person = await world.person()
    client = await world.socket(person)
    await client.ping()


async def test_the_access_cookie_authenticates_with_an_allowed_origin_and_no_frame(world: World) -> None:
    person = await world.person()
    client = await world.raw_socket(
        origin="http://localhost:3000", headers={"Cookie": f"kindred_access={person.token}"}
    )
    ok = await client.expect("auth.ok")
    assert ok["data"] == {"user_id": str(person.id)}
    await client.ping()


async def test_the_access_cookie_without_an_origin_does_not_authenticate(world: World) -> None:
    person = await world.person()
    client = await world.raw_socket(headers={"Cookie": f"kindred_access={person.token}"})
    await client.send({"type": "ping"})  # no auth frame: the cookie alone must not have signed it in
    assert await client.close_code() == UNAUTHENTICATED
    assert "auth.ok" not in client.types and "pong" not in client.types


async def test_an_invalid_access_cookie_closes_4001(world: World) -> None:
    client = await world.raw_socket(origin="http://localhost:3000", headers={"Cookie": "kindred_access=nonsense"})
    assert await client.close_code() == UNAUTHENTICATED


async def test_a_later_auth_frame_refreshes_the_token_of_the_same_user(world: World) -> None:
    person = await world.person()
    client = await world.socket(person)
    other_device = await world.sign_in(person.id, person.email)
    await client.send({"type": "auth", "token": other_device.token})
    assert (await client.expect("auth.ok"))["data"] == {"user_id": str(person.id)}
    await client.ping()


async def test_a_later_auth_frame_for_another_user_closes_4001(world: World) -> None:
    person, stranger = await world.person(), await world.person()
    client = await world.socket(person)
    await client.send({"type": "auth", "token": stranger.token})
    assert await client.close_code() == UNAUTHENTICATED


async def test_a_socket_outlives_its_access_token(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    person = await world.person()
    # Issued 14 min 58 s ago: valid now, expired (past the 5 s leeway) a few seconds into the socket.
    almost = world.signer.issue(person.id, person.session_id, datetime.now(UTC) - timedelta(minutes=14, seconds=58))
    client = await world.raw_socket()
    await client.send({"type": "auth", "token": almost[0]})
    await client.expect("auth.ok")
    await asyncio.sleep(0.1)
    await client.ping()
