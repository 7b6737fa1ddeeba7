"""The socket handler driven in-process through ASGI (no uvicorn in front): the limits it enforces itself,
the revocation backstop, the lifespan's shutdown close, and the pure pieces (origins, buckets, settings)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from kindred.auth.session_state import mark_revoked
from kindred.kit.cache import MemoryCache
from kindred.kit.email import MemoryEmailBackend
from kindred.realtime.events import SESSION_REVOKED, close_user_sessions, frame, parse, publish, user_channel
from kindred.realtime.origins import OriginPolicy
from kindred.realtime.presence import bucket_for, buckets, presence_key
from kindred.settings import Settings
from tests.support.factories import Account, verified_account

WAIT = 5.0


class AsgiSocket:
    """A WebSocket client speaking ASGI straight to the app, every wait bounded."""

    def __init__(self, app: FastAPI, headers: list[tuple[bytes, bytes]]) -> None:
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "ws",
            "server": ("testserver", 80),
            "client": ("127.0.0.1", 50000),
            "root_path": "",
            "path": "/api/v1/ws",
            "raw_path": b"/api/v1/ws",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), *headers],
            "subprotocols": [],
            "state": {},
            "extensions": {"websocket.http.response": {}},
        }
        self._to_app.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(app(scope, self._to_app.get, self._from_app.put))

    async def event(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._from_app.get(), WAIT)

    async def frame(self) -> dict[str, Any]:
        """The next text frame the app sent, as JSON."""
        message = await self.event()
        assert message["type"] == "websocket.send", message
        value: dict[str, Any] = json.loads(message["text"])
        return value

    async def close_code(self) -> int:
        """Skip frames until the app closes; its close code."""
        while True:
            message = await self.event()
            if message["type"] == "websocket.close":
                code: int = message["code"]
                return code

    def send(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._to_app.put_nowait({"type": "websocket.receive", "text": text})

    async def disconnect(self) -> None:
        self._to_app.put_nowait({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, WAIT)

    async def open(self, account: Account) -> None:
        assert (await self.event())["type"] == "websocket.accept"
        self.send({"type": "auth", "token": account.access_token})
        assert (await self.frame())["type"] == "auth.ok"


@pytest.fixture
async def sockets(app: FastAPI) -> AsyncIterator[list[AsgiSocket]]:
    opened: list[AsgiSocket] = []
    yield opened
    for socket in opened:
        if not socket.task.done():
            await socket.disconnect()


async def signed_in(app: FastAPI, sockets: list[AsgiSocket], account: Account) -> AsgiSocket:
    socket = AsgiSocket(app, [])
    sockets.append(socket)
    await socket.open(account)
    return socket


async def test_the_handler_itself_closes_a_frame_over_64_kib_with_1009(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sockets: list[AsgiSocket]
) -> None:
    socket = await signed_in(app, sockets, await verified_account(client, mail))
    padding = "é" * 40_000  # 40 000 characters, 80 000 bytes in UTF-8: the limit counts bytes
    socket.send('{"type": "ping", "padding": "' + padding + '"}')
    assert await socket.close_code() == 1009


async def test_a_disallowed_origin_gets_a_403_in_the_error_shape(app: FastAPI) -> None:
    socket = AsgiSocket(app, [(b"origin", b"https://evil.example")])
    start = await socket.event()
    assert start["type"] == "websocket.http.response.start" and start["status"] == 403
    body = json.loads((await socket.event())["body"])
    assert body["error"]["code"] == "forbidden"
    await asyncio.wait_for(socket.task, WAIT)


async def test_a_tombstone_alone_closes_the_socket_within_5_s(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sockets: list[AsgiSocket]
) -> None:
    """The backstop for a lost revocation event: the periodic session check finds the tombstone."""
    import jwt

    account = await verified_account(client, mail)
    socket = await signed_in(app, sockets, account)
    session_id = uuid.UUID(jwt.decode(account.access_token, options={"verify_signature": False})["sid"])
    await mark_revoked(app.state.cache, [session_id], app.state.settings.session_cache_ttl)  # no event
    started = asyncio.get_running_loop().time()
    assert await socket.close_code() == 4001
    assert asyncio.get_running_loop().time() - started < 5


async def test_the_lifespan_shutdown_closes_open_sockets_with_1001(
    settings: Settings, mail: MemoryEmailBackend
) -> None:
    from kindred.app import create_app
    from tests.support.stack import truncate_all

    application = create_app(settings, email_backend=mail)
    try:
        async with application.router.lifespan_context(application):
            transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                account = await verified_account(http, mail)
            socket = AsgiSocket(application, [])
            await socket.open(account)
        assert await socket.close_code() == 1001
        await socket.disconnect()
    finally:
        await truncate_all(settings.database_url or "")


async def test_internal_frames_are_not_forwarded_and_other_sessions_stay(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sockets: list[AsgiSocket]
) -> None:
    account = await verified_account(client, mail)
    socket = await signed_in(app, sockets, account)
    await close_user_sessions(app.state.cache, account.id, [uuid.uuid4()])  # some other session of theirs
    await publish(app.state.cache, [account.id], "_future.internal", {"x": 1})
    await app.state.cache.publish(user_channel(account.id), "not a frame")
    await publish(app.state.cache, [account.id], "match.removed", {"match_id": "m"})
    assert await socket.frame() == {"type": "match.removed", "data": {"match_id": "m"}}
    await close_user_sessions(app.state.cache, account.id)  # all of them
    assert await socket.close_code() == 4001


# ---------------------------------------------------------------------------------------------- pure pieces


def _policy(**values: Any) -> OriginPolicy:
    return OriginPolicy(Settings(**{"frontend_url": "https://kindred.example", **values}))  # type: ignore[arg-type]


def test_origins_allowed_exactly_by_frontend_url_and_cors_origin() -> None:
    policy = _policy(environment="production", cors_origin="https://admin.kindred.example")
    assert policy.allows("https://kindred.example")
    assert policy.allows("HTTPS://Kindred.Example:443")
    assert policy.allows("https://admin.kindred.example")
    for refused in (
        "http://kindred.example",
        "https://kindred.example.evil.test",
        "https://evil.test",
        "null",
        "http://localhost:3000",
        "",
    ):
        assert not policy.allows(refused), refused


def test_origins_by_regex_match_the_whole_origin() -> None:
    policy = _policy(environment="production", cors_origin_regex=r"https://pr-\d+\.preview\.kindred\.example")
    assert policy.allows("https://pr-42.preview.kindred.example")
    assert not policy.allows("https://pr-42.preview.kindred.example.evil.test")


def test_localhost_origins_are_allowed_in_development_only() -> None:
    assert _policy(environment="development").allows("http://localhost:5173")
    assert _policy(environment="development").allows("http://127.0.0.1:8080")
    assert not _policy(environment="test").allows("http://localhost:5173")
    assert not _policy(environment="development").allows("http://localhost.evil.test")


def test_buckets_by_last_activity() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert bucket_for(True, None, now) == "online"
    assert bucket_for(False, now - timedelta(hours=23), now) == "today"
    assert bucket_for(False, now - timedelta(days=6), now) == "this_week"
    assert bucket_for(False, now - timedelta(days=8), now) == "earlier"
    assert bucket_for(False, None, now) == "earlier"


async def test_buckets_read_presence_from_the_cache() -> None:
    cache = MemoryCache()
    now = datetime.now(UTC)
    online, recent, old, never = (uuid.uuid4() for _ in range(4))
    await cache.set(presence_key(online), "1", ttl=60)
    result = await buckets(
        cache, [(online, now - timedelta(days=30)), (recent, now - timedelta(hours=2)), (old, now - timedelta(days=3)),
                (never, None)], now=now,
    )  # fmt: skip
    assert result == {online: "online", recent: "today", old: "this_week", never: "earlier"}


def test_published_frames_parse_back() -> None:
    assert parse(frame("typing", {"match_id": "m"})) == ("typing", {"match_id": "m"})
    assert parse(frame(SESSION_REVOKED, {"all": True})) == (SESSION_REVOKED, {"all": True})
    assert parse("nonsense") is None and parse("[]") is None


def test_the_auth_timeout_defaults_to_5_seconds() -> None:
    assert Settings.model_fields["ws_auth_timeout"].default == 5.0
