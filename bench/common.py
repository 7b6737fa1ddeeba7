"""What the three benchmark drivers share: settings, the scratch database and Redis keys, server processes,
wrk, and the command line around a run (`main`). Not run on its own.

bench_api.py, bench_discover.py and bench_chat.py import it by name: Python puts a script's own folder
(bench/) first on sys.path.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg
import httpx
import redis

from kindred.kit.security import Passwords
from kindred.settings import Settings

S = TypeVar("S")

BENCH_DIR = Path(__file__).resolve().parent
API = "/api/v1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/kindred_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
CACHE_KEY_PREFIX = "kindred-bench:"
# The scratch database is dropped at the start and end of every run: refuse any other name.
BENCH_DB_NAME = re.compile(r"^kindred_bench[a-z0-9_]*$")
TERMS_VERSION = "bench"
# Server tuning a caller may want to vary between runs; everything else in the environment stays out
# (an inherited SENTRY_DSN, SMTP_URL or DD_AGENT_HOST would send traffic off this machine).
HIGH_BUDGET = "1000000/minute"
PASSTHROUGH_PREFIXES = ("ARGON2_", "DB_", "RATE_LIMIT_", "SESSION_CACHE_TTL", "ACCESS_TOKEN_TTL")


class BenchError(Exception):
    """The benchmark could not run or its measurement is not valid; the message says why."""


@dataclass(frozen=True)
class Config:
    database_url: str
    redis_url: str
    duration: int
    warmup: int
    threads: int
    connections: int
    login_connections: int
    argon2_seconds: float
    argon2_threads: int
    strict: bool
    scratch_dir: Path | None

    @classmethod
    def from_env(cls) -> Config:
        env = os.environ.get
        try:
            config = cls(
                database_url=env("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL,
                redis_url=env("BENCH_REDIS_URL") or DEFAULT_REDIS_URL,
                duration=int(env("BENCH_DURATION") or 10),
                warmup=int(env("BENCH_WARMUP") or 2),
                threads=int(env("BENCH_THREADS") or 2),
                connections=int(env("BENCH_CONNECTIONS") or 50),
                login_connections=int(env("BENCH_LOGIN_CONNECTIONS") or 8),
                argon2_seconds=float(env("BENCH_ARGON2_SECONDS") or 5),
                argon2_threads=int(env("BENCH_ARGON2_THREADS") or os.cpu_count() or 2),
                strict=env("BENCH_STRICT") == "1",
                scratch_dir=Path(scratch) if (scratch := env("BENCH_SCRATCH_DIR")) else None,
            )
        except ValueError as exc:
            raise BenchError(f"a BENCH_* setting is not a number: {exc}") from None
        for name, url in (("BENCH_DATABASE_URL", config.database_url), ("BENCH_REDIS_URL", config.redis_url)):
            if urlsplit(url).hostname != "127.0.0.1":
                raise BenchError(f"{name} must point at 127.0.0.1 (the benchmark never leaves this machine): {url}")
        if not BENCH_DB_NAME.match(config.database_name):
            name = config.database_name
            raise BenchError(f"BENCH_DATABASE_URL must name a kindred_bench* database (it is dropped), not {name!r}")
        if config.duration < 1 or config.connections < config.threads or config.login_connections < config.threads:
            raise BenchError("BENCH_DURATION must be >= 1 and connection counts >= BENCH_THREADS")
        return config

    @property
    def database_name(self) -> str:
        return urlsplit(self.database_url).path.lstrip("/")

    def asyncpg_dsn(self, database: str | None = None) -> str:
        """The URL as asyncpg wants it: no `+asyncpg` driver suffix, optionally another database."""
        parts = urlsplit(self.database_url)
        parts = parts._replace(scheme="postgresql", path="/" + (database or self.database_name))
        return parts.geturl()


def scratch_config(suffix: str) -> Config:
    """The API benchmark's settings, on a database of the caller's own (`<name><suffix>`)."""
    config = Config.from_env()
    return dataclasses.replace(config, database_url=config.asyncpg_dsn(config.database_name + suffix))


# ----------------------------------------------------------------------------- database and redis


async def _recreate_database(config: Config, *, create: bool) -> None:
    """Drop the scratch database (FORCE ends leftover connections from a crashed run); then create it."""
    conn = await asyncpg.connect(config.asyncpg_dsn("postgres"), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{config.database_name}" WITH (FORCE)')
        if create:
            await conn.execute(f'CREATE DATABASE "{config.database_name}"')
    finally:
        await conn.close()


def recreate_database(config: Config, *, create: bool = True) -> None:
    try:
        asyncio.run(_recreate_database(config, create=create))
    except (OSError, asyncpg.PostgresError) as exc:
        raise BenchError(f"PostgreSQL at {config.asyncpg_dsn('postgres')} is required: {exc}") from exc


async def copy_dicts(conn: asyncpg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """COPY rows given as dicts (all with the first row's keys, in its order) into `table`."""
    await conn.copy_records_to_table(table, records=[tuple(r.values()) for r in rows], columns=list(rows[0]))


def clear_cache_keys(config: Config) -> int:
    """Delete this benchmark's keys (CACHE_KEY_PREFIX) and nothing else; return how many."""
    client = redis.Redis.from_url(config.redis_url, socket_timeout=2, socket_connect_timeout=2)
    try:
        keys = list(client.scan_iter(match=CACHE_KEY_PREFIX + "*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    except redis.RedisError as exc:
        raise BenchError(f"Redis at {config.redis_url} is required: {exc}") from exc
    finally:
        client.close()


# ----------------------------------------------------------------------------- server processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far, all threads (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

    def loaded_modules(self) -> dict[str, bool]:
        """Which of uvloop and httptools are mapped into the running process (Linux /proc)."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_text()
        return {name: f"/{name}/" in maps for name in ("uvloop", "httptools")}

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Processes:
    """Every server this run started, stopped by PID; the PIDs are also listed in `pid_file` for run.sh."""

    pid_file: Path | None
    servers: list[Server] = field(default_factory=list)

    def start(self, name: str, args: list[str], env: dict[str, str], workdir: Path) -> Server:
        port = free_port()
        log_path = workdir / f"{name}.log"
        with log_path.open("wb") as log:
            # A session of its own: a Ctrl-C in the terminal reaches this script, which stops the
            # servers in order, instead of killing them under a running measurement.
            process = subprocess.Popen(
                [*args, "--port", str(port)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                start_new_session=True,
            )
        server = Server(name, port, process, log_path)
        self.servers.append(server)
        if self.pid_file is not None:
            with self.pid_file.open("a") as f:
                f.write(f"{process.pid}\n")
        return server

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()


def server_env(config: Config, workdir: Path) -> dict[str, str]:
    """A minimal environment for `kindred`: only what the benchmark sets plus the tuning passthrough."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR") if name in os.environ}
    env.update({name: value for name, value in os.environ.items() if name.startswith(PASSTHROUGH_PREFIXES)})
    env.update(
        {
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "warning",
            "EMAIL_BACKEND": "console",
            "DATABASE_URL": config.database_url,
            "REDIS_URL": config.redis_url,
            "CACHE_KEY_PREFIX": CACHE_KEY_PREFIX,
            # Keys, secrets and media of this run live in the scratch folder, not in the project's ./var.
            "KINDRED_VAR_DIR": str(workdir / "var"),
            "TERMS_VERSION": TERMS_VERSION,
            "SHUTDOWN_DRAIN_DELAY": "0",
            "SHUTDOWN_TIMEOUT": "5",
        }
    )
    # The limiter keeps running (its cost is part of every request), with budgets this one-IP, few-user
    # load never reaches — unless RATE_LIMIT_* is set in the environment (passed through above).
    for name in Settings.model_fields:
        if name.startswith("rate_limit_"):
            env.setdefault(name.upper(), HIGH_BUDGET)
    return env


def wait_until_up(server: Server, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.base_url + path, timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{server.name} did not answer {path} within {timeout:.0f} s:\n{server.log_tail()}")


def migrate(env: dict[str, str], workdir: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kindred.cli", "migrate"], env=env, cwd=workdir, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BenchError(f"kindred migrate failed ({done.returncode}):\n{done.stderr[-2000:]}")


def server_password_hash(env: dict[str, str], settings: Settings, password: str) -> str:
    """A hash with the server's own argon2 parameters, so a login costs what it costs in production."""
    memory = int(env.get("ARGON2_MEMORY_KIB", settings.argon2_memory_kib))
    time_cost = int(env.get("ARGON2_TIME_COST", settings.argon2_time_cost))
    parallelism = int(env.get("ARGON2_PARALLELISM", settings.argon2_parallelism))
    return Passwords(memory, time_cost, parallelism).hash_sync(password)


# ----------------------------------------------------------------------------- wrk and the run


def wrk_result(args: list[str], url: str, timeout: float) -> dict[str, Any]:
    """Run wrk once (`args`: the whole command line) and return the JSON its Lua `done()` printed.

    The scripts in bench/wrk print it through wrk/common.lua: one `WRK_RESULT {...}` line, latencies in
    microseconds.
    """
    done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}) on {url}:\n{done.stdout[-1000:]}{done.stderr[-1000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
    return result


def wrk_figures(raw: dict[str, Any], *, percentiles: tuple[int, ...], seconds_digits: int) -> dict[str, Any]:
    """The figures every wrk run reports, from `wrk_result`'s JSON: count, rate, latencies in ms, bytes."""
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, seconds_digits),
        "rps": round(raw["requests"] / seconds, 1),
        **{f"p{p}_ms": raw[f"p{p}_us"] / 1000 for p in percentiles},
        "max_ms": raw["max_us"] / 1000,
        "bytes_per_response": round(raw["bytes"] / raw["requests"]) if raw["requests"] else 0,
    }


def machine() -> dict[str, Any]:
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def exit_on_signals() -> None:
    """SIGTERM (run.sh's trap) and SIGINT (Ctrl-C; ignored by default in a background job of a script) unwind
    through `main`'s `finally` as SystemExit 128 + signal: servers stopped, database dropped, keys deleted."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: sys.exit(128 + signum))


def clean_up(name: str, config: Config, clear_keys: Callable[[Config], object]) -> None:
    """Drop the scratch database, then delete the benchmark's Redis keys; report, never raise."""
    for step in (lambda: recreate_database(config, create=False), lambda: clear_keys(config)):
        try:
            step()
        except BenchError as exc:
            print(f"{name}: cleanup: {exc}", file=sys.stderr)


def main(
    name: str,
    doc: str | None,
    *,
    load: Callable[[], tuple[Config, S]],
    run: Callable[[Config, S, Path, Processes], dict[str, Any]],
    print_report: Callable[[dict[str, Any]], None],
    results_file: Path,
    clear_keys: Callable[[Config], object] = clear_cache_keys,
    uses_wrk: bool = True,
    failures: tuple[type[Exception], ...] = (),
    failure_message: str = "",
) -> int:
    """A benchmark's command line: `--cleanup`, or one run with its report, results file and exit status.

    `name` prefixes every message ("bench", "bench discover", ...) and names the scratch folder. `load` reads
    the settings (a BenchError: exit 1, also with --cleanup); `run` measures, given them, a scratch folder and
    the Processes it starts servers through; `print_report` prints its result, which then goes to
    `results_file`. Whatever happens, the servers are stopped, the scratch database is dropped and
    `clear_keys` deletes the run's Redis keys. `failures` are further exceptions reported as
    `<name>: <failure_message><exception!r>`. Exit status: 0, 1 when the run failed or its measurement is
    not valid, 3 when BENCH_STRICT=1 and a target was missed.
    """
    parser = argparse.ArgumentParser(description=(doc or name).splitlines()[0])
    parser.add_argument("--cleanup", action="store_true", help="only drop the scratch database and Redis keys")
    args = parser.parse_args()
    exit_on_signals()
    try:
        config, settings = load()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    if args.cleanup:
        clean_up(name, config, clear_keys)
        return 0
    if uses_wrk and shutil.which("wrk") is None:
        print(f"{name}: wrk is not installed (bench/run.sh installs it)", file=sys.stderr)
        return 1
    # kindred-bench-, kindred-bench-discover-, ...
    workdir = Path(tempfile.mkdtemp(prefix=f"kindred-{name.replace(' ', '-')}-", dir=config.scratch_dir))
    processes = Processes(config.scratch_dir / "pids" if config.scratch_dir else None)
    try:
        result = run(config, settings, workdir, processes)
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    except failures as exc:
        print(f"{name}: {failure_message}{exc!r}", file=sys.stderr)
        return 1
    finally:
        processes.stop_all()
        clean_up(name, config, clear_keys)
        shutil.rmtree(workdir, ignore_errors=True)
    print_report(result)
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results written to {results_file.relative_to(BENCH_DIR.parent)}")
    if not result["valid"]:
        return 1
    if config.strict and not all(t["met"] for t in result["targets"].values()):
        return 3
    return 0
