"""The `kindred` command: serve, migrate, create-admin, keys generate."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import socket
import sys
import termios
import time
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from kindred.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    import uvicorn
    from fastapi import FastAPI

app = typer.Typer(help="Kindred: a dating-app backend.", no_args_is_help=True, add_completion=False)
keys_app = typer.Typer(help="Signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

EXIT_CONFIG = 2
WS_MAX_SIZE = 64 * 1024


def _settings() -> Settings:
    """Load and validate configuration; on any problem print them all and exit 2."""
    try:
        return load_settings()
    except ConfigError as exc:
        typer.echo(f"kindred: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None


def _configure_logging(settings: Settings) -> None:
    from kindred.observability.logging import configure_logging

    configure_logging(
        settings.log_level, settings.effective_log_format.value, str(settings.log_file) if settings.log_file else None
    )


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (default HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (default PORT).")] = None,
) -> None:
    """Run the API server."""
    import uvicorn

    from kindred.app import create_app

    settings = _settings()
    _configure_logging(settings)
    from kindred.observability.logging import get_logger

    log = get_logger("kindred.cli")
    for warning in settings.production_warnings() if settings.is_production else []:
        log.warning("config.warning", message=warning)
    try:
        application = create_app(settings)
    except ConfigError as exc:
        typer.echo(f"kindred: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    config = uvicorn.Config(
        application,
        host=host or settings.host,
        port=port or settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=settings.trusted_proxies,
        server_header=False,
        timeout_keep_alive=settings.keep_alive_timeout,  # longer than the load balancer's idle timeout
        # No `timeout_graceful_shutdown`: KindredServer bounds the wait itself, by the exact (float) setting.
        ws_max_size=WS_MAX_SIZE,  # client frames over 64 KiB close with 1009 (API.md)
    )
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(_hide_websocket_query)
    uvicorn_log.addFilter(_drop_cancelled_request_traceback)
    log.info("server.starting", host=config.host, port=config.port)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it: make that handler a clean exit so an orderly shutdown exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    try:
        _server(config, application, settings).run()
    except SystemExit as exc:
        if exc.code not in (0, None):  # uvicorn's start-up failure (3): not a clean stop
            raise
    log.info("server.stopped")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _hide_websocket_query(record: logging.LogRecord) -> bool:
    """uvicorn logs each WebSocket handshake with its query string; a client that (wrongly) puts a token
    in the URL must not get it into our log. Keep the path, drop the query."""
    if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg and isinstance(record.args, tuple):
        record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) and "?" in arg else arg for arg in record.args)
    return True


def _drop_cancelled_request_traceback(record: logging.LogRecord) -> bool:
    """A request cancelled because it outlived SHUTDOWN_TIMEOUT reaches uvicorn as a CancelledError, which
    it logs as "Exception in ASGI application" with a traceback. The cancellation is ours and already
    logged (`server.requests_cancelled`): drop that record, keep every other."""
    exc = record.exc_info[1] if record.exc_info else None
    return not isinstance(exc, asyncio.CancelledError)


SHUTDOWN_TICK = 0.1  # seconds between checks while draining or waiting for requests (uvicorn's own tick)
CANCEL_GRACE = 1.0  # seconds cancelled requests get to unwind (roll back, return connections) before pools close


def _server(config: uvicorn.Config, application: FastAPI, settings: Settings) -> uvicorn.Server:
    import uvicorn

    from kindred.observability.logging import get_logger

    log = get_logger("kindred.server")
    state = application.state

    class KindredServer(uvicorn.Server):
        """uvicorn with Kindred's shutdown phases (docs/operations.md, "Shutdown"):

        1. drain: from the signal on, `/ready` answers 503 while new connections are still accepted and
           served for SHUTDOWN_DRAIN_DELAY, so load balancers take the instance out before it stops listening;
        2. stop accepting; WebSockets close with 1001 (going away, not uvicorn's 1012); in-flight requests
           get SHUTDOWN_TIMEOUT to finish, then are cancelled;
        3. the app's lifespan shutdown: pools closed, error reports and metrics flushed.

        A repeated SIGTERM or SIGINT ends the wait in progress and the shutdown goes on in the same order, exit
        0: during the drain it skips the rest of the drain (in-flight requests still get SHUTDOWN_TIMEOUT);
        during the wait for in-flight requests it cancels them at once. The lifespan shutdown always runs.
        `shutdown` replaces uvicorn 0.54's own (same steps) to put the phases in this order and log them.
        """

        def __init__(self, config: uvicorn.Config) -> None:
            super().__init__(config)
            self.repeated_signals = 0  # counted by the signal handler; each ends the wait in progress
            self.signals_seen = 0  # repeated signals a finished wait has already acted on
            self.exit_signal: str | None = None
            self.exit_requested_at: float | None = None

        def create_protocol(self) -> asyncio.Protocol:
            """A connection's protocol, as uvicorn's start-up makes them (for connections we accept ourselves)."""
            # uvicorn types the class as a bare asyncio.Protocol; its HTTP protocols take these keywords.
            protocol: asyncio.Protocol = self.config.http_protocol_class(  # type: ignore[call-arg]
                config=self.config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return protocol

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Runs as a signal handler: set flags only (no logging, no awaiting).
            state.draining = True  # /ready answers 503 from this instant
            if self.should_exit:
                # Not uvicorn's force_exit, which would skip the lifespan shutdown (pools, flushers).
                self.repeated_signals += 1
                return
            self.exit_signal = signal.Signals(sig).name
            self.exit_requested_at = time.monotonic()
            super().handle_exit(sig, frame)

        async def main_loop(self) -> None:
            await super().main_loop()  # until a signal (or uvicorn's own reasons to exit)
            await self.drain()

        async def drain(self) -> None:
            state.draining = True
            delay = settings.shutdown_drain_delay
            log.info("server.draining", signal=self.exit_signal, drain_delay=delay)
            deadline = (self.exit_requested_at or time.monotonic()) + delay
            tick = 0
            while self.repeated_signals == self.signals_seen and (remaining := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(SHUTDOWN_TICK, remaining))
                tick += 1
                await self.on_tick(tick)  # still serving: keep the Date header current
            if self.repeated_signals != self.signals_seen:
                self.signals_seen = self.repeated_signals
                log.info("server.drain_cut_short", reason="repeated_signal")

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            state.draining = True
            stopped_at = time.monotonic()  # SHUTDOWN_TIMEOUT counts from here, the WebSockets' closing included
            # Connections the kernel already completed wait in the listen queue; closing the listener would
            # reset them. Take them off the queue first (no await in between), then close, then serve them.
            queued = [conn for server in self.servers for conn in _take_queued(server)]
            for server in self.servers:
                server.close()  # the listening sockets: new connections are refused from here on
            for conn in queued:
                await asyncio.get_running_loop().connect_accepted_socket(self.create_protocol, conn)
            for sock in sockets or []:
                sock.close()
            connections = self.server_state.connections
            log.info("server.stopped_accepting", connections=len(connections), in_flight=len(self.server_state.tasks))
            realtime = getattr(state, "realtime", None)  # set by the lifespan's start-up
            if realtime is not None:
                # Close frames are written now, before the connections are shut down (uvicorn would send 1012).
                await realtime.close()
            for connection in list(connections):
                # Idle keep-alive connections close now, busy ones after their response. A connection that
                # looks idle but already has a request waiting in its socket is left to read and answer it
                # (with `Connection: close`, as every response during shutdown): closing it now would reset
                # a request the client has already sent.
                if not _has_unread_bytes(connection):
                    connection.shutdown()
            await self.finish_in_flight(since=stopped_at)
            for server in self.servers:
                await server.wait_closed()
            await self.lifespan.shutdown()  # app.py: pools, storage, mailer, then the flushers

        async def finish_in_flight(self, since: float) -> None:
            deadline = since + settings.shutdown_timeout
            tasks = self.server_state.tasks
            # Polled, as uvicorn does: the sets are uvicorn's and the counter a signal handler's, no event to await.
            while (  # noqa: ASYNC110
                (self.server_state.connections or tasks)
                and self.repeated_signals == self.signals_seen
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(SHUTDOWN_TICK)
            waited_ms = round((time.monotonic() - since) * 1000)
            if not tasks:
                log.info("server.requests_finished", waited_ms=waited_ms)
                return
            pending = list(tasks)
            log.warning(
                "server.requests_cancelled",
                count=len(pending),
                reason="shutdown_timeout" if self.repeated_signals == self.signals_seen else "repeated_signal",
                waited_ms=waited_ms,
            )
            for task in pending:
                task.cancel(msg="server shutting down")
            await asyncio.wait(pending, timeout=CANCEL_GRACE)

    return KindredServer(config)


def _take_queued(server: asyncio.AbstractServer) -> list[socket.socket]:
    """Accept, without blocking, every connection waiting in the server's listen queues."""
    taken: list[socket.socket] = []
    for listener in getattr(server, "sockets", None) or ():
        with socket.socket(fileno=os.dup(listener.fileno())) as sock:
            sock.setblocking(False)
            while True:
                try:
                    conn, _ = sock.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                conn.setblocking(False)
                taken.append(conn)
    return taken


def _has_unread_bytes(connection: object) -> bool:
    """Whether a connection's socket holds bytes the server has not read yet (FIONREAD)."""
    transport = getattr(connection, "transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        pending = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:
        return False
    return int.from_bytes(pending, sys.byteorder) > 0


@app.command()
def migrate() -> None:
    """Upgrade the database to the latest schema."""
    from kindred.ops.migrate import upgrade

    settings = _settings()
    assert settings.database_url
    upgrade(settings.database_url)
    typer.echo("database is at the latest schema")


class StaffRole(StrEnum):
    admin = "admin"
    moderator = "moderator"


@app.command("create-admin")
def create_admin(
    email: Annotated[str, typer.Option(help="Staff member's email address.")],
    password: Annotated[str, typer.Option(help="Password (at least 10 characters, not a common one).")],
    role: Annotated[StaffRole, typer.Option(help="admin or moderator.")] = StaffRole.admin,
) -> None:
    """Create (or promote) a verified staff account."""
    from kindred.ops.accounts import create_staff

    settings = _settings()
    try:
        created = asyncio.run(create_staff(settings, email=email, password=password, role=role.value))
    except ValueError as exc:
        typer.echo(f"kindred: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{'created' if created else 'promoted'} {role.value} account")


class TierName(StrEnum):
    free = "free"
    premium = "premium"


@app.command("set-tier")
def set_tier(
    email: Annotated[str, typer.Argument(help="The member's email address.")],
    tier: Annotated[TierName, typer.Argument(help="free or premium.")],
) -> None:
    """Operator override of a member's tier (audited)."""
    from kindred.ops.accounts import set_tier as run

    settings = _settings()
    if not asyncio.run(run(settings, email=email, tier=tier.value)):
        typer.echo("kindred: no account with that email address", err=True)
        raise typer.Exit(1)
    typer.echo(f"tier set to {tier.value}")


@app.command("seed-demo")
def seed_demo(
    users: Annotated[int, typer.Option(min=0, max=1_000_000, help="How many demo members to add.")] = 200,
    if_empty: Annotated[bool, typer.Option("--if-empty", help="Only seed a database with no users yet.")] = False,
) -> None:
    """Demo members (verified, with profiles and locations) around a few cities, plus a demo login."""
    from kindred.ops.seed import seed_demo as run

    settings = _settings()
    try:
        result = asyncio.run(run(settings, users, if_empty=if_empty))
    except ValueError as exc:
        typer.echo(f"kindred: {exc}", err=True)
        raise typer.Exit(1) from None
    if result is None:
        typer.echo("database already has users; demo data not added")
        return
    typer.echo(f"added {result.users} demo members")
    typer.echo(f"demo login: {result.demo_email} / {result.demo_password}")


@keys_app.command("generate")
def keys_generate(
    directory: Annotated[Path, typer.Option("--dir", help="Where to write jwt_private.pem and jwt_public.pem.")] = Path(
        "var/keys"
    ),
) -> None:
    """Write a new RS256 key pair."""
    from kindred.kit.security import write_key_pair

    private, public = write_key_pair(directory)
    typer.echo(f"wrote {private} and {public}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
