"""Discovery benchmark: `GET /api/v1/discover` at 10k and 100k profiles, against the same query's raw SQL.

Started by `bench/run.sh` (`make bench`) after bench_api.py. Everything runs on this machine, 127.0.0.1 only:

1. creates its own scratch database (`<BENCH_DATABASE_URL's name>_discover`, dropped at the end) and
   migrates it with `kindred migrate`;
2. seeds it with COPY (asyncpg): BENCH_DISCOVER_SIZES profiles (default 10000,100000) around one city
   (kindred.ops.seed's `_person`: verified, within 20 km, the seed's mix of genders, preferences and ages;
   one argon2 hash), 1-3 photos each, 10 swipes per profile (random targets, never oneself, unique pairs),
   plus a few matches, blocks and reports; a handful of viewer accounts with a known password sit at the
   city centre; then VACUUM ANALYZE;
3. starts one `kindred serve` (the API benchmark's settings; RATE_LIMIT_* budgets raised unless set), logs
   the viewers in and drives `GET /api/v1/discover?limit=20` with wrk, concurrency 10, a fixed number of
   responses, each request with the next viewer's Bearer token (bench/wrk/discover.lua);
4. runs the same queries in this process, sequentially — a first page's SQL as DiscoveryService.discover
   runs it: `window_floor` (the DISCOVERY_WINDOW-th most recently active candidate) then `candidates(limit=21)`
   in that window — on the server's engine settings, BENCH_DISCOVER_SQL_RUNS times;
5. prints EXPLAIN (ANALYZE, BUFFERS) of both queries for one viewer and which indexes the page query uses;
6. adds profiles up to the next size (same seed rules), ANALYZE again, and repeats 3-5.

Results go to `bench/results/discover.json`. Exit status 0 when the measurement is valid, 1 when not, 3 when
BENCH_STRICT=1 and a target was missed. `python bench/bench_discover.py --cleanup` only drops the database.
Settings: BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_DISCOVER_SIZES, BENCH_DISCOVER_REQUESTS (>= 500),
BENCH_DISCOVER_CONNECTIONS (10), BENCH_DISCOVER_SQL_RUNS (>= 200), BENCH_DISCOVER_VIEWERS, BENCH_STRICT,
BENCH_SCRATCH_DIR.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import common
import httpx
from common import (
    API,
    BENCH_DIR,
    BenchError,
    Config,
    Processes,
    Server,
    clear_cache_keys,
    copy_dicts,
    machine,
    migrate,
    recreate_database,
    scratch_config,
    server_env,
    server_password_hash,
    wait_until_up,
    wrk_figures,
    wrk_result,
)
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from kindred.discovery.repository import DiscoveryRepository, Viewer, Window
from kindred.kit.db import build_engine
from kindred.ops.seed import CITIES, _person
from kindred.profiles import geo
from kindred.settings import Settings

RESULTS_FILE = BENCH_DIR / "results" / "discover.json"
DISCOVER_LUA = BENCH_DIR / "wrk" / "discover.lua"
CITY = CITIES["Berlin"]
PASSWORD = "kindred bench viewer password"
SWIPES_PER_PROFILE = 10
SCALE_TARGET = 2.0  # p95 at the largest size / p95 at the smallest
OVERHEAD_TARGET = 3.0  # HTTP p50 / raw SQL p50, at each size
# Index names in the plan (naming convention in kindred/models/base.py) for each lookup.
EXCLUSION_TABLES = ("swipes", "matches", "blocks", "reports")
SWIPES_UNIQUE = "uq_swipes_swiper_id_target_id"


@dataclasses.dataclass(frozen=True)
class Settings_:
    sizes: tuple[int, ...]
    requests: int
    connections: int
    sql_runs: int
    viewers: int

    @classmethod
    def from_env(cls) -> Settings_:
        env = os.environ.get
        try:
            sizes = tuple(int(s) for s in (env("BENCH_DISCOVER_SIZES") or "10000,100000").split(","))
            s = cls(
                sizes=sizes,
                requests=int(env("BENCH_DISCOVER_REQUESTS") or 500),
                connections=int(env("BENCH_DISCOVER_CONNECTIONS") or 10),
                sql_runs=int(env("BENCH_DISCOVER_SQL_RUNS") or 200),
                viewers=int(env("BENCH_DISCOVER_VIEWERS") or 8),
            )
        except ValueError as exc:
            raise BenchError(f"a BENCH_DISCOVER_* setting is not a number: {exc}") from None
        if list(s.sizes) != sorted(s.sizes) or s.sizes[0] < 100 or s.viewers < 2 or s.connections < 2:
            raise BenchError("BENCH_DISCOVER_SIZES must be ascending (>= 100); viewers and connections >= 2")
        return s


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# ----------------------------------------------------------------------------- seeding


class Seeder:
    """Bulk COPY of users, profiles, photos, swipes, matches, blocks and reports, size by size."""

    def __init__(self, dsn: str, password_hash: str, viewers: int, seed: int = 11) -> None:
        self.dsn = dsn
        self.password_hash = password_hash
        self.rng = random.Random(seed)
        self.ids: list[uuid.UUID] = []
        self.viewer_count = viewers
        self.viewer_emails: list[str] = []
        self.match_pairs: set[tuple[uuid.UUID, uuid.UUID]] = set()
        self.today = datetime.now(UTC).date()

    def _viewer(self, n: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """A viewer at the city centre, 30 years old, with ordinary preferences and a known password."""
        user, profile = _person(self.rng, 0, CITY, self.password_hash, self.today)
        gender, interested_in = (("woman", ["man"]), ("man", ["woman"]), ("woman", ["woman", "man"]))[n % 3]
        user["email"] = f"bench.viewer{n}@example.com"
        user["birthdate"] = self.today - timedelta(days=30 * 365 + 100)
        user["last_active_at"] = datetime.now(UTC)
        cell_lat, cell_lng = geo.snap(*CITY)
        profile.update(gender=gender, interested_in=interested_in, age_min=24, age_max=38, max_distance_km=50,
                       lat=CITY[0], lng=CITY[1], cell_lat=cell_lat, cell_lng=cell_lng)  # fmt: skip
        return user, profile

    async def grow(self, total: int) -> dict[str, Any]:
        """Add profiles (and their swipes etc.) until there are `total`; returns counts and seconds."""
        began = time.perf_counter()
        rng = self.rng
        users: list[dict[str, Any]] = []
        profiles: list[dict[str, Any]] = []
        start = len(self.ids)
        for n in range(start, total):
            if n < self.viewer_count:
                user, profile = self._viewer(n)
                self.viewer_emails.append(user["email"])
            else:
                user, profile = _person(rng, n, CITY, self.password_hash, self.today)
                user["email"] = f"bench.member{n}@example.com"
                if rng.random() < 0.005:
                    profile["boost_until"] = datetime.now(UTC) + timedelta(minutes=20)
            for key in ("interested_in", "interests", "prompts"):
                profile[key] = json.dumps(profile[key])
            users.append(user)
            profiles.append(profile)
        new_ids = [u["id"] for u in users]
        self.ids.extend(new_ids)
        everyone = self.ids
        photos = [
            (uuid.uuid4(), u["id"], pos, "approved", f"demo{rng.randrange(8):02d}", 1080, 1350, u["created_at"])
            for u in users
            for pos in range(rng.randint(1, 3))
        ]
        now = datetime.now(UTC)
        swipes = []
        for swiper in new_ids:
            targets: set[uuid.UUID] = set()
            while len(targets) < SWIPES_PER_PROFILE:
                target = everyone[rng.randrange(len(everyone))]
                if target != swiper:
                    targets.add(target)
            for target in targets:
                action = rng.choices(("pass", "like", "superlike"), weights=(60, 38, 2))[0]
                swipes.append((uuid.uuid4(), swiper, target, action, now - timedelta(hours=rng.randint(0, 900))))
        matches, blocks, reports = [], [], []
        viewers = set(self.ids[: self.viewer_count])
        for n, person in enumerate(new_ids):
            kinds = ["match"] * (2 if person in viewers else int(n % 10 == 0))
            kinds += ["block"] * (1 if person in viewers else int(n % 20 == 0))
            kinds += ["report"] * (1 if person in viewers else int(n % 50 == 0))
            for kind in kinds:
                other = everyone[rng.randrange(len(everyone))]
                if other == person:
                    continue
                if kind == "match":
                    low, high = sorted((person, other))
                    if (low, high) not in self.match_pairs:
                        self.match_pairs.add((low, high))
                        matches.append((uuid.uuid4(), low, high, now, now))
                elif kind == "block":
                    blocks.append((person, other, now))
                else:
                    reports.append((uuid.uuid4(), person, other, "spam", "open", now))
        blocks = list({(b[0], b[1]): b for b in blocks}.values())
        conn = await asyncpg.connect(self.dsn, timeout=10)
        try:
            async with conn.transaction():
                await copy_dicts(conn, "users", users)
                await copy_dicts(conn, "profiles", profiles)
                cols = ["id", "user_id", "position", "status", "storage_key", "width", "height", "created_at"]
                await conn.copy_records_to_table("photos", records=photos, columns=cols)
                cols = ["id", "swiper_id", "target_id", "action", "created_at"]
                await conn.copy_records_to_table("swipes", records=swipes, columns=cols)
                cols = ["id", "user_low", "user_high", "created_at", "last_activity_at"]
                await conn.copy_records_to_table("matches", records=matches, columns=cols)
                cols = ["blocker_id", "blocked_id", "created_at"]
                await conn.copy_records_to_table("blocks", records=blocks, columns=cols)
                cols = ["id", "reporter_id", "reported_id", "reason", "status", "created_at"]
                await conn.copy_records_to_table("reports", records=reports, columns=cols)
            seeded = time.perf_counter() - began
            # A database in steady state has been vacuumed and analysed (autovacuum); do it now.
            await conn.execute("VACUUM (ANALYZE)")
            counts = {
                table: await conn.fetchval(f"SELECT count(*) FROM {table}")
                for table in ("users", "profiles", "photos", "swipes", "matches", "blocks", "reports")
            }
        finally:
            await conn.close()
        return {
            "counts": counts,
            "seed_seconds": round(seeded, 1),
            "vacuum_analyze_seconds": round(time.perf_counter() - began - seeded, 1),
        }


# ----------------------------------------------------------------------------- HTTP


def login(server: Server, email: str) -> str:
    response = httpx.post(
        f"{server.base_url}{API}/auth/login",
        json={"email": email, "password": PASSWORD},
        timeout=60,
        trust_env=False,
    )
    if response.status_code != 200:
        raise BenchError(f"login of {email} answered {response.status_code}: {response.text[:300]}")
    return str(response.json()["access_token"])


def wrk_discover(server: Server, tokens: list[str], *, seconds: int, connections: int) -> dict[str, Any]:
    """One wrk run of `seconds` (2 threads, `connections` connections), tokens rotating per request."""
    url = f"{server.base_url}{API}/discover?limit=20"
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", "-s", str(DISCOVER_LUA), url]
    raw = wrk_result([*args, "--", *tokens], url, timeout=seconds + 60)
    return {
        **wrk_figures(raw, percentiles=(50, 90, 95, 99), seconds_digits=2),
        "statuses": {int(k): v for k, v in raw.get("statuses", {}).items()},
        "socket_errors": sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")),
        "connections": connections,
    }


# ----------------------------------------------------------------------------- raw SQL and plan


async def first_page(repo: DiscoveryRepository, viewer: Viewer, window_size: int, limit: int = 21) -> list[Any]:
    """The SQL of a first feed page, as DiscoveryService.discover runs it: the window's floor, then its page."""
    as_of = datetime.now(UTC)
    floor = await repo.window_floor(viewer, as_of=as_of, upper=None, size=window_size)
    return await repo.candidates(viewer, as_of=as_of, window=Window(upper=None, floor=floor), limit=limit, after=None)


async def explain(conn: Any, statement: str, parameters: Any) -> list[str]:
    raw = await conn.get_raw_connection()
    args = list(parameters) if isinstance(parameters, (list, tuple)) else list(parameters.values())
    return [r[0] for r in await raw.driver_connection.fetch("EXPLAIN (ANALYZE, BUFFERS) " + statement, *args)]


async def raw_sql(settings: Settings, viewer_ids: list[uuid.UUID], runs: int) -> dict[str, Any]:
    """A first page's queries, sequentially, on an engine built exactly like the server's; then EXPLAIN."""
    engine = build_engine(settings)
    captured: list[tuple[str, Any]] = []
    window = settings.discovery_window

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        captured.append((statement, parameters))

    try:
        async with engine.connect() as conn, AsyncSession(bind=conn) as session:
            repo = DiscoveryRepository(session)
            today = datetime.now(UTC).date()
            viewers: list[Viewer] = []
            for user_id in viewer_ids:
                viewer = await repo.viewer(user_id, today)
                assert viewer is not None
                viewers.append(viewer)
            sizes: list[int] = []
            for n in range(10):  # warm-up: prepared statements, caches
                await first_page(repo, viewers[n % len(viewers)], window)
            timings: list[float] = []
            for n in range(runs):
                viewer = viewers[n % len(viewers)]
                began = time.perf_counter()
                rows = await first_page(repo, viewer, window)
                timings.append((time.perf_counter() - began) * 1000)
                sizes.append(len(rows))
                await session.rollback()  # each HTTP request is its own transaction too
            event.listen(engine.sync_engine, "before_cursor_execute", capture)
            await first_page(repo, viewers[0], window)
            event.remove(engine.sync_engine, "before_cursor_execute", capture)
            # In order: the walk's slice queries (ending with the one applying the rules), then the page's
            # window query (its rank column is labelled "rank") and the query for the boosted outside it.
            ranked = [i for i, (statement, _) in enumerate(captured) if "AS rank" in statement]
            floor_plan = await explain(conn, *captured[ranked[0] - 1])
            plan = await explain(conn, *captured[ranked[0]])
            await session.rollback()
            everything = Window(upper=None, floor=None)
            everyone = await repo.candidates(
                viewers[0], as_of=datetime.now(UTC), window=everything, limit=10**7, after=None
            )
            compatible = len(everyone)
            await session.rollback()
    finally:
        await engine.dispose()
    return {
        "runs": runs,
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        "rows_min": min(sizes),
        "plan": plan,
        "floor_plan": floor_plan,
        "window": window,
        "plan_viewer_candidates": compatible,
    }


def index_use(plan: list[str], viewer_id: uuid.UUID) -> dict[str, dict[str, Any]]:
    """Per lookup: the indexes the plan reads it through, and whether any table is read by a Seq Scan."""
    found: dict[str, dict[str, Any]] = {}
    # The window is an index range on users.last_active_at; profiles join by primary key.
    candidates = [ln for ln in plan if (" on profiles" in ln or " on users" in ln) and "Index" in ln]
    names = {ln.split(" using ")[1].split()[0] for ln in candidates if " using " in ln}
    names |= {ln.split(" Scan on ")[1].split()[0] for ln in candidates if "Bitmap Index Scan on" in ln}
    found["candidates (users, profiles)"] = {
        "indexes": sorted(names),
        "uses_index": "ix_users_last_active_at" in names
        and not any("Seq Scan on profiles" in ln or "Seq Scan on users" in ln for ln in plan),
    }
    for table in EXCLUSION_TABLES:
        # "Bitmap Index Scan on <index>" names only the index; the naming convention puts the table in it.
        lines = [ln for ln in plan if f" on {table}" in ln or f"Bitmap Index Scan on {table}" in ln]
        lines += [ln for ln in plan if "Bitmap Index Scan on " in ln and f"_{table}_" in ln + "_"]
        indexes = sorted(
            {ln.split(" using ")[1].split()[0] for ln in lines if " using " in ln}
            | {ln.split(" Scan on ")[1].split()[0] for ln in lines if "Bitmap Index Scan on" in ln}
        )
        found[table] = {"indexes": indexes, "uses_index": bool(indexes) and not any("Seq Scan" in ln for ln in lines)}
    # "not swiped by me": the (swiper_id, target_id) unique index with the viewer as swiper_id.
    me = f"swiper_id = '{viewer_id}'"
    found["swipes"]["not_swiped_by_me_via_unique_index"] = any(
        SWIPES_UNIQUE in plan[i] and any(me in ln for ln in plan[i + 1 : i + 3]) for i in range(len(plan))
    )
    return found


def plan_highlights(plan: list[str]) -> list[str]:
    keys = ("Index", "Seq Scan", "Sort", "Limit", "Anti Join", "Hash Join", "Nested Loop", "Execution Time")
    return [line for line in plan if any(k in line for k in keys)]


# ----------------------------------------------------------------------------- the run


def run(config: Config, bench: Settings_, workdir: Path, processes: Processes) -> dict[str, Any]:
    problems: list[str] = []
    print(f"bench discover: scratch database {config.database_name}, sizes {list(bench.sizes)}", flush=True)
    clear_cache_keys(config)
    recreate_database(config)
    env = server_env(config, workdir)
    migrate(env, workdir)
    settings = Settings(database_url=config.database_url, redis_url=config.redis_url, KINDRED_VAR_DIR=workdir / "var")
    seeder = Seeder(config.asyncpg_dsn(), server_password_hash(env, settings, PASSWORD), bench.viewers)

    serve = [sys.executable, "-m", "kindred.cli", "serve", "--host", "127.0.0.1"]
    server = processes.start("kindred", serve, env, workdir)
    wait_until_up(server, "/ready")
    print(f"bench discover: kindred serve up on :{server.port} (pid {server.process.pid})", flush=True)

    sizes: dict[str, Any] = {}
    for size in bench.sizes:
        print(f"bench discover: seeding up to {size} profiles", flush=True)
        seeded = asyncio.run(seeder.grow(size))
        print(f"  {seeded}", flush=True)
        tokens = [login(server, email) for email in seeder.viewer_emails]
        print(f"  {len(tokens)} viewers logged in; wrk warm-up (3 s)", flush=True)
        pilot = wrk_discover(server, tokens, seconds=3, connections=bench.connections)
        # wrk runs for a duration: long enough for `requests` at the warm-up's rate, with a margin.
        seconds = max(5, min(300, math.ceil(1.2 * bench.requests / max(pilot["rps"], 0.1))))
        print(f"  wrk: GET /discover?limit=20, {bench.connections} connections, {seconds} s", flush=True)
        http = wrk_discover(server, tokens, seconds=seconds, connections=bench.connections)
        if http["requests"] < bench.requests:
            problems.append(f"{size}: wrk stopped after {http['requests']} of {bench.requests} requests")
        if set(http["statuses"]) != {200} or http["socket_errors"]:
            problems.append(f"{size}: statuses {http['statuses']}, {http['socket_errors']} socket errors")
        print(f"  raw SQL: {bench.sql_runs} x a first page's queries (window floor + candidates)", flush=True)
        viewer_ids = seeder.ids[: bench.viewers]
        sql = asyncio.run(raw_sql(settings, viewer_ids, bench.sql_runs))
        if sql["rows_min"] < 21:
            problems.append(f"{size}: a viewer had only {sql['rows_min']} candidates (fewer than one page)")
        indexes = index_use(sql["plan"], viewer_ids[0])
        sizes[str(size)] = {
            "seed": seeded,
            "http": http,
            "sql": {k: v for k, v in sql.items() if k not in ("plan", "floor_plan")},
            "plan": sql["plan"],
            "floor_plan": sql["floor_plan"],
            "indexes": indexes,
            "http_p50_over_sql_p50": round(http["p50_ms"] / sql["p50_ms"], 2),
            # Latency at concurrency c on a saturated server ≈ c x service time: 1 / req/s per request.
            "http_service_ms": round(1000 / http["rps"], 2),
        }
        if server.process.poll() is not None:
            problems.append(f"kindred serve exited ({server.process.returncode})")

    checks = httpx.get(f"{server.base_url}/health/detailed", timeout=10, trust_env=False).json()["checks"]
    if checks["cache"]["mode"] != "redis" or checks["database"]["dialect"] != "postgresql":
        problems.append(f"server ran with cache {checks['cache']['mode']}, database {checks['database']['dialect']}")
    small, large = sizes[str(bench.sizes[0])], sizes[str(bench.sizes[-1])]
    scale = large["http"]["p95_ms"] / small["http"]["p95_ms"]
    targets = {
        "p95_scale": {"value": round(scale, 2), "target": SCALE_TARGET, "met": scale <= SCALE_TARGET},
        **{
            f"http_over_sql@{size}": {
                "value": entry["http_p50_over_sql_p50"],
                "target": OVERHEAD_TARGET,
                "met": entry["http_p50_over_sql_p50"] <= OVERHEAD_TARGET,
            }
            for size, entry in sizes.items()
        },
        **{
            f"plan_indexes@{size}": {
                "value": {k: v["indexes"] for k, v in entry["indexes"].items()},
                "met": all(v["uses_index"] for v in entry["indexes"].values()),
            }
            for size, entry in sizes.items()
        },
    }
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_after": os.getloadavg()},
        "settings": dataclasses.asdict(bench),
        "sizes": sizes,
        "targets": targets,
        "valid": not problems,
        "problems": problems,
    }


def print_report(result: dict[str, Any]) -> None:
    host = result["machine"]
    print()
    print(f"Kindred discovery benchmark · {result['date']} · {host['cpus']} CPUs · {host['cpu_model']}")
    for size, entry in result["sizes"].items():
        http, sql = entry["http"], entry["sql"]
        print()
        print(f"== {int(size):,} profiles: {entry['seed']['counts']}")
        print(
            f"   viewer 0 has {sql['plan_viewer_candidates']} compatible unswiped candidates; a page ranks the "
            f"{sql['window']} most recently active of them (DISCOVERY_WINDOW) plus the boosted"
        )
        print(
            f"   HTTP GET /discover?limit=20: {http['requests']} requests, c={http['connections']}, "
            f"{http['rps']} req/s, p50 {http['p50_ms']:.1f} ms, p95 {http['p95_ms']:.1f} ms, "
            f"p99 {http['p99_ms']:.1f} ms, statuses {http['statuses']}"
        )
        print(
            f"   raw SQL of a first page (window floor + candidates(limit=21)), sequential: {sql['runs']} runs, "
            f"p50 {sql['p50_ms']:.1f} ms, "
            f"p95 {sql['p95_ms']:.1f} ms"
        )
        print(f"   HTTP p50 / SQL p50 = {entry['http_p50_over_sql_p50']:.2f} (service time 1/rps: "
              f"{entry['http_service_ms']:.1f} ms)")  # fmt: skip
        print("   window floor plan (EXPLAIN ANALYZE, BUFFERS), key lines:")
        for line in plan_highlights(entry["floor_plan"]):
            print(f"     {line}")
        print("   candidates plan (EXPLAIN ANALYZE, BUFFERS), key lines:")
        for line in plan_highlights(entry["plan"]):
            print(f"     {line}")
        for lookup, used in entry["indexes"].items():
            scan = "index only" if used["uses_index"] else "SEQ SCAN (or no index)"
            extra = ""
            if "not_swiped_by_me_via_unique_index" in used:
                extra = f"; not-swiped-by-me through {SWIPES_UNIQUE}: {used['not_swiped_by_me_via_unique_index']}"
            print(f"   {lookup}: {scan}: {', '.join(used['indexes']) or '-'}{extra}")
    print()
    for name, target in result["targets"].items():
        verdict = "met" if target["met"] else "MISSED"
        bound = f" (target <= {target['target']:g})" if "target" in target else ""
        print(f"{name} = {target['value']}{bound} {verdict}")
    for problem in result["problems"]:
        print(f"INVALID: {problem}")


def main() -> int:
    return common.main(
        "bench discover",
        __doc__,
        load=lambda: (scratch_config("_discover"), Settings_.from_env()),
        run=run,
        print_report=print_report,
        results_file=RESULTS_FILE,
        failures=(httpx.HTTPError, asyncpg.PostgresError),
    )


if __name__ == "__main__":
    sys.exit(main())
