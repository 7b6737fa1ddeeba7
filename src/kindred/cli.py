"""The `kindred` command: serve, migrate, create-admin, keys generate."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
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
        timeout_keep_alive=75,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        ws_max_size=WS_MAX_SIZE,  # client frames over 64 KiB close with 1009 (API.md)
    )
    logging.getLogger("uvicorn.error").addFilter(_hide_websocket_query)
    log.info("server.starting", host=config.host, port=config.port)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler that was
    # installed before it: make that handler a clean exit so an orderly shutdown exits 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    _server(config, application).run()
    log.info("server.stopped")


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _hide_websocket_query(record: logging.LogRecord) -> bool:
    """uvicorn logs each WebSocket handshake with its query string; a client that (wrongly) puts a token
    in the URL must not get it into our log. Keep the path, drop the query."""
    if isinstance(record.msg, str) and '"WebSocket %s"' in record.msg and isinstance(record.args, tuple):
        record.args = tuple(arg.split("?", 1)[0] if isinstance(arg, str) and "?" in arg else arg for arg in record.args)
    return True


def _server(config: uvicorn.Config, application: FastAPI) -> uvicorn.Server:
    import uvicorn

    class KindredServer(uvicorn.Server):
        """uvicorn, but open WebSockets close with 1001 (going away) on shutdown, not uvicorn's 1012."""

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()  # no new connections while the sockets close
            realtime = getattr(application.state, "realtime", None)  # set by the lifespan's start-up
            if realtime is not None:
                # Close frames are written now, before uvicorn's shutdown closes (or 1012s) the connections.
                await realtime.close()
            await super().shutdown(sockets)

    return KindredServer(config)


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
