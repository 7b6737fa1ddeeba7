"""Chat benchmark: a message POSTed on instance A until its `message.new` reaches a socket on instance B,
beside raw Redis PUBLISH → SUBSCRIBE at the same rate, in the same run.

Started by `bench/run.sh` (`make bench`) after bench_discover.py. Everything runs on this machine, 127.0.0.1 only:

1. creates its own scratch database (`<BENCH_DATABASE_URL's name>_chat`, dropped at the end, also on
   failure) and migrates it; the servers' Redis keys and every channel carry the prefix
   `kindred-bench-chat:` (its keys are deleted before and after);
2. starts two `kindred serve` processes, A and B (the API benchmark's environment, RATE_LIMIT_* budgets
   raised), on that database and Redis with the same CACHE_KEY_PREFIX, so they share `user:{id}` channels;
3. COPYs BENCH_CHAT_PAIRS matched pairs (verified accounts with a known password, kindred.ops.seed's
   `_person`), logs every sender in on A and every receiver on B, and opens each receiver's socket on B
   (`auth` first frame, `auth.ok`);
4. raw Redis, first half: redis-py asyncio PUBLISHes frames of a chat event's size on one channel per pair
   and a SUBSCRIBE connection (one for all channels, as each server has) receives them;
5. chat: an unmeasured warm-up, then POST /matches/{id}/messages on A from an open-loop schedule — message
   i is due at start + i / BENCH_CHAT_RATE, for pair i mod BENCH_CHAT_PAIRS, whether or not earlier ones
   were answered, so a slow server shows up as delay rather than as fewer messages (no coordinated
   omission). Per message: the delay from its due time (headline) and from the moment its POST was
   written until `message.new` arrives on the receiver's socket on B (matched by client_id), the POST's
   latency and status, and the message's `created_at` (A's clock) to split the path in two. The driver
   runs on uvloop and POSTs over a few keep-alive connections with a minimal HTTP/1.1 client (`Http1`:
   it shares the servers' two cores, and httpx cost several times more CPU per request);
6. raw Redis, second half (same rate; the two halves together send as many messages as the chat run);
7. CPU per message over the chat run: A, B, this database's PostgreSQL backends (/proc), Redis (INFO), the
   driver itself, and the machine as a whole (/proc/stat), so that neighbours' load is visible.

Target (issue 4): p99 delivery ≤ 50 ms at 200 messages/s on this 2-core machine, with the ratios to raw
Redis reported. Results are printed and written to `bench/results/chat.json`. Exit status 0 when the
measurement is valid, 1 when it is not (a POST that did not answer 201, a delivery lost, duplicated or sent
to the wrong person, a raw Redis message lost, the servers not on Redis and PostgreSQL, a server that died),
3 when BENCH_STRICT=1 and the target was missed. `python bench/bench_chat.py --cleanup` only drops the
database and deletes the keys.

Settings: BENCH_CHAT_RATE (200 messages/s), BENCH_CHAT_SECONDS (20), BENCH_CHAT_PAIRS (50),
BENCH_CHAT_WARMUP (3 s), BENCH_CHAT_CONNECTIONS (8 keep-alive HTTP connections to A), BENCH_CHAT_PROFILE=1
(A's event loop under cProfile during the measured run, CPU-timed: bench/results/chat-A.prof; its figures
are then slower), and the API benchmark's BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_STRICT,
BENCH_SCRATCH_DIR.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import random
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import common
import httpx
import redis.asyncio as aioredis
import uvloop
from common import (
    API,
    BENCH_DIR,
    CLOCK_TICKS,
    BenchError,
    Config,
    Processes,
    Server,
    copy_dicts,
    exit_on_signals,
    machine,
    migrate,
    recreate_database,
    scratch_config,
    server_env,
    server_password_hash,
    wait_until_up,
)
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from kindred.ops.seed import CITIES, _person
from kindred.realtime.events import frame
from kindred.settings import Settings

T = TypeVar("T")
RESULTS_FILE = BENCH_DIR / "results" / "chat.json"
PROFILE_FILE = BENCH_DIR / "results" / "chat-A.prof"
# BENCH_CHAT_PROFILE=1: instance A runs `kindred serve` under cProfile timed by the CPU time of its event
# loop's thread (waiting costs nothing, unlike cProfile's wall clock), from one SIGUSR1 to the next.
PROFILE_RUNNER = """
import cProfile, runpy, signal, sys, time
path, profile, active = sys.argv[1], cProfile.Profile(time.thread_time), []
def toggle(signum, frame):
    if active:
        profile.disable()
        profile.dump_stats(path)
        active.clear()
    else:
        profile.enable()
        active.append(True)
signal.signal(signal.SIGUSR1, toggle)
sys.argv = ["kindred", *sys.argv[2:]]
runpy.run_module("kindred.cli", run_name="__main__")
"""
KEY_PREFIX = "kindred-bench-chat:"  # the servers' CACHE_KEY_PREFIX and the raw channels' prefix
PASSWORD = "kindred bench chat password"
TARGET_RATE = 200.0  # messages/s the target is stated for
TARGET_P99_MS = 50.0
SUSTAINED_SHARE = 0.95  # delivered messages/s must reach this share of the schedule's rate
DRAIN_SECONDS = 5.0  # after the last answer, how long deliveries may still arrive before they count as lost
LATE_SEND_MS = 5.0  # a POST written this much after its due time counts as a late send (driver behind)
BODY = "Bench message {n}: how was your weekend? Coffee on Thursday sounds good to me."


@dataclasses.dataclass(frozen=True)
class ChatSettings:
    rate: float
    seconds: float
    pairs: int
    warmup: float
    connections: int
    profile: bool

    @classmethod
    def from_env(cls) -> ChatSettings:
        env = os.environ.get
        try:
            s = cls(
                rate=float(env("BENCH_CHAT_RATE") or TARGET_RATE),
                seconds=float(env("BENCH_CHAT_SECONDS") or 20),
                pairs=int(env("BENCH_CHAT_PAIRS") or 50),
                warmup=float(env("BENCH_CHAT_WARMUP") or 3),
                connections=int(env("BENCH_CHAT_CONNECTIONS") or 8),
                profile=env("BENCH_CHAT_PROFILE") == "1",
            )
        except ValueError as exc:
            raise BenchError(f"a BENCH_CHAT_* setting is not a number: {exc}") from None
        if s.rate <= 0 or s.seconds < 1 or s.pairs < 1 or s.warmup < 0 or s.connections < 1:
            raise BenchError("BENCH_CHAT_RATE > 0, BENCH_CHAT_SECONDS >= 1, PAIRS and CONNECTIONS >= 1 please")
        return s

    @property
    def messages(self) -> int:
        return round(self.rate * self.seconds)


async def delete_keys(redis_url: str) -> int:
    """Delete this benchmark's keys (KEY_PREFIX) and nothing else; return how many."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = [key async for key in client.scan_iter(match=KEY_PREFIX + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    except aioredis.RedisError as exc:
        raise BenchError(f"Redis at {redis_url} is required: {exc}") from exc
    finally:
        await client.aclose()


# ----------------------------------------------------------------------------- accounts


@dataclasses.dataclass
class Pair:
    match_id: uuid.UUID
    sender_id: uuid.UUID
    receiver_id: uuid.UUID
    sender_email: str
    receiver_email: str
    sender_token: str = ""
    receiver_token: str = ""


async def seed_pairs(dsn: str, count: int, password_hash: str) -> list[Pair]:
    """`count` matched pairs of verified, active accounts near one city, in one COPY transaction."""
    rng = random.Random(4)
    today = datetime.now(UTC).date()
    users, profiles, matches, pairs = [], [], [], []
    for n in range(count):
        people: list[dict[str, Any]] = []
        for role in ("sender", "receiver"):
            user, profile = _person(rng, 2 * n + len(people), CITIES["Berlin"], password_hash, today)
            user["email"] = f"bench.chat.{role}{n}@example.com"
            for key in ("interested_in", "interests", "prompts"):
                profile[key] = json.dumps(profile[key])
            users.append(user)
            profiles.append(profile)
            people.append(user)
        sender, receiver = people
        low, high = sorted((sender["id"], receiver["id"]))
        match_id = uuid.uuid4()
        now = datetime.now(UTC)
        matches.append((match_id, low, high, now, now))
        pairs.append(Pair(match_id, sender["id"], receiver["id"], sender["email"], receiver["email"]))
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        async with conn.transaction():
            await copy_dicts(conn, "users", users)
            await copy_dicts(conn, "profiles", profiles)
            cols = ["id", "user_low", "user_high", "created_at", "last_activity_at"]
            await conn.copy_records_to_table("matches", records=matches, columns=cols)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return pairs


async def log_in(client: httpx.AsyncClient, base_url: str, email: str, gate: asyncio.Semaphore) -> str:
    async with gate:
        response = await client.post(f"{base_url}{API}/auth/login", json={"email": email, "password": PASSWORD})
    if response.status_code != 200:
        raise BenchError(f"login of {email} answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["access_token"])


# ----------------------------------------------------------------------------- measurement


@dataclasses.dataclass
class Shot:
    """One message: when it was due, when its send started and was answered, when it arrived."""

    client_id: str
    pair: int
    due: float
    sent: float = 0.0  # when its request was written (or its PUBLISH called)
    sent_wall: float = 0.0  # time.time() at `sent`, to compare with the message's created_at
    answered: float = 0.0
    status: int | str = 0
    delivered: float | None = None
    created_at: float | None = None  # the message's created_at (A's clock), epoch seconds


async def open_loop(count: int, rate: float, fire: Callable[[int, float], Coroutine[Any, Any, None]]) -> float:
    """Start `fire(i, due)` at due = start + i / rate for every i, never waiting for earlier ones to
    finish; return the start. A late wake-up sends every message already due, each keeping its due time."""
    loop_time = time.perf_counter
    start = loop_time() + 0.05
    tasks: set[asyncio.Task[None]] = set()
    for i in range(count):
        due = start + i / rate
        delay = due - loop_time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    return start


class Receivers:
    """The receivers' sockets on B; every `message.new` is matched to its Shot by client_id."""

    def __init__(self) -> None:
        self.shots: dict[str, Shot] = {}
        self.duplicates = 0
        self.misdelivered = 0
        self.unknown = 0
        self.other_frames: Counter[str] = Counter()
        self.closed: list[str] = []
        self._sockets: list[ClientConnection] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def open(self, url: str, pairs: list[Pair]) -> None:
        """One socket per receiver: the `auth` frame first, then wait for `auth.ok` (subscribed by then)."""

        async def one(index: int, pair: Pair) -> ClientConnection:
            ws = await connect(url, open_timeout=10, max_size=2**20)
            await ws.send(json.dumps({"type": "auth", "token": pair.receiver_token}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if answer.get("type") != "auth.ok":
                raise BenchError(f"socket of receiver {index} answered {answer!r} instead of auth.ok")
            self._tasks.append(asyncio.create_task(self._read(index, ws, pair.match_id)))
            return ws

        self._sockets = list(await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs))))

    async def _read(self, index: int, ws: ClientConnection, match_id: uuid.UUID) -> None:
        expected = str(match_id)
        try:
            async for raw in ws:
                arrived = time.perf_counter()
                event = json.loads(raw)
                kind = event.get("type")
                if kind != "message.new":
                    self.other_frames[str(kind)] += 1
                    continue
                message = event["data"]["message"]
                shot = self.shots.get(message["client_id"])
                if message["match_id"] != expected:
                    self.misdelivered += 1
                elif shot is None:
                    self.unknown += 1
                elif shot.delivered is not None:
                    self.duplicates += 1
                else:
                    shot.delivered = arrived
                    shot.created_at = datetime.fromisoformat(message["created_at"]).timestamp()
        except ConnectionClosed as exc:
            self.closed.append(f"receiver {index}: {exc}")
        except (KeyError, TypeError, ValueError) as exc:  # not the frame API.md describes
            self.closed.append(f"receiver {index}: unreadable frame ({exc!r})")

    def still_open(self) -> int:
        return sum(1 for task in self._tasks if not task.done())

    async def close(self) -> None:
        await asyncio.gather(*(ws.close() for ws in self._sockets), return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def drain(shots: list[Shot], ok: Callable[[Shot], bool]) -> None:
    """Until every successful shot was delivered, or DRAIN_SECONDS after the last answer."""
    deadline = time.perf_counter() + DRAIN_SECONDS
    while time.perf_counter() < deadline and any(s.delivered is None for s in shots if ok(s)):
        await asyncio.sleep(0.02)


class Http1:
    """POSTs over `size` keep-alive HTTP/1.1 connections, with as few Python steps as possible.

    The load generator shares the two cores with both servers, PostgreSQL and Redis, so what it burns is
    taken from what it measures: with httpx.AsyncClient the driver cost 2.2 ms of CPU per message at 50/s
    (6.9 ms at 200/s, once requests queued in its pool), with this ~0.4 ms, socket frames included. A
    request waits for an idle connection; its delay is still counted from its due time. Responses must
    carry Content-Length (uvicorn's do).
    """

    def __init__(self, port: int, size: int) -> None:
        self.port, self.size = port, size
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _connect(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self._writers.add(writer)
        self._idle.put_nowait((reader, writer))

    async def __aenter__(self) -> Http1:
        await asyncio.gather(*(self._connect() for _ in range(self.size)))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self._writers), return_exceptions=True)

    async def post(self, path: str, body: bytes, token: str, shot: Shot) -> int:
        """The response's status (its body is read and dropped); `shot.sent` is when it was written."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await self._idle.get()
        healthy = False
        try:
            shot.sent, shot.sent_wall = time.perf_counter(), time.time()
            writer.write(head + body)
            status_line = await reader.readline()
            if not status_line:
                raise ConnectionResetError("the server closed the connection before answering")
            status = int(status_line.split(b" ", 2)[1])
            length = None
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if length is None:
                raise BenchError("a response without Content-Length")
            await reader.readexactly(length)
            healthy = True
            return status
        finally:
            if healthy:
                self._idle.put_nowait((reader, writer))
            else:  # replace it, so later requests still have `size` connections
                self._writers.discard(writer)
                writer.close()
                await self._connect()


async def chat_phase(
    http: Http1, receivers: Receivers, pairs: list[Pair], rate: float, count: int, tag: str
) -> tuple[list[Shot], float]:
    """`count` messages at `rate` over the pairs, POSTed on A; returns the shots and the schedule's start."""
    paths = [f"{API}/matches/{p.match_id}/messages" for p in pairs]
    shots: list[Shot] = []

    async def fire(i: int, due: float) -> None:
        pair = i % len(pairs)
        shot = Shot(client_id=f"{tag}{i}", pair=pair, due=due)
        shots.append(shot)
        receivers.shots[shot.client_id] = shot
        body = json.dumps({"body": BODY.format(n=i), "client_id": shot.client_id}).encode()
        try:
            shot.status = await http.post(paths[pair], body, pairs[pair].sender_token, shot)
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError, BenchError) as exc:
            shot.status = type(exc).__name__
        shot.answered = time.perf_counter()

    start = await open_loop(count, rate, fire)
    await drain(shots, lambda s: s.status == 201)
    return shots, start


def event_template(pairs: list[Pair]) -> dict[str, Any]:
    """A `message.new` frame's data as the server sends it, for raw frames of the same size."""
    pair = pairs[0]
    now = datetime.now(UTC).isoformat()
    message = {
        "id": str(uuid.uuid4()), "match_id": str(pair.match_id), "sender_id": str(pair.sender_id),
        "body": BODY.format(n=1000), "client_id": "", "created_at": now, "read_at": None,
    }  # fmt: skip
    return {"message": message}


async def raw_redis_phase(
    redis_url: str, channels: int, rate: float, count: int, template: dict[str, Any]
) -> tuple[list[Shot], float]:
    """PUBLISH `count` frames at `rate` over `channels` channels; one SUBSCRIBE connection receives all.

    Returns the shots and the schedule's start."""
    names = [f"{KEY_PREFIX}raw:{n}" for n in range(channels)]
    publisher = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
    listener = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
    pubsub = listener.pubsub()
    by_id: dict[str, Shot] = {}
    shots: list[Shot] = []
    tag = f"r{uuid.uuid4().hex[:6]}-"
    reader: asyncio.Task[None] | None = None
    try:
        await pubsub.subscribe(*names)
        acknowledged = 0
        while acknowledged < len(names):
            message = await pubsub.get_message(timeout=5)
            if message is None:
                raise BenchError("Redis did not acknowledge the raw SUBSCRIBE")
            acknowledged += message["type"] == "subscribe"

        async def read() -> None:
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                if message is None or message["type"] != "message":
                    continue
                arrived = time.perf_counter()
                data = json.loads(message["data"])["data"]["message"]  # the same parse a server does
                shot = by_id.get(data["client_id"])
                if shot is not None and shot.delivered is None:
                    shot.delivered = arrived

        reader = asyncio.create_task(read())
        data = template["message"]

        async def fire(i: int, due: float) -> None:
            shot = Shot(client_id=f"{tag}{i}", pair=i % channels, due=due)
            shots.append(shot)
            by_id[shot.client_id] = shot
            payload = frame("message.new", {"message": {**data, "client_id": shot.client_id}})
            shot.sent = time.perf_counter()
            try:
                await publisher.publish(names[shot.pair], payload)
                shot.status = 201  # "accepted", as for the chat shots
            except aioredis.RedisError as exc:
                shot.status = type(exc).__name__
            shot.answered = time.perf_counter()

        start = await open_loop(count, rate, fire)
        await drain(shots, lambda s: s.status == 201)
    finally:
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        await pubsub.aclose()
        await listener.aclose()
        await publisher.aclose()
    return shots, start


# ----------------------------------------------------------------------------- CPU accounting


def pid_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclasses.dataclass
class CpuSnapshot:
    at: float
    servers: dict[str, float]
    postgres: dict[int, float]
    redis: float
    driver: float
    busy: int
    total: int


async def cpu_snapshot(servers: list[Server], conn: asyncpg.Connection, redis_client: aioredis.Redis) -> CpuSnapshot:
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    info = await redis_client.info("cpu")
    busy, total = machine_ticks()
    return CpuSnapshot(
        at=time.perf_counter(),
        servers={s.name: s.cpu_seconds() for s in servers},
        postgres={r["pid"]: cpu for r in pids if (cpu := pid_cpu_seconds(r["pid"])) is not None},
        redis=float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        driver=time.process_time(),
        busy=busy,
        total=total,
    )


def cpu_usage(before: CpuSnapshot, after: CpuSnapshot, messages: int) -> dict[str, Any]:
    """CPU ms per message of each party over the interval, and the machine's busy share (of all cores)."""
    seconds = {name: after.servers[name] - before.servers[name] for name in after.servers}
    # Backends that exist at the end; one opened during the interval counts from its start.
    seconds["postgres"] = sum(cpu - before.postgres.get(pid, 0.0) for pid, cpu in after.postgres.items())
    seconds["redis"] = after.redis - before.redis
    seconds["driver"] = after.driver - before.driver
    wall = after.at - before.at
    cores = os.cpu_count() or 1
    machine_seconds = (after.busy - before.busy) / CLOCK_TICKS
    return {
        "wall_s": round(wall, 2),
        "ms_per_message": {k: round(1000 * v / messages, 3) for k, v in seconds.items()},
        "cores_used": {k: round(v / wall, 3) for k, v in seconds.items()},
        "machine_busy_share": round((after.busy - before.busy) / max(1, after.total - before.total), 3),
        "machine_cores_used": round(machine_seconds / wall, 3),
        "other_cores_used": round((machine_seconds - sum(seconds.values())) / wall, 3),
        "cores": cores,
        # One event loop per instance: A's CPU per message caps what it can accept with a whole core free.
        "a_ceiling_per_second": round(messages / seconds["A"], 1) if seconds["A"] > 0 else None,
    }


# ----------------------------------------------------------------------------- statistics


def distribution(values: list[float]) -> dict[str, float | int | None]:
    """Count, p50/p90/p95/p99/p99.9 (nearest rank) and max of values in seconds, as milliseconds."""
    if not values:
        return {"count": 0, "p50_ms": None, "p90_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * q / 100) - 1))], 2)

    return {
        "count": len(ordered),
        "p50_ms": rank(50),
        "p90_ms": rank(90),
        "p95_ms": rank(95),
        "p99_ms": rank(99),
        "p99_9_ms": rank(99.9),
        "max_ms": round(1000 * ordered[-1], 2),
        "mean_ms": round(1000 * sum(ordered) / len(ordered), 2),
    }


def summarize(shots: list[Shot], start: float) -> dict[str, Any]:
    ok = [s for s in shots if s.status == 201]
    # (shot, arrival) of every delivered one; with the message's created_at (A's clock) where known.
    arrived = [(s, s.delivered) for s in ok if s.delivered is not None]
    stamped = [(s, at, s.created_at) for s, at in arrived if s.created_at is not None]
    last = max((at for _, at in arrived), default=start)
    return {
        "messages": len(shots),
        "statuses": dict(Counter(str(s.status) for s in shots)),
        "delivered": len(arrived),
        "lost": len(ok) - len(arrived),
        # From the first due time to the last delivery: what the whole path really carried per second.
        "delivered_per_second": round(len(arrived) / (last - start), 1) if last > start else None,
        "scheduled_per_second": (
            round((len(shots) - 1) / (max(s.due for s in shots) - start), 1) if len(shots) > 1 else None
        ),
        "delivery_from_due": distribution([at - s.due for s, at in arrived]),
        "delivery_from_send": distribution([at - s.sent for s, at in arrived]),
        "response": distribution([s.answered - s.sent for s in shots if s.sent and s.answered]),
        # Due → written: the driver's lateness plus any wait for a free connection (the server is slow).
        "send_lag": distribution([s.sent - s.due for s in shots if s.sent]),
        "late_sends": sum(1 for s in shots if s.sent - s.due > LATE_SEND_MS / 1000),
        "delivered_before_response": sum(1 for s, at in arrived if at < s.answered),
        # Socket frame on B minus 201 on A (negative: the frame came first). A publishes before it answers,
        # so this is the Redis → B → socket hop against A's own remaining work for the response.
        "delivery_minus_response": distribution([at - s.answered for s, at in arrived]),
        # created_at is taken on A's clock, the same system clock as time.time() here.
        "send_to_created": distribution([created - s.sent_wall for s, _, created in stamped]),
        "created_to_delivery": distribution([(at - s.sent) - (created - s.sent_wall) for s, at, created in stamped]),
    }


def merged(first: list[Shot], second: list[Shot], start_first: float, start_second: float) -> dict[str, Any]:
    """The raw Redis halves as one distribution (rates from each half's own start)."""
    whole = summarize(first + second, min(start_first, start_second))
    halves = [summarize(first, start_first), summarize(second, start_second)]
    whole["delivered_per_second"] = round(sum(h["delivered_per_second"] or 0 for h in halves) / 2, 1)
    whole["scheduled_per_second"] = halves[0]["scheduled_per_second"]
    whole["halves_p99_ms"] = [h["delivery_from_due"]["p99_ms"] for h in halves]
    whole["halves_p50_ms"] = [h["delivery_from_due"]["p50_ms"] for h in halves]
    for key in ("send_to_created", "created_to_delivery", "delivered_before_response", "delivery_minus_response"):
        whole.pop(key)
    return whole


# ----------------------------------------------------------------------------- the run


async def drive(config: Config, bench: ChatSettings, a: Server, b: Server, hashed: str) -> dict[str, Any]:
    problems: list[str] = []
    pairs = await seed_pairs(config.asyncpg_dsn(), bench.pairs, hashed)
    print(f"bench chat: {len(pairs)} matched pairs seeded; logging in (senders on A, receivers on B)", flush=True)
    gate = asyncio.Semaphore(4)  # logins: argon2 runs on at most one thread per core anyway
    async with httpx.AsyncClient(timeout=30, trust_env=False) as client:
        tokens = await asyncio.gather(
            *(log_in(client, a.base_url, p.sender_email, gate) for p in pairs),
            *(log_in(client, b.base_url, p.receiver_email, gate) for p in pairs),
        )
        for pair, sender, receiver in zip(pairs, tokens[: len(pairs)], tokens[len(pairs) :], strict=True):
            pair.sender_token, pair.receiver_token = sender, receiver
        receivers = Receivers()
        await receivers.open(f"ws://127.0.0.1:{b.port}{API}/ws", pairs)
        print(f"bench chat: {len(pairs)} receiver sockets open on B", flush=True)

        template = event_template(pairs)
        half = bench.messages // 2
        print(f"  raw Redis PUBLISH → SUBSCRIBE (first half): {half} messages at {bench.rate:g}/s", flush=True)
        raw_1, raw_start_1 = await raw_redis_phase(config.redis_url, len(pairs), bench.rate, half, template)

        warm = round(bench.rate * bench.warmup)
        warm_shots: list[Shot] = []
        conn = await asyncpg.connect(config.asyncpg_dsn(), timeout=10)
        stats_redis = aioredis.Redis.from_url(config.redis_url, socket_timeout=2)
        try:
            async with Http1(a.port, bench.connections) as http:
                if warm:
                    print(f"  chat warm-up: {warm} messages at {bench.rate:g}/s (not measured)", flush=True)
                    warm_shots, _ = await chat_phase(http, receivers, pairs, bench.rate, warm, "w")
                    if any(s.status != 201 for s in warm_shots):
                        problems.append(f"warm-up statuses {dict(Counter(str(s.status) for s in warm_shots))}")
                load_before = os.getloadavg()
                if bench.profile:
                    a.process.send_signal(signal.SIGUSR1)  # start profiling
                before = await cpu_snapshot([a, b], conn, stats_redis)
                print(
                    f"  chat: {bench.messages} messages at {bench.rate:g}/s over {len(pairs)} pairs, POST on A "
                    f"({bench.connections} connections), socket on B",
                    flush=True,
                )
                shots, start = await chat_phase(http, receivers, pairs, bench.rate, bench.messages, "m")
                after = await cpu_snapshot([a, b], conn, stats_redis)
                if bench.profile:
                    a.process.send_signal(signal.SIGUSR1)  # stop and write the profile
                load_after = os.getloadavg()
            stored = await conn.fetchval("SELECT count(*) FROM messages")
        finally:
            await stats_redis.aclose()
            await conn.close()
        chat = summarize(shots, start)
        cpu = cpu_usage(before, after, len(shots))

        print(f"  raw Redis PUBLISH → SUBSCRIBE (second half): {bench.messages - half} messages", flush=True)
        raw_2, raw_start_2 = await raw_redis_phase(
            config.redis_url, len(pairs), bench.rate, bench.messages - half, template
        )
        raw = merged(raw_1, raw_2, raw_start_1, raw_start_2)

        open_sockets = receivers.still_open()
        await receivers.close()
        checks = {}
        for server in (a, b):
            detail = (await client.get(f"{server.base_url}/health/detailed")).json()["checks"]
            checks[server.name] = {"cache": detail["cache"]["mode"], "database": detail["database"]["dialect"]}

    sent_ok = sum(1 for s in shots + warm_shots if s.status == 201)
    if set(chat["statuses"]) != {"201"}:
        problems.append(f"POST statuses {chat['statuses']} (every send must be 201)")
    if chat["lost"]:
        problems.append(f"{chat['lost']} messages answered 201 never reached the receiver's socket on B")
    if receivers.duplicates or receivers.misdelivered or receivers.unknown:
        problems.append(
            f"deliveries: {receivers.duplicates} duplicated, {receivers.misdelivered} to the wrong socket, "
            f"{receivers.unknown} unknown"
        )
    if receivers.closed or open_sockets != len(pairs):
        problems.append(f"{len(pairs) - open_sockets} sockets ended during the run: {receivers.closed[:3]}")
    if stored != sent_ok:
        problems.append(f"{stored} messages stored, {sent_ok} answered 201")
    if raw["lost"] or set(raw["statuses"]) != {"201"}:
        problems.append(f"raw Redis: {raw['lost']} lost, publish results {raw['statuses']}")
    for name, check in checks.items():
        if check != {"cache": "redis", "database": "postgresql"}:
            problems.append(f"instance {name} ran with {check}")

    p99 = chat["delivery_from_due"]["p99_ms"]
    rate_met = (chat["delivered_per_second"] or 0) >= SUSTAINED_SHARE * bench.rate
    ratios = {
        f"{which}_{q}": round(chat[f"delivery_from_{which}"][f"{q}_ms"] / raw[f"delivery_from_{which}"][f"{q}_ms"], 2)
        for which in ("due", "send")
        for q in ("p50", "p99")
        if chat[f"delivery_from_{which}"][f"{q}_ms"] and raw[f"delivery_from_{which}"][f"{q}_ms"]
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {**dataclasses.asdict(bench), "messages": bench.messages},
        "servers": {s.name: {"port": s.port, "pid": s.process.pid, **s.loaded_modules()} for s in (a, b)},
        "server_checks": checks,
        "chat": chat,
        "raw_redis": raw,
        "ratios_kindred_over_raw": ratios,
        "cpu": cpu,
        "other_frames": dict(receivers.other_frames),
        "targets": {
            "delivery_p99_ms": {"value": p99, "target": TARGET_P99_MS, "met": p99 is not None and p99 <= TARGET_P99_MS},
            "delivered_per_second": {
                "value": chat["delivered_per_second"],
                "target": round(SUSTAINED_SHARE * bench.rate, 1),
                "met": rate_met,
            },
        },
        "valid": not problems,
        "problems": problems,
    }


def run(config: Config, bench: ChatSettings, workdir: Path, processes: Processes) -> dict[str, Any]:
    print(
        f"bench chat: scratch database {config.database_name}, Redis {config.redis_url} (prefix {KEY_PREFIX})",
        flush=True,
    )
    asyncio.run(delete_keys(config.redis_url))
    recreate_database(config)
    env = server_env(config, workdir)
    env["CACHE_KEY_PREFIX"] = KEY_PREFIX  # both instances: the same channels, apart from the other benchmarks
    migrate(env, workdir)
    settings = Settings(database_url=config.database_url, redis_url=config.redis_url, KINDRED_VAR_DIR=workdir / "var")
    hashed = server_password_hash(env, settings, PASSWORD)
    serve = ["serve", "--host", "127.0.0.1"]
    if bench.profile:
        PROFILE_FILE.parent.mkdir(parents=True, exist_ok=True)
        a_args = [sys.executable, "-c", PROFILE_RUNNER, str(PROFILE_FILE), *serve]
    else:
        a_args = [sys.executable, "-m", "kindred.cli", *serve]
    a = processes.start("A", a_args, env, workdir)
    wait_until_up(a, "/ready")  # A first: it generates the development keys B then reads
    b = processes.start("B", [sys.executable, "-m", "kindred.cli", *serve], env, workdir)
    wait_until_up(b, "/ready")
    print(f"bench chat: instance A on :{a.port} (pid {a.process.pid}), B on :{b.port} (pid {b.process.pid})")
    try:
        result = uvloop.run(until_signal(drive(config, bench, a, b, hashed)))
    finally:
        exit_on_signals()  # the event loop took the handlers over and reset them when it closed
    for name, info in result["servers"].items():
        for module in ("uvloop", "httptools"):
            if not info[module]:
                result["problems"].append(f"instance {name} did not load {module}")
    for server in (a, b):
        if server.process.poll() is not None:
            result["problems"].append(f"instance {server.name} exited during the run ({server.process.returncode})")
    result["valid"] = not result["problems"]
    return result


def _row(label: str, d: dict[str, Any], rate: float | None = None) -> str:
    per_second = f"{rate:>9.1f}" if rate is not None else f"{'':>9}"
    cells = "".join(
        f"{d[k]:>9.2f}" if d[k] is not None else f"{'-':>9}" for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")
    )
    return f"{label:<56}{d['count']:>7}{per_second}{cells}"


def print_report(result: dict[str, Any]) -> None:
    host, chat, raw, cpu = result["machine"], result["chat"], result["raw_redis"], result["cpu"]
    s = result["settings"]
    load = " / ".join(f"{x[0]:.2f}" for x in (host["loadavg_before"], host["loadavg_after"]))
    print()
    print(f"Kindred chat benchmark · {result['date']} · {host['cpus']} CPUs · {host['cpu_model']}")
    print(f"load average (1 min) before / after the chat run: {load}")
    servers = ", ".join(
        f"{n} :{i['port']} uvloop={i['uvloop']} httptools={i['httptools']}" for n, i in result["servers"].items()
    )
    print(f"instances: {servers}; checks {result['server_checks']}")
    print(
        f"{s['pairs']} pairs, {s['messages']} messages at {s['rate']:g}/s ({s['seconds']:g} s) after a "
        f"{s['warmup']:g} s warm-up; POST on A over {s['connections']} keep-alive connections, sockets on B"
    )
    print(f"{'delay':<56}{'count':>7}{'msg/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    print(
        _row(
            "kindred POST on A → message.new on B, from due time",
            chat["delivery_from_due"],
            chat["delivered_per_second"],
        )
    )
    print(_row("kindred POST on A → message.new on B, from POST written", chat["delivery_from_send"]))
    print(_row("kindred POST on A: response", chat["response"]))
    print(_row("raw Redis PUBLISH → SUBSCRIBE, from due time", raw["delivery_from_due"], raw["delivered_per_second"]))
    print(_row("raw Redis PUBLISH → SUBSCRIBE, from PUBLISH start", raw["delivery_from_send"]))
    print(
        f"  path split (p50 / p99 ms): POST written → created_at on A {chat['send_to_created']['p50_ms']} / "
        f"{chat['send_to_created']['p99_ms']}; created_at → socket on B {chat['created_to_delivery']['p50_ms']} / "
        f"{chat['created_to_delivery']['p99_ms']}; delivered before the 201 arrived: "
        f"{chat['delivered_before_response']} of {chat['delivered']} (frame minus 201, p50 / p99: "
        f"{chat['delivery_minus_response']['p50_ms']} / {chat['delivery_minus_response']['p99_ms']} ms)"
    )
    print(
        "  wait from due time to POST written (driver late or all connections busy) p50 / p99 / max: "
        f"{chat['send_lag']['p50_ms']} / {chat['send_lag']['p99_ms']} / {chat['send_lag']['max_ms']} ms; "
        f"late (> {LATE_SEND_MS:g} ms): "
        f"{chat['late_sends']}"
    )
    print(
        f"  statuses {chat['statuses']}; lost {chat['lost']}; raw Redis lost {raw['lost']}; raw halves p50 "
        f"{raw['halves_p50_ms']} p99 {raw['halves_p99_ms']} ms; other frames {result['other_frames']}"
    )
    ms = cpu["ms_per_message"]
    parts = ", ".join(f"{k} {v:.3f}" for k, v in ms.items())
    print(f"  CPU ms per message: {parts}")
    print(
        f"  A's ceiling at that CPU cost, one whole core to itself: {cpu['a_ceiling_per_second']} messages/s "
        "(one event loop per instance)"
    )
    print(
        f"  cores used over the chat run: {cpu['machine_cores_used']:.2f} of {cpu['cores']} (theirs "
        f"{cpu['other_cores_used']:.2f}: processes not in the list above)"
    )
    print()
    ratios = result["ratios_kindred_over_raw"]
    print(
        f"ratio kindred / raw Redis (from due time): p50 {ratios.get('due_p50', '-')}, p99 {ratios.get('due_p99', '-')}"
        f" (from POST written or PUBLISH call: p50 {ratios.get('send_p50', '-')}, p99 {ratios.get('send_p99', '-')})"
    )
    for name, target in result["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        sign = "<=" if name == "delivery_p99_ms" else ">="
        print(f"{name} = {target['value']} (target {sign} {target['target']:g} at {s['rate']:g}/s) {verdict}")
    if s["rate"] != TARGET_RATE:
        print(f"NOTE: the target is stated for {TARGET_RATE:g} messages/s; this run used {s['rate']:g}/s")
    if s["profile"]:
        print(f"NOTE: instance A ran under cProfile (slower than without): profile in {PROFILE_FILE.name}")
    for problem in result["problems"]:
        print(f"INVALID: {problem}")


async def until_signal(work: Awaitable[T]) -> T:
    """`work`, cancelled cleanly by SIGTERM or SIGINT (then SystemExit 128 + signal). A plain handler's
    SystemExit could surface inside a transport callback, where the event loop logs it instead."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    received: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        main.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop, signum)
    try:
        return await work
    except asyncio.CancelledError:
        if received:
            raise SystemExit(128 + received[0]) from None
        raise


def main() -> int:
    return common.main(
        "bench chat",
        __doc__,
        load=lambda: (scratch_config("_chat"), ChatSettings.from_env()),
        run=run,
        print_report=print_report,
        results_file=RESULTS_FILE,
        clear_keys=lambda config: asyncio.run(delete_keys(config.redis_url)),
        uses_wrk=False,
        failures=(httpx.HTTPError, asyncpg.PostgresError, aioredis.RedisError, OSError, ConnectionClosed),
    )


if __name__ == "__main__":
    sys.exit(main())
