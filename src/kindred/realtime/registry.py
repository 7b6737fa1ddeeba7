"""The sockets open on this instance, so shutdown can close every one with 1001 before the server stops."""

from __future__ import annotations

import asyncio
from typing import Protocol

from kindred.observability.logging import get_logger

log = get_logger(__name__)

CLOSE_GOING_AWAY = 1001
SHUTDOWN_CLOSE_TIMEOUT = 2.0  # seconds for every handler to send its close frame and finish


class Closable(Protocol):
    def request_close(self, code: int, reason: str = "") -> None:
        """Ask the socket's handler to close with `code`; returns at once."""
        ...

    async def wait_closed(self) -> None:
        """Until the handler has finished (its close frame written)."""
        ...


class SocketRegistry:
    """Every socket handler on this instance registers here for its lifetime."""

    def __init__(self) -> None:
        self._sockets: set[Closable] = set()
        self.closing = False

    def __len__(self) -> int:
        return len(self._sockets)

    def add(self, socket: Closable) -> None:
        self._sockets.add(socket)
        if self.closing:  # opened while shutting down: close it like the others
            socket.request_close(CLOSE_GOING_AWAY, "server shutting down")

    def discard(self, socket: Closable) -> None:
        self._sockets.discard(socket)

    async def close_all(self, code: int = CLOSE_GOING_AWAY) -> None:
        """Close every socket with `code` and wait (bounded) until their handlers are done; idempotent."""
        self.closing = True
        sockets = list(self._sockets)
        if not sockets:
            return
        for socket in sockets:
            socket.request_close(code, "server shutting down")
        waiters = [asyncio.ensure_future(socket.wait_closed()) for socket in sockets]
        _, pending = await asyncio.wait(waiters, timeout=SHUTDOWN_CLOSE_TIMEOUT)
        for waiter in pending:
            waiter.cancel()
        log.info("ws.closed_all", sockets=len(sockets), code=code, unfinished=len(pending))
