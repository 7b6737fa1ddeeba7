"""The real server process: `python -m kindred serve` as an operator runs it, spoken to over real HTTP.

One server (per xdist worker) serves the probe, docs, request-id and sign-up tests; the start-up and
shutdown tests start their own. Every server gets a fresh working directory and a clean environment
(PATH and HOME only, plus what the test sets), so nothing from the developer's shell leaks in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from kindred.settings import Settings
from tests.support import leaks
from tests.support.stack import Stack, truncate_all, worker_id

pytestmark = pytest.mark.e2e

START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
PASSWORD = "correct horse battery staple"
_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_VERIFY_LINK = re.compile(r"/verify-email\?token=([A-Za-z0-9_\-]+)")
_RULE = "=" * 72


# ---------------------------------------------------------------------------------------------- helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_env(**values: str) -> dict[str, str]:
    """PATH and HOME from the caller, nothing else: no stray DATABASE_URL, PORT or TEST_* leaks in."""
    env = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    env.update(values)
    return env


def _command(*args: str) -> list[str]:
    # The interpreter running the tests: venv-agnostic, and the package it imports is the one under test.
    return [sys.executable, "-m", "kindred", *args]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    output: Path  # stdout and stderr, interleaved line by line as the process wrote them
    returncode: int | None = field(default=None)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def text(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")

    def log_records(self) -> list[dict[str, Any]]:
        """The structured log: every output line that is a JSON object."""
        records = []
        for line in self.text().splitlines():
            record = _json_object(line)
            if record is not None:
                records.append(record)
        return records

    def log_text(self) -> str:
        return "\n".join(line for line in self.text().splitlines() if _json_object(line) is not None)

    def stop(self) -> int:
        """SIGTERM to our own child, by its PID; SIGKILL only if it does not stop in time."""
        if self.returncode is not None:
            return self.returncode
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
                raise AssertionError(f"server did not stop within {STOP_TIMEOUT}s of SIGTERM") from None
        self.returncode = self.process.returncode
        return self.returncode


def _json_object(line: str) -> dict[str, Any] | None:
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def start_server(workdir: Path, env: dict[str, str], *, port_via_env: bool = False) -> Server:
    """Start `kindred serve` on a free port and wait for /health; retries if the port got taken meanwhile."""
    workdir.mkdir(parents=True, exist_ok=True)
    last_output = ""
    for attempt in range(3):
        port = _free_port()
        output = workdir / f"server-{attempt}.out"
        args = ["serve"] if port_via_env else ["serve", "--port", str(port)]
        process_env = {**env, "PORT": str(port)} if port_via_env else env
        with output.open("wb") as sink:  # the child keeps its own descriptor
            process = subprocess.Popen(
                _command(*args), cwd=workdir, env=process_env, stdout=sink, stderr=subprocess.STDOUT
            )
        server = Server(process=process, port=port, output=output)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"{server.base_url}/health", timeout=0.5).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        last_output = server.text()
        if process.poll() is None:
            _kill(process)
            raise AssertionError(f"server did not answer /health within {START_TIMEOUT}s:\n{last_output[-3000:]}")
        if "address already in use" not in last_output.lower():
            break
    raise AssertionError(f"server exited during start-up (code {process.returncode}):\n{last_output[-3000:]}")


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def _flush_redis_prefix(redis_url: str, prefix: str) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def server_settings(workdir: Path, database_url: str, prefix: str, redis_url: str | None) -> dict[str, str]:
    """The environment every test server starts from: development, JSON logs, fast and unreachable limits."""
    values = {
        "ENVIRONMENT": "development",
        "KINDRED_VAR_DIR": str(workdir / "var"),
        "DATABASE_URL": database_url,
        "EMAIL_BACKEND": "console",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "info",
        "CACHE_KEY_PREFIX": prefix,
        # Cheap hashing keeps the test fast; production cost is measured in `make bench`.
        "ARGON2_MEMORY_KIB": "1024",
        "ARGON2_TIME_COST": "1",
        # Shutdown phases short, so a SIGTERM test takes a second rather than half a minute.
        "SHUTDOWN_DRAIN_DELAY": "0.2",
        "SHUTDOWN_TIMEOUT": "5",
        # Budgets no test reaches; the limiter still runs (tests/middleware/test_rate_limit.py).
        **{name.upper(): "1000000/minute" for name in Settings.model_fields if name.startswith("rate_limit_")},
    }
    if redis_url:
        values["REDIS_URL"] = redis_url
    return values


@dataclass
class ServerFactory:
    """Starts servers on the test stack's database (and Redis) and cleans up after every one."""

    stack: Stack
    root: Path
    database_template: Path | None  # SQLite: a migrated file copied for each server
    started: list[Server] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)

    def env(self, workdir: Path) -> dict[str, str]:
        if self.database_template is not None:
            database = workdir / "kindred.db"
            shutil.copyfile(self.database_template, database)
            database_url = f"sqlite+aiosqlite:///{database}"
        else:
            database_url = self.stack.database_url  # already migrated by the `stack` fixture
        prefix = f"ke2e:{worker_id()}:{uuid.uuid4().hex[:8]}:"
        self.prefixes.append(prefix)
        return _clean_env(**server_settings(workdir, database_url, prefix, self.stack.redis_url))

    def start(self, name: str, *, port_via_env: bool = False, **extra_env: str) -> Server:
        workdir = self.root / f"{name}-{uuid.uuid4().hex[:6]}"
        workdir.mkdir(parents=True)
        server = start_server(workdir, {**self.env(workdir), **extra_env}, port_via_env=port_via_env)
        self.started.append(server)
        return server

    def close(self) -> None:
        import asyncio

        for server in self.started:
            if server.returncode is None and server.process.poll() is None:
                with contextlib.suppress(AssertionError):  # killed; the test that cared has reported
                    server.stop()
        if self.database_template is None and self.started:
            # The servers wrote to the worker's shared database: leave it empty for the next test.
            asyncio.run(truncate_all(self.stack.database_url))
        if self.stack.redis_url:
            for prefix in self.prefixes:
                _flush_redis_prefix(self.stack.redis_url, prefix)


@pytest.fixture(scope="module")
def servers(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    root = tmp_path_factory.mktemp("e2e")
    template: Path | None = None
    if not stack.is_postgres:
        # The server gets its own SQLite file, migrated once here through the CLI an operator uses.
        template = root / "template.db"
        result = subprocess.run(
            _command("migrate"),
            cwd=root,
            env=_clean_env(ENVIRONMENT="development", DATABASE_URL=f"sqlite+aiosqlite:///{template}"),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    factory = ServerFactory(stack=stack, root=root, database_template=template)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def server(servers: ServerFactory) -> Server:
    return servers.start("main")


def _must_carry_request_id(response: httpx.Response) -> None:
    assert "x-request-id" in response.headers, f"{response.request.method} {response.request.url}: no X-Request-ID"


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.base_url, timeout=10, event_hooks={"response": [_must_carry_request_id]}
    ) as client:
        yield client


def _wait_for_emailed_token(server: Server, address: str, timeout: float = 10.0) -> str:
    """The verification link from the console email (printed on stderr, outside the structured log)."""
    deadline = time.monotonic() + timeout
    while True:
        for block in server.text().split(_RULE):
            if "template: verify_email" in block and f"To: {address}\n" in block:
                match = _VERIFY_LINK.search(block)
                assert match, f"no verification link in the console email:\n{block}"
                return match.group(1)
        if time.monotonic() > deadline:
            raise AssertionError(f"no verify_email console email for the address within {timeout}s")
        time.sleep(0.05)


@dataclass
class SignedUp:
    email: str
    access_token: str
    refresh_token: str
    me: dict[str, Any]


def sign_up(client: httpx.Client, server: Server, *, request_id: str | None = None) -> SignedUp:
    email = leaks.canary(f"e2e.{uuid.uuid4().hex[:10]}@example.com")
    leaks.canary(PASSWORD)
    registered = client.post(
        "/api/v1/auth/register",
        json={
            "email": email,
            "password": PASSWORD,
            "birthdate": "1994-03-02",
            "display_name": "Robin",
            "accepted_terms_version": "2026-01",
        },
    )
    assert registered.status_code == 202, registered.text
    assert registered.json() == {"status": "verification_sent"}

    token = leaks.canary(_wait_for_emailed_token(server, email))
    verified = client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text
    pair = verified.json()
    access, refresh = leaks.canary(pair["access_token"]), leaks.canary(pair["refresh_token"])
    assert pair["token_type"] == "bearer"
    assert pair["user"]["email"] == email

    headers = {"Authorization": f"Bearer {access}"}
    if request_id:
        headers["X-Request-ID"] = request_id
    me = client.get("/api/v1/me", headers=headers)
    assert me.status_code == 200, me.text
    return SignedUp(email=email, access_token=access, refresh_token=refresh, me=me.json())


# ---------------------------------------------------------------------------------------------- probes


def test_health_live_and_ready_answer(http: httpx.Client) -> None:
    health = http.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", body["timestamp"]), body["timestamp"]
    assert isinstance(body["uptime"], int | float) and body["uptime"] >= 0

    live = http.get("/live")
    assert live.status_code == 200
    assert live.json()["alive"] is True

    ready = http.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True}


def test_docs_are_served_from_the_app_without_a_cdn(http: httpx.Client) -> None:
    docs = http.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    page = docs.text
    assert "/static/swagger/swagger-ui-bundle.js" in page
    # Every script, stylesheet and icon is the app's own: nothing from a CDN or any other origin.
    external = re.findall(r"""(?:src|href)\s*=\s*["']((?:https?:)?//[^"']*)""", page)
    assert external == [], external
    assert "cdn" not in page.lower()

    bundle = http.get("/static/swagger/swagger-ui-bundle.js")
    assert bundle.status_code == 200
    assert "javascript" in bundle.headers["content-type"]
    assert "SwaggerUIBundle" in bundle.text

    css = http.get("/static/swagger/swagger-ui.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")


def test_openapi_document_lists_the_api(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "post" in document["paths"]["/api/v1/auth/register"]
    assert "get" in document["paths"]["/api/v1/me"]


@pytest.mark.parametrize("sent", ["abc-123_X.y", "a" * 128, "7f3b2c1e-0d4a-4b6e-9f1a-2c3d4e5f6a7b"])
def test_a_sane_request_id_is_echoed(http: httpx.Client, sent: str) -> None:
    for path in ("/health", "/api/v1/me", "/no-such-path"):
        response = http.get(path, headers={"X-Request-ID": sent})
        assert response.headers["x-request-id"] == sent, path
    error = http.get("/api/v1/me", headers={"X-Request-ID": sent})
    assert error.status_code == 401
    assert error.json()["request_id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["a" * 200, "has spaces in it", "semi;colon", 'quote"d', "../../etc/passwd?x=1", ""],
    ids=["200-chars", "spaces", "semicolon", "quote", "path-and-query", "empty"],
)
def test_an_insane_request_id_is_replaced(http: httpx.Client, sent: str) -> None:
    response = http.get("/api/v1/me", headers={"X-Request-ID": sent})
    assert response.status_code == 401
    returned = response.headers["x-request-id"]
    assert returned != sent
    assert _SANE_REQUEST_ID.fullmatch(returned), returned
    assert response.json()["request_id"] == returned


def test_every_response_carries_a_request_id(http: httpx.Client) -> None:
    # The client's response hook asserts the header on each of these (success, redirect-free errors, assets).
    responses = [
        http.get("/health"),
        http.get("/live"),
        http.get("/ready"),
        http.get("/health/detailed"),
        http.get("/metrics"),
        http.get("/.well-known/jwks.json"),
        http.get("/docs"),
        http.get("/static/swagger/favicon-32x32.png"),
        http.get("/openapi.json"),
        http.get("/no-such-path"),
        http.delete("/health"),
        http.post("/api/v1/auth/register", content=b"{not json", headers={"Content-Type": "application/json"}),
        http.post("/api/v1/auth/login", json={"email": "x"}),
    ]
    ids = [r.headers["x-request-id"] for r in responses]
    assert len(set(ids)) == len(ids), "generated request ids must be unique"
    assert [r.status_code for r in responses][-4:] == [404, 405, 400, 422]


# ---------------------------------------------------------------------------------------------- sign-up


def test_register_verify_and_me_over_real_http(http: httpx.Client, server: Server) -> None:
    account = sign_up(http, server)
    user = account.me["user"]
    assert user["email"] == account.email
    assert user["email_verified"] is True
    assert user["display_name"] == "Robin"
    # A JWT in the real wire format, signed by the server's RS256 key.
    assert account.access_token.count(".") == 2
    jwks = http.get("/.well-known/jwks.json").json()
    assert jwks["keys"] and jwks["keys"][0]["kty"] == "RSA"


def test_the_json_log_holds_no_email_password_or_token(http: httpx.Client, server: Server) -> None:
    request_id = f"e2e-{uuid.uuid4().hex}"
    account = sign_up(http, server, request_id=request_id)
    failed = http.post("/api/v1/auth/login", json={"email": account.email, "password": PASSWORD + " wrong"})
    assert failed.status_code == 401
    leaks.canary(PASSWORD + " wrong")

    output = server.text()
    # The console email (development) really printed the address and the link, outside the log...
    assert f"To: {account.email}" in output
    # ...and the structured log is a real one: the /me call is in it, by route template and user id.
    records = server.log_records()
    me_lines = [r for r in records if r.get("event") == "http.request" and r.get("request_id") == request_id]
    assert me_lines, "no access-log line for the /me request"
    assert me_lines[0]["route"] == "/api/v1/me"
    assert me_lines[0]["status"] == 200
    assert me_lines[0]["user_id"] == account.me["user"]["id"]

    found = leaks.scan(server.log_text())
    assert not found, f"personal data or secrets in the server's JSON log: {found[:5]}"

    # Nothing else escapes the structured log: every other line belongs to a console email block.
    stray = _lines_outside_log_and_emails(output)
    assert not stray, f"output that is neither a JSON log line nor a console email: {stray[:5]}"


def _lines_outside_log_and_emails(output: str) -> list[str]:
    stray: list[str] = []
    in_email = False
    header_next = False
    for line in output.splitlines():
        if line == _RULE:
            # An email is RULE, header, ..., RULE; the opening rule is followed by the "EMAIL (" header.
            if in_email:
                in_email = False
            else:
                header_next = True
            continue
        if header_next:
            header_next = False
            if line.startswith("EMAIL (console backend"):
                in_email = True
                continue
            stray.append(line)
            continue
        if in_email or not line.strip() or _json_object(line) is not None:
            continue
        stray.append(line)
    return stray


# ---------------------------------------------------------------------------------------------- start-up and shutdown


def test_port_from_the_environment_alone_moves_the_server(servers: ServerFactory) -> None:
    server = servers.start("port-env", port_via_env=True)
    response = httpx.get(f"{server.base_url}/health", timeout=5)
    assert response.status_code == 200
    starting = [r for r in server.log_records() if r.get("event") == "server.starting"]
    assert starting and starting[0]["port"] == server.port


def test_sigterm_shuts_down_gracefully_with_exit_code_0(servers: ServerFactory) -> None:
    server = servers.start("sigterm")
    assert httpx.get(f"{server.base_url}/ready", timeout=5).status_code == 200
    code = server.stop()
    events = [r.get("event") for r in server.log_records()]
    assert "app.stopped" in events, "the lifespan's shutdown (closing pools, flushing) did not run"
    assert "Traceback" not in server.text()
    assert code == 0, f"`kindred serve` exited with {code} after SIGTERM (negative = killed by that signal)"


# ---------------------------------------------------------------------------------------------- production refusal


def _serve_in_production(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _command("serve", "--port", str(_free_port())),
        cwd=tmp_path,
        env=_clean_env(ENVIRONMENT="production", **env),
        capture_output=True,
        text=True,
        timeout=30,
    )


def _problems(stderr: str) -> list[str]:
    return [line.strip()[2:] for line in stderr.splitlines() if line.strip().startswith("- ")]


def _assert_one_config_message(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert result.stdout.strip() == "", result.stdout
    assert result.stderr.count("invalid configuration") == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    problems = _problems(result.stderr)
    assert problems, result.stderr
    return problems


def test_production_with_nothing_configured_exits_2_listing_every_problem(tmp_path: Path) -> None:
    problems = _assert_one_config_message(_serve_in_production(tmp_path))
    for name in (
        "DATABASE_URL",
        "JWT_PRIVATE_KEY",
        "JWT_PUBLIC_KEY",
        "SECRET_KEY",
        "MEDIA_URL_SECRET",
        "FRONTEND_URL",
        "EMAIL_BACKEND",
    ):
        assert any(problem.startswith(name) for problem in problems), f"{name} not named in: {problems}"
    # Nothing was started: no var/ directory, no generated keys or secrets.
    assert not (tmp_path / "var").exists()


def test_production_refuses_sqlite_placeholder_secret_wildcard_cors_and_console_email(tmp_path: Path) -> None:
    problems = _assert_one_config_message(
        _serve_in_production(
            tmp_path,
            DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'kindred.db'}",
            SECRET_KEY="changeme",
            CORS_ORIGIN="*",
            EMAIL_BACKEND="console",
        )
    )

    def named(name: str, *words: str) -> bool:
        return any(p.startswith(name) and all(w.lower() in p.lower() for w in words) for p in problems)

    assert named("DATABASE_URL", "SQLite"), problems
    assert named("SECRET_KEY", "placeholder"), problems
    assert named("CORS_ORIGIN", "*"), problems
    assert named("EMAIL_BACKEND", "console"), problems
    assert not (tmp_path / "kindred.db").exists()


# ------------------------------------------------------------------------------ proxies and HTTPS


@pytest.mark.parametrize(("trusted", "believed"), [("127.0.0.1", True), ("10.9.9.9", False)])
def test_x_forwarded_proto_is_believed_only_from_trusted_proxies(
    servers: ServerFactory, trusted: str, believed: bool
) -> None:
    """Behind a trusted proxy, `X-Forwarded-Proto: https` makes the request HTTPS (HSTS is sent); from
    anyone else the header is ignored and the request stays plain HTTP (no HSTS)."""
    proxied = servers.start(f"proxy-{believed}", TRUSTED_PROXIES=trusted)
    response = httpx.get(f"{proxied.base_url}/health", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert response.status_code == 200
    assert ("strict-transport-security" in response.headers) is believed
    assert response.headers["x-frame-options"] == "DENY"
    assert "server" not in response.headers


def _read_response(conn: socket.socket) -> bytes:
    """One whole HTTP/1.1 response (headers and a Content-Length body), or b"" if the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?i)content-length: *(\d+)", head)
    assert found is not None, head
    length = int(found.group(1))
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _idle_then_ask_again(server: Server, idle: float) -> bytes:
    """One keep-alive request, `idle` seconds of silence, then a second request on the same connection."""
    request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        conn.sendall(request)
        assert _read_response(conn).startswith(b"HTTP/1.1 200")
        time.sleep(idle)
        try:
            conn.sendall(request)
            return _read_response(conn)
        except OSError:
            return b""


def test_idle_keep_alive_connections_live_for_keep_alive_timeout(servers: ServerFactory) -> None:
    """The server keeps idle connections KEEP_ALIVE_TIMEOUT seconds (75 by default, longer than a load
    balancer's idle timeout, so the balancer closes first); past it the server closes them."""
    short = servers.start("keepalive-short", KEEP_ALIVE_TIMEOUT="1")
    assert _idle_then_ask_again(short, idle=2.0) == b""  # closed by the server after 1 s
    default = servers.start("keepalive-default")
    assert _idle_then_ask_again(default, idle=2.0).startswith(b"HTTP/1.1 200")  # still open
