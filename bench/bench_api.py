"""API benchmark: `GET /api/v1/me` against a bare Starlette endpoint, login against raw argon2, same run.

Started by `bench/run.sh` (`make bench`). Everything runs on this machine and talks only to 127.0.0.1:

1. creates the scratch database (default `kindred_bench`; dropped again at the end) and migrates it with
   `kindred migrate`;
2. starts one `kindred serve` process (one uvicorn worker, uvloop + httptools, PostgreSQL + Redis) and
   `bench/bare.py` (the same server settings, one Starlette route), each on a free port, and checks that
   both processes really loaded uvloop and httptools;
3. registers a user over HTTP, reads the verification link from the console email on the server's
   stderr, verifies, and logs in for an access token;
4. wrk measures the bare endpoint, `GET /health`, `GET /api/v1/me` (Bearer token) and the bare endpoint
   again, one after another: requests/s, p50, p99, and the server's CPU time per request (/proc). The
   headline is `me / bare` (bare = the mean of its two runs), a ratio taken in the same run so that a
   slower or busier machine moves both numbers together;
5. argon2-cffi verifies the user's stored hash (so: the server's own parameters) on one thread per core,
   then wrk POSTs logins, then argon2 again: the headline is `login / argon2` (argon2 = the mean of its
   two halves).

Results are printed as a table and written to `bench/results/latest.json`. The exit status is 0 when the
measurement is valid (every response as expected, Redis and PostgreSQL really in use), 1 when it is not,
and 3 when BENCH_STRICT=1 and a target was missed.

Settings (environment): BENCH_DATABASE_URL, BENCH_REDIS_URL, BENCH_DURATION (seconds per measured run),
BENCH_WARMUP (seconds), BENCH_THREADS and BENCH_CONNECTIONS (wrk), BENCH_LOGIN_CONNECTIONS,
BENCH_ARGON2_SECONDS, BENCH_ARGON2_THREADS, BENCH_STRICT, BENCH_SCRATCH_DIR (run.sh's folder: server PIDs and
this run's files go there, so its trap can clean up even after this script was killed).

`python bench/bench_api.py --cleanup` only drops the scratch database and deletes the Redis keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import common
import httpx
from argon2 import PasswordHasher, extract_parameters
from common import (
    API,
    BENCH_DIR,
    CACHE_KEY_PREFIX,
    TERMS_VERSION,
    BenchError,
    Config,
    Processes,
    Server,
    clear_cache_keys,
    machine,
    migrate,
    recreate_database,
    server_env,
    wait_until_up,
    wrk_figures,
    wrk_result,
)

RESULTS_FILE = BENCH_DIR / "results" / "latest.json"
REPORT_LUA = BENCH_DIR / "wrk" / "report.lua"
LOGIN_LUA = BENCH_DIR / "wrk" / "login.lua"

ME_TARGET = 0.10
LOGIN_TARGET = 0.9
# A ceiling that differs by more than this factor between its two measurements is reported as noisy.
DRIFT_WARNING = 1.2


# ----------------------------------------------------------------------------- the benchmark user


async def _stored_hash(config: Config, email: str) -> str:
    conn = await asyncpg.connect(config.asyncpg_dsn(), timeout=5)
    try:
        value = await conn.fetchval("SELECT password_hash FROM users WHERE email = $1", email)
    finally:
        await conn.close()
    if not value:
        raise BenchError("the benchmark user has no stored password hash")
    return str(value)


@dataclass(frozen=True)
class User:
    email: str
    password: str


VERIFY_LINK = re.compile(r"/verify-email\?token=([A-Za-z0-9_\-]+)")


def create_verified_user(server: Server) -> User:
    """Register over the public API, then follow the link from the console email (the server's stderr)."""
    user = User(email=f"bench-{secrets.token_hex(8)}@example.com", password=secrets.token_urlsafe(24))
    with httpx.Client(base_url=server.base_url, timeout=30, trust_env=False) as client:
        response = client.post(
            f"{API}/auth/register",
            json={
                "email": user.email,
                "password": user.password,
                "birthdate": "1990-01-01",
                "display_name": "Bench",
                "accepted_terms_version": TERMS_VERSION,
            },
        )
        if response.status_code != 202:
            raise BenchError(f"register answered {response.status_code}: {response.text[:500]}")
        token = _wait_for_verify_token(server)
        response = client.post(f"{API}/auth/verify-email", json={"token": token})
        if response.status_code != 200:
            raise BenchError(f"verify-email answered {response.status_code}: {response.text[:500]}")
    return user


def _wait_for_verify_token(server: Server, timeout: float = 10) -> str:
    # The email goes out after the response (the outbox flushes once the transaction committed).
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = VERIFY_LINK.search(server.log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise BenchError(f"no verification email on {server.name}'s stderr within {timeout:.0f} s")


def login(server: Server, user: User) -> str:
    response = httpx.post(
        f"{server.base_url}{API}/auth/login",
        json={"email": user.email, "password": user.password},
        timeout=30,
        trust_env=False,  # never through an HTTP_PROXY from the environment
    )
    if response.status_code != 200:
        raise BenchError(f"login answered {response.status_code}: {response.text[:500]}")
    return str(response.json()["access_token"])


# ----------------------------------------------------------------------------- wrk


def run_wrk(
    url: str,
    *,
    duration: int,
    connections: int,
    threads: int,
    script: Path = REPORT_LUA,
    headers: tuple[str, ...] = (),
    script_args: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Run wrk once and return the figures its Lua `done()` printed (latencies in microseconds)."""
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "-s", str(script)]
    for header in headers:
        args += ["-H", header]
    args.append(url)
    if script_args:
        args += ["--", *script_args]
    raw = wrk_result(args, url, timeout=duration + 60)
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return {
        **wrk_figures(raw, percentiles=(50, 90, 99), seconds_digits=3),
        "non_2xx_3xx": raw["non_2xx_3xx"],
        "socket_errors": errors,
        "statuses": {int(k): v for k, v in raw.get("statuses", {}).items()},
        "connections": connections,
        "threads": threads,
    }


def measure(label: str, server: Server, path: str, config: Config, **wrk_args: Any) -> dict[str, Any]:
    """Warm up, then one measured wrk run; adds the server's CPU time per request over that run."""
    url = server.base_url + path
    connections = wrk_args.pop("connections", config.connections)
    print(f"  {label}: {config.warmup} s warm-up, {config.duration} s measured, {connections} connections", flush=True)
    if config.warmup:
        run_wrk(url, duration=config.warmup, connections=connections, threads=config.threads, **wrk_args)
    cpu_before = server.cpu_seconds()
    result = run_wrk(url, duration=config.duration, connections=connections, threads=config.threads, **wrk_args)
    cpu = server.cpu_seconds() - cpu_before
    result["label"] = label
    result["server_cpu_ms_per_request"] = round(1000 * cpu / result["requests"], 4) if result["requests"] else None
    return result


# ----------------------------------------------------------------------------- argon2


def argon2_verify_rate(stored_hash: str, password: str, *, threads: int, seconds: float) -> dict[str, Any]:
    """Verifications per second of `stored_hash` on `threads` threads at once (argon2-cffi drops the GIL).

    Verifying costs what the hash's own parameters say (m, t, p are encoded in it), so this is exactly
    the work the server does per login, without HTTP, database or tokens around it.
    """
    hasher = PasswordHasher()
    counts = [0] * threads
    cpu = [0.0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def worker(index: int) -> None:
        start.wait()
        began_cpu = time.thread_time()
        while time.perf_counter() < deadline:
            hasher.verify(stored_hash, password)
            counts[index] += 1
        cpu[index] = time.thread_time() - began_cpu

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    deadline = time.perf_counter() + seconds
    began = time.perf_counter()
    start.wait()
    for worker_thread in workers:
        worker_thread.join()
    elapsed = time.perf_counter() - began
    params = extract_parameters(stored_hash)
    return {
        "verifies": sum(counts),
        "seconds": round(elapsed, 3),
        "per_second": round(sum(counts) / elapsed, 1),
        "cpu_ms_per_verify": round(1000 * sum(cpu) / sum(counts), 3) if sum(counts) else None,
        "threads": threads,
        "params": {
            "type": params.type.name,
            "memory_kib": params.memory_cost,
            "time_cost": params.time_cost,
            "parallelism": params.parallelism,
        },
    }


# ----------------------------------------------------------------------------- the run


def run(config: Config, workdir: Path, processes: Processes) -> dict[str, Any]:
    problems: list[str] = []
    load_before = os.getloadavg()
    print(f"bench: scratch database {config.database_name}, Redis {config.redis_url} (prefix {CACHE_KEY_PREFIX})")
    clear_cache_keys(config)
    recreate_database(config)
    env = server_env(config, workdir)
    migrate(env, workdir)

    serve = [sys.executable, "-m", "kindred.cli", "serve", "--host", "127.0.0.1"]
    kindred = processes.start("kindred", serve, env, workdir)
    bare = processes.start("bare", [sys.executable, str(BENCH_DIR / "bare.py")], env, workdir)
    wait_until_up(kindred, "/ready")
    wait_until_up(bare, "/me")
    servers = {s.name: {"port": s.port, "pid": s.process.pid, **s.loaded_modules()} for s in (kindred, bare)}
    for name, info in servers.items():
        for module in ("uvloop", "httptools"):
            if not info[module]:
                problems.append(f"{name} server did not load {module}")
    loaded = ", ".join(f"{n}: uvloop={i['uvloop']} httptools={i['httptools']}" for n, i in servers.items())
    print(f"bench: servers up on :{kindred.port} (kindred) and :{bare.port} (bare); {loaded}")

    user = create_verified_user(kindred)
    print("bench: benchmark user registered and verified")

    # The ceiling is measured before and after the app: a neighbour's load that comes or goes during
    # the run shows up as a gap between the two, and their mean is what `me` is compared with.
    runs: dict[str, dict[str, Any]] = {}
    runs["bare_before"] = measure("bare Starlette GET /me (before)", bare, "/me", config)
    runs["health"] = measure("kindred GET /health", kindred, "/health", config)
    token = login(kindred, user)  # just now: an access token lives 15 minutes
    runs["me"] = measure(
        "kindred GET /api/v1/me", kindred, f"{API}/me", config, headers=(f"Authorization: Bearer {token}",)
    )
    runs["bare_after"] = measure("bare Starlette GET /me (after)", bare, "/me", config)

    # Redis down would silently put the server on its in-memory cache: check what it really used.
    checks = httpx.get(f"{kindred.base_url}/health/detailed", timeout=10, trust_env=False).json()["checks"]
    server_checks = {
        "cache_mode": checks["cache"]["mode"],
        "cache_hits": checks["cache"]["hits"],
        "cache_misses": checks["cache"]["misses"],
        "database": checks["database"]["dialect"],
    }
    if server_checks["cache_mode"] != "redis":
        problems.append(f"the server's cache ran in {server_checks['cache_mode']!r} mode, not redis")
    if server_checks["database"] != "postgresql":
        problems.append(f"the server's database dialect was {server_checks['database']!r}, not postgresql")

    # Raw argon2 in two halves around the login run, for the same reason as the two ceiling runs.
    stored_hash = asyncio.run(_stored_hash(config, user.email))
    half = config.argon2_seconds / 2
    argon2_label = f"argon2 verify, {config.argon2_threads} threads, {half:g} s"
    print(f"  {argon2_label} (before; servers idle)", flush=True)
    argon2_before = argon2_verify_rate(stored_hash, user.password, threads=config.argon2_threads, seconds=half)
    body = json.dumps({"email": user.email, "password": user.password})
    runs["login"] = measure(
        "kindred POST /api/v1/auth/login",
        kindred,
        f"{API}/auth/login",
        config,
        connections=config.login_connections,
        script=LOGIN_LUA,
        script_args=(body,),
    )
    print(f"  {argon2_label} (after; servers idle)", flush=True)
    argon2_after = argon2_verify_rate(stored_hash, user.password, threads=config.argon2_threads, seconds=half)

    for name, result in runs.items():
        if result["non_2xx_3xx"] or result["socket_errors"]:
            problems.append(
                f"{name}: {result['non_2xx_3xx']} non-2xx/3xx responses, {result['socket_errors']} socket errors"
            )
    login_statuses = runs["login"]["statuses"]
    if 429 in login_statuses:
        problems.append(f"login was rate limited: {login_statuses[429]} responses were 429")
    if set(login_statuses) != {200}:
        problems.append(f"login answered statuses {login_statuses} (every login must be 200)")
    for server in (kindred, bare):
        if server.process.poll() is not None:
            problems.append(f"{server.name} server exited during the run ({server.process.returncode})")

    bare_rps = (runs["bare_before"]["rps"] + runs["bare_after"]["rps"]) / 2
    argon2_rate = (argon2_before["per_second"] + argon2_after["per_second"]) / 2
    me_ratio = runs["me"]["rps"] / bare_rps
    login_ratio = runs["login"]["rps"] / argon2_rate
    bare_cpu = (runs["bare_before"]["server_cpu_ms_per_request"] + runs["bare_after"]["server_cpu_ms_per_request"]) / 2
    argon2_cpu = (argon2_before["cpu_ms_per_verify"] + argon2_after["cpu_ms_per_verify"]) / 2
    drift = {
        "bare_before_after": round(runs["bare_after"]["rps"] / runs["bare_before"]["rps"], 3),
        "argon2_before_after": round(argon2_after["per_second"] / argon2_before["per_second"], 3),
    }
    # Not a failure, but a ratio whose denominator moved this much is worth a second run.
    warnings = [
        f"{name.split('_')[0]} moved by a factor {value:.2f} between its two measurements: the machine's load changed"
        for name, value in drift.items()
        if not 1 / DRIFT_WARNING <= value <= DRIFT_WARNING
    ]
    load_after = os.getloadavg()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine(), "loadavg_before": load_before, "loadavg_after": load_after},
        "settings": {
            "duration_s": config.duration,
            "warmup_s": config.warmup,
            "wrk_threads": config.threads,
            "connections": config.connections,
            "login_connections": config.login_connections,
            "argon2_threads": config.argon2_threads,
            "argon2_seconds": config.argon2_seconds,
        },
        "servers": servers,
        "server_checks": server_checks,
        "runs": runs,
        "argon2": {"before": argon2_before, "after": argon2_after, "per_second_mean": round(argon2_rate, 1)},
        "ratios": {
            "me_over_bare": round(me_ratio, 4),
            "health_over_bare": round(runs["health"]["rps"] / bare_rps, 4),
            "login_over_argon2": round(login_ratio, 4),
            # The same comparisons in server CPU per request: much less sensitive to other processes.
            "cpu_bare_over_me": round(bare_cpu / runs["me"]["server_cpu_ms_per_request"], 4),
            "cpu_argon2_over_login": round(argon2_cpu / runs["login"]["server_cpu_ms_per_request"], 4),
        },
        "drift": drift,
        "targets": {
            "me_over_bare": {"target": ME_TARGET, "met": me_ratio >= ME_TARGET},
            "login_over_argon2": {"target": LOGIN_TARGET, "met": login_ratio >= LOGIN_TARGET},
        },
        "valid": not problems,
        "problems": problems,
        "warnings": warnings,
    }


def print_report(result: dict[str, Any]) -> None:
    runs, argon2, ratios, targets = result["runs"], result["argon2"], result["ratios"], result["targets"]
    host = result["machine"]
    load = " / ".join(f"{a:.2f}" for a in (host["loadavg_before"][0], host["loadavg_after"][0]))
    print()
    print(f"Kindred API benchmark · {result['date']} · {host['cpus']} CPUs · {host['cpu_model']}")
    print(f"load average (1 min) before / after: {load}")
    header = (
        f"{'target':<36}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'bytes':>7}{'conns':>6}{'non-2xx':>8}"
    )
    print(header)
    for r in runs.values():
        print(
            f"{r['label']:<36}{r['rps']:>10.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
            f"{r['server_cpu_ms_per_request']:>12.3f}{r['bytes_per_response']:>7}{r['connections']:>6}"
            f"{r['non_2xx_3xx']:>8}"
        )
    for when in ("before", "after"):
        a = argon2[when]
        label = f"argon2 verify, {a['threads']} threads ({when})"
        print(f"{label:<36}{a['per_second']:>10.1f}{'':>18}{a['cpu_ms_per_verify']:>12.3f}")
    p = argon2["before"]["params"]
    params = f"{p['type']} m={p['memory_kib']} KiB t={p['time_cost']} p={p['parallelism']}"
    print(f"argon2 parameters (read from the stored hash): {params}")
    print(f"login statuses: {runs['login']['statuses']}")
    print(f"server checks: {result['server_checks']}")
    drift = result["drift"]
    print(f"drift after/before: bare {drift['bare_before_after']:.2f}, argon2 {drift['argon2_before_after']:.2f}")
    print()
    for key, label in (("me_over_bare", "me/bare"), ("login_over_argon2", "login/argon2")):
        target = targets[key]
        verdict = "met" if target["met"] else "MISSED"
        print(f"ratio {label} = {ratios[key]:.3f} (target >= {target['target']:g}) {verdict}")
    print(
        f"(health/bare = {ratios['health_over_bare']:.3f}; in server CPU per request: "
        f"bare/me = {ratios['cpu_bare_over_me']:.3f}, argon2/login = {ratios['cpu_argon2_over_login']:.3f})"
    )
    for warning in result["warnings"]:
        print(f"NOISY: {warning}")
    for problem in result["problems"]:
        print(f"INVALID: {problem}")


def main() -> int:
    return common.main(
        "bench",
        __doc__,
        load=lambda: (Config.from_env(), None),
        run=lambda config, _, workdir, processes: run(config, workdir, processes),
        print_report=print_report,
        results_file=RESULTS_FILE,
        failures=(httpx.HTTPError,),
        failure_message="request to a benchmark server failed: ",
    )


if __name__ == "__main__":
    sys.exit(main())
