"""Real sockets against real `kindred serve` processes: servers, people in their database, socket clients.

One server per xdist worker serves the package (started on first use); tests that stop a server or
need two start their own. People, sessions and matches are written straight into the server's
database and access tokens are signed with the key pair the server was given, so a test costs no
sign-up round trips; what the socket layer sees is exactly what a signed-in client presents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kindred.kit.security import Passwords, TokenSigner, write_key_pair
from kindred.models import AuthSession, Block, Match, Profile, User
from tests.e2e.test_server import Server, _clean_env, _flush_redis_prefix, server_settings, start_server
from tests.support import leaks
from tests.support.stack import Stack, truncate_all, worker_id

PASSWORD = "correct horse battery staple"
WS_PATH = "/api/v1/ws"
AUTH_TIMEOUT = 1.0  # WS_AUTH_TIMEOUT for the test servers (the default, 5, is checked in test_units.py)
EXTRA_ORIGIN = "https://app.kindred.test"  # CORS_ORIGIN of the test servers
FRAME_TIMEOUT = 5.0  # no single wait in these tests is longer


# ---------------------------------------------------------------------------------------------- servers


@dataclass
class Keys:
    private: Path
    public: Path

    def signer(self) -> TokenSigner:
        return TokenSigner(
            self.private.read_bytes(),
            self.public.read_bytes(),
            issuer="kindred",
            audience="kindred-api",
            ttl=timedelta(minutes=15),
        )


@dataclass
class Servers:
    """Starts `kindred serve` processes on the test stack and cleans up after all of them."""

    stack: Stack
    root: Path
    keys: Keys
    started: list[Server] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    sqlite_files: dict[int, Path] = field(default_factory=dict)  # server port -> its database file
    server_prefixes: dict[int, str] = field(default_factory=dict)  # server port -> its CACHE_KEY_PREFIX

    @property
    def template(self) -> Path:
        return self.root / "template.db"

    def prepare(self) -> None:
        """SQLite: one migrated database file, copied for each server (a fresh, empty database each)."""
        if not self.stack.is_postgres:
            from kindred.ops.migrate import upgrade

            upgrade(f"sqlite+aiosqlite:///{self.template}")

    def new_prefix(self) -> str:
        prefix = f"krt:{worker_id()}:{uuid.uuid4().hex[:8]}:"
        self.prefixes.append(prefix)
        return prefix

    def _database(self, workdir: Path) -> tuple[str, Path | None]:
        if self.stack.is_postgres:
            return self.stack.database_url, None  # migrated by the `stack` fixture; shared by every server
        database = workdir / "kindred.db"
        shutil.copyfile(self.template, database)
        return f"sqlite+aiosqlite:///{database}", database

    def start(self, name: str, *, prefix: str | None = None, **extra: str) -> Server:
        """A server; servers given the same `prefix` share Redis channels and keys (one deployment)."""
        workdir = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        workdir.mkdir(parents=True)
        database_url, sqlite_file = self._database(workdir)
        prefix = prefix or self.new_prefix()
        values = {
            **server_settings(workdir, database_url, prefix, self.stack.redis_url),
            "JWT_PRIVATE_KEY_FILE": str(self.keys.private),
            "JWT_PUBLIC_KEY_FILE": str(self.keys.public),
            "CORS_ORIGIN": EXTRA_ORIGIN,
            "WS_AUTH_TIMEOUT": str(AUTH_TIMEOUT),
            **extra,
        }
        server = start_server(workdir, _clean_env(**values))
        self.started.append(server)
        self.server_prefixes[server.port] = prefix
        if sqlite_file is not None:
            self.sqlite_files[server.port] = sqlite_file
        return server

    def prefix_of(self, server: Server) -> str:
        return self.server_prefixes[server.port]

    def database_url(self, server: Server) -> str:
        sqlite_file = self.sqlite_files.get(server.port)
        return f"sqlite+aiosqlite:///{sqlite_file}" if sqlite_file else self.stack.database_url

    def close(self) -> None:
        running = [s for s in self.started if s.returncode is None and s.process.poll() is None]
        for server in running:  # SIGTERM to all of our own children first, then wait for each
            server.process.send_signal(signal.SIGTERM)
        for server in running:
            with contextlib.suppress(AssertionError):  # killed; the test that cared has reported
                server.stop()
        if self.stack.is_postgres and self.started:
            asyncio.run(truncate_all(self.stack.database_url))
        if self.stack.redis_url:
            for prefix in self.prefixes:
                _flush_redis_prefix(self.stack.redis_url, prefix)


@pytest.fixture(scope="package")
def servers(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    root = tmp_path_factory.mktemp("realtime")
    private, public = write_key_pair(root / "keys")
    factory = Servers(stack=stack, root=root, keys=Keys(private, public))
    factory.prepare()
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="package")
def server(servers: Servers) -> Server:
    return servers.start("main")


# ---------------------------------------------------------------------------------------------- sockets


def ws_url(server: Server, suffix: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}{WS_PATH}{suffix}"


async def open_socket(
    server: Server,
    *,
    suffix: str = "",
    origin: str | None = None,
    headers: dict[str, str] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> Client:
    connection = await connect(
        ws_url(server, suffix),
        origin=origin,  # type: ignore[arg-type]  # websockets' Origin is a NewType of str
        additional_headers=headers,
        proxy=None,
        open_timeout=FRAME_TIMEOUT,
        ping_interval=None,
        close_timeout=2,
        max_size=None,
    )
    return Client(connection, ignore=ignore)


class Client:
    """A socket as a test sees it: JSON frames in and out, every wait bounded."""

    def __init__(self, connection: ClientConnection, *, ignore: frozenset[str] = frozenset()) -> None:
        self.connection = connection
        self.ignore = ignore  # frame types recv() passes over (kept in `ignored`)
        self.received: list[dict[str, Any]] = []  # every other frame, in order
        self.ignored: list[dict[str, Any]] = []

    async def send(self, payload: dict[str, Any] | str) -> None:
        await self.connection.send(payload if isinstance(payload, str) else json.dumps(payload))

    async def recv(self, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                value: dict[str, Any] = json.loads(await self.connection.recv())
                if value["type"] not in self.ignore:
                    self.received.append(value)
                    return value
                self.ignored.append(value)

    async def expect(self, event_type: str, timeout: float = FRAME_TIMEOUT) -> dict[str, Any]:
        """The next frame, which must be of this type."""
        value = await self.recv(timeout)
        assert value["type"] == event_type, f"expected {event_type}, got {value}"
        return value

    async def nothing(self, seconds: float) -> None:
        """Assert that no frame arrives for `seconds`."""
        with contextlib.suppress(TimeoutError):
            value = await self.recv(seconds)
            raise AssertionError(f"unexpected frame: {value}")

    async def ping(self) -> None:
        """A round trip: proves the socket is open and that everything sent before it has arrived."""
        await self.send({"type": "ping"})
        await self.expect("pong")

    async def close_code(self, timeout: float = FRAME_TIMEOUT) -> int | None:
        """Wait for the server to close the socket; its close code (frames meanwhile go to `received`)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    raw = await self.connection.recv()
                except ConnectionClosed as closed:
                    return closed.rcvd.code if closed.rcvd is not None else None
                value = json.loads(raw)
                (self.ignored if value["type"] in self.ignore else self.received).append(value)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(3):
                await self.connection.close()

    @property
    def types(self) -> list[str]:
        return [value["type"] for value in self.received]


# ---------------------------------------------------------------------------------------------- people


@dataclass
class Person:
    id: uuid.UUID
    email: str
    session_id: uuid.UUID
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class World:
    """People, sessions, matches and blocks in one server's database, and sockets to that server."""

    def __init__(self, server: Server, engine: AsyncEngine, signer: TokenSigner, password_hash: str) -> None:
        self.server = server
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
        self.signer = signer
        self.password_hash = password_hash
        self.sockets: list[Client] = []

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.base_url, timeout=FRAME_TIMEOUT)

    async def person(self, *, hide_presence: bool = False, name: str = "Sam") -> Person:
        now = datetime.now(UTC)
        user_id = uuid.uuid4()
        email = leaks.canary(f"rt.{user_id.hex[:12]}@example.com")
        async with self.sessionmaker() as session, session.begin():
            session.add(
                User(
                    id=user_id,
                    email=email,
                    password_hash=self.password_hash,
                    birthdate=date(1994, 5, 6),
                    terms_version="2026-01",
                    email_verified_at=now,
                )
            )
            await session.flush()
            session.add(Profile(user_id=user_id, display_name=name, hide_presence=hide_presence))
        return await self.sign_in(user_id, email)

    async def sign_in(self, user_id: uuid.UUID, email: str) -> Person:
        """Another session (device) of the person."""
        now = datetime.now(UTC)
        session_id = uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            session.add(
                AuthSession(id=session_id, user_id=user_id, last_used_at=now, expires_at=now + timedelta(days=30))
            )
        token = leaks.canary(self.signer.issue(user_id, session_id)[0])
        return Person(id=user_id, email=email, session_id=session_id, token=token)

    async def match(self, a: Person, b: Person) -> uuid.UUID:
        low, high = sorted([a.id, b.id])
        match_id = uuid.uuid4()
        async with self.sessionmaker() as session, session.begin():
            session.add(Match(id=match_id, user_low=low, user_high=high))
        return match_id

    async def block(self, blocker: Person, blocked: Person) -> None:
        async with self.sessionmaker() as session, session.begin():
            session.add(Block(blocker_id=blocker.id, blocked_id=blocked.id))

    async def unmatch(self, match_id: uuid.UUID) -> None:
        async with self.sessionmaker() as session, session.begin():
            await session.execute(update(Match).where(Match.id == match_id).values(unmatched_at=datetime.now(UTC)))

    async def last_active_at(self, person: Person) -> datetime | None:
        async with self.sessionmaker() as session:
            return await session.scalar(select(User.last_active_at).where(User.id == person.id))

    async def raw_socket(self, **kwargs: Any) -> Client:
        client = await open_socket(self.server, **kwargs)
        self.sockets.append(client)
        return client

    async def socket(self, person: Person, *, presence: bool = False, **kwargs: Any) -> Client:
        """A socket signed in with the person's token in the first frame, past `auth.ok`.

        Presence frames (sockets of matches opening and closing) are passed over unless `presence`.
        """
        client = await self.raw_socket(ignore=frozenset() if presence else frozenset({"presence"}), **kwargs)
        await client.send({"type": "auth", "token": person.token})
        ok = await client.expect("auth.ok")
        assert ok["data"] == {"user_id": str(person.id)}
        return client

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self.sockets))


_PASSWORD_HASH: dict[str, str] = {}


def password_hash() -> str:
    if "hash" not in _PASSWORD_HASH:  # the servers' cheap argon2 parameters: verify is fast too
        _PASSWORD_HASH["hash"] = Passwords(1024, 1, 1).hash_sync(PASSWORD)
    return _PASSWORD_HASH["hash"]


@contextlib.asynccontextmanager
async def world_for(servers: Servers, server: Server) -> AsyncIterator[World]:
    engine = create_async_engine(servers.database_url(server))
    world = World(server, engine, servers.keys.signer(), password_hash())
    try:
        yield world
    finally:
        await world.close()
        await engine.dispose()


@pytest.fixture
async def world(servers: Servers, server: Server) -> AsyncIterator[World]:
    async with world_for(servers, server) as value:
        yield value
    # Nothing any test did may put a token, an email address or a password into the server's log.
    found = leaks.scan(server.log_text())
    assert not found, f"secrets or personal data in the server's log: {found[:5]}"
