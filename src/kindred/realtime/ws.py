"""`WS /api/v1/ws`: an authenticated socket per device, fed from the user's `user:{id}` event channel.

Protocol (docs/realtime.md): the Origin is checked at the handshake; the first client frame is
`{"type":"auth","token":...}` within WS_AUTH_TIMEOUT (or, with an allowed Origin, the access cookie);
`auth.ok` goes out once the socket is subscribed; then events are forwarded as published, client
`ping` and `typing` are answered, and the session is re-validated every few seconds. Every close code
the server uses is a constant below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from kindred.auth.session_state import resolve
from kindred.kit import clock
from kindred.kit.errors import AppError, ServiceUnavailable
from kindred.observability.logging import get_logger
from kindred.realtime.events import SESSION_REVOKED, frame, is_internal, parse, publish, user_channel
from kindred.realtime.presence import PRESENCE_REFRESH
from kindred.realtime.repository import RealtimeRepository

if TYPE_CHECKING:
    from kindred.kit.cache import Subscription
    from kindred.realtime.hub import Realtime

log = get_logger(__name__)
T = TypeVar("T")

router = APIRouter(tags=["realtime"])

MAX_FRAME_BYTES = 64 * 1024  # larger client frames close with 1009 (uvicorn's ws_max_size is the same)
FLOOD_LIMIT = 20  # more client frames than this in any one-second window close with 1008
TYPING_LIMIT = 3  # typing frames per socket per second; more are answered `error rate_limited`
REVALIDATE_EVERY = (2.0, 3.0)  # seconds between session checks (jittered so sockets spread out)
SEND_TIMEOUT = 10.0  # a client that cannot take one frame in this long is dropped
CLOSE_TIMEOUT = 1.0

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013
CLOSE_UNAUTHENTICATED = 4001

PONG = frame("pong", {})


class _Close(Exception):
    """End the socket with this close code."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code, self.reason = code, reason


class _Gone(Exception):
    """The client has gone: nothing more can be sent."""


class _Window:
    """Events in the last second, sliding."""

    def __init__(self, limit: int, period: float = 1.0) -> None:
        self.limit, self.period = limit, period
        self._times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.period:
            self._times.popleft()

    def hit(self, now: float) -> bool:
        """Count one; False once the window holds more than the limit."""
        self._trim(now)
        self._times.append(now)
        return len(self._times) <= self.limit

    def allow(self, now: float) -> bool:
        """Count one only if there is room; False (and not counted) when the window is full."""
        self._trim(now)
        if len(self._times) >= self.limit:
            return False
        self._times.append(now)
        return True


def access_cookie_name(websocket: WebSocket) -> str:
    # The names the auth router sets (auth.dependencies.cookie_names, which takes a Request).
    return ("__Host-" if websocket.app.state.settings.cookie_secure else "") + "kindred_access"


@router.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    realtime: Realtime = websocket.app.state.realtime
    origin = websocket.headers.get("origin")
    if origin is not None and not realtime.origins.allows(origin):
        log.info("ws.origin_refused")
        await _refuse(websocket)
        return
    await websocket.accept()
    socket = Socket(websocket, realtime, cookie_allowed=origin is not None)
    realtime.sockets.add(socket)
    try:
        await socket.run()
    finally:
        realtime.sockets.discard(socket)


async def _refuse(websocket: WebSocket) -> None:
    """HTTP 403 at the handshake, in the contract's error shape where the server supports a body."""
    if "websocket.http.response" not in websocket.scope.get("extensions", {}):
        await websocket.close(CLOSE_POLICY)  # before accept: the server answers 403
        return
    body = {
        "error": {"code": "forbidden", "message": "This origin may not open a socket.", "details": {}},
        "request_id": websocket.scope.get("kindred", {}).get("request_id"),
    }
    await websocket.send_denial_response(JSONResponse(body, status_code=403))


class Socket:
    """One accepted socket: authentication, then three loops (client frames, events, session checks)."""

    def __init__(self, websocket: WebSocket, realtime: Realtime, *, cookie_allowed: bool) -> None:
        state = websocket.app.state
        self.ws = websocket
        self.settings = state.settings
        self.db = state.db
        self.cache = state.cache
        self.signer = state.signer
        self.presence = realtime.presence
        self.cookie_allowed = cookie_allowed  # an Origin was sent, and allowed
        self.user_id: uuid.UUID | None = None
        self.session_id: uuid.UUID | None = None
        self._present = False  # presence.connected() was called: disconnected() must follow
        self._send_lock = asyncio.Lock()
        self._close_requested: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()
        self._finished = asyncio.Event()
        self._frames = _Window(FLOOD_LIMIT)
        self._typing = _Window(TYPING_LIMIT)

    # ------------------------------------------------------------------ registry interface
    def request_close(self, code: int, reason: str = "") -> None:
        if not self._close_requested.done():
            self._close_requested.set_result((code, reason))

    async def wait_closed(self) -> None:
        await self._finished.wait()

    # ------------------------------------------------------------------ lifecycle
    async def run(self) -> None:
        started = time.monotonic()
        code: int | None = None
        try:
            try:
                await self._run()
            except _Close as close:
                code = close.code
                await self._close(close.code, close.reason)
            except _Gone:
                pass
            except Exception as exc:
                log.error("ws.failed", error=type(exc).__name__, exc_info=exc)
                code = CLOSE_INTERNAL
                await self._close(CLOSE_INTERNAL, "internal error")
        finally:
            if self._present and self.user_id is not None:
                await self._quietly(self.presence.disconnected(self.user_id))
            self._finished.set()
            log.info(
                "ws.closed",
                user_id=str(self.user_id) if self.user_id else None,
                code=code,
                seconds=round(time.monotonic() - started, 3),
            )

    async def _run(self) -> None:
        await self._authenticate()
        assert self.user_id is not None
        async with self.cache.subscribe(user_channel(self.user_id)) as subscription:
            # Subscribed (and, with Redis, acknowledged) first: nothing sent after auth.ok is missed.
            await self._send(frame("auth.ok", {"user_id": str(self.user_id)}))
            log.info("ws.opened", user_id=str(self.user_id))
            self._present = True
            await self._quietly(self.presence.connected(self.user_id))
            await self._serve(subscription)

    async def _serve(self, subscription: Subscription) -> None:
        tasks: list[asyncio.Future[Any]] = [
            asyncio.create_task(self._read_loop(), name="ws.read"),
            asyncio.create_task(self._forward_loop(subscription), name="ws.forward"),
            asyncio.create_task(self._watch_loop(), name="ws.watch"),
        ]
        try:
            await asyncio.wait([*tasks, self._close_requested], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            error = task.exception() if task.done() and not task.cancelled() else None
            if error is not None:
                raise error
        if self._close_requested.done():
            raise _Close(*self._close_requested.result())
        raise _Gone()

    # ------------------------------------------------------------------ authentication
    async def _authenticate(self) -> None:
        if self.cookie_allowed:
            token = self.ws.cookies.get(access_cookie_name(self.ws))
            if token:
                await self._authenticate_with(token)
                return
        try:
            text = await self._until_close(self._receive(), within=self.settings.ws_auth_timeout)
        except TimeoutError:
            raise _Close(CLOSE_UNAUTHENTICATED, "authentication timed out") from None
        message = _json_object(text)
        if message is None or message.get("type") != "auth":
            raise _Close(CLOSE_UNAUTHENTICATED, "the first frame must be auth")
        await self._authenticate_with(message.get("token"))

    async def _authenticate_with(self, token: Any) -> None:
        """Verify an access token and its session; a later token must be the same user's."""
        if not isinstance(token, str) or not token:
            raise _Close(CLOSE_UNAUTHENTICATED, "authentication failed")
        try:
            claims = self.signer.verify(token)
            await resolve(self.db, self.cache, claims.session_id, claims.user_id, self.settings.session_cache_ttl)
        except ServiceUnavailable:
            raise _Close(CLOSE_TRY_AGAIN, "try again later") from None
        except AppError:
            raise _Close(CLOSE_UNAUTHENTICATED, "authentication failed") from None
        if self.user_id is not None and claims.user_id != self.user_id:
            raise _Close(CLOSE_UNAUTHENTICATED, "authentication failed")
        self.user_id, self.session_id = claims.user_id, claims.session_id
        ctx = self.ws.scope.get("kindred")
        if ctx is not None:
            ctx["user_id"] = str(claims.user_id)

    # ------------------------------------------------------------------ the three loops
    async def _read_loop(self) -> None:
        while True:
            await self._handle(await self._receive())

    async def _forward_loop(self, subscription: Subscription) -> None:
        async for _channel, message in subscription:
            parsed = parse(message)
            if parsed is None:
                continue  # not an event frame: never sent to a client
            event_type, data = parsed
            if is_internal(event_type):
                if event_type == SESSION_REVOKED and self._names_my_session(data):
                    raise _Close(CLOSE_UNAUTHENTICATED, "session revoked")
                continue
            await self._send(message)
        raise _Close(CLOSE_GOING_AWAY, "server shutting down")  # the cache (bus) was closed

    def _names_my_session(self, data: dict[str, Any]) -> bool:
        if data.get("all") is True:
            return True
        ids = data.get("session_ids")
        return isinstance(ids, list) and str(self.session_id) in ids

    async def _watch_loop(self) -> None:
        """The backstop for a lost revocation event, and the presence key's refresh."""
        assert self.user_id is not None and self.session_id is not None
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(random.uniform(*REVALIDATE_EVERY))
            try:
                await resolve(self.db, self.cache, self.session_id, self.user_id, self.settings.session_cache_ttl)
            except ServiceUnavailable:
                log.warning("ws.revalidate_unavailable")  # not proof of revocation: keep the socket
            except AppError:
                raise _Close(CLOSE_UNAUTHENTICATED, "session revoked") from None
            if time.monotonic() - refreshed >= PRESENCE_REFRESH:
                refreshed = time.monotonic()
                await self._quietly(self.presence.refresh(self.user_id))

    # ------------------------------------------------------------------ client frames
    async def _receive(self) -> str | None:
        """The next client frame's text (None for a binary frame), enforcing the size and flood limits."""
        message = await self.ws.receive()
        if message["type"] == "websocket.disconnect":
            raise _Gone()
        if not self._frames.hit(time.monotonic()):
            raise _Close(CLOSE_POLICY, "too many frames")
        text: str | None = message.get("text")
        if text is not None:
            # A character is at most 4 bytes in UTF-8: encode only when it could matter.
            if len(text) * 4 > MAX_FRAME_BYTES and len(text.encode()) > MAX_FRAME_BYTES:
                raise _Close(CLOSE_TOO_BIG, "frame too large")
            return text
        if len(message.get("bytes") or b"") > MAX_FRAME_BYTES:
            raise _Close(CLOSE_TOO_BIG, "frame too large")
        return None

    async def _handle(self, text: str | None) -> None:
        message = _json_object(text)
        if message is None:
            await self._error("malformed_frame", "Frames are JSON objects with a string `type`.")
            return
        kind = message["type"]
        if kind == "ping":
            await self._send(PONG)
            await self._seen()
        elif kind == "typing":
            await self._on_typing(message)
            await self._seen()
        elif kind == "auth":
            await self._authenticate_with(message.get("token"))
            await self._send(frame("auth.ok", {"user_id": str(self.user_id)}))
        else:
            await self._error("unknown_type", "Unknown frame type.")

    async def _on_typing(self, message: dict[str, Any]) -> None:
        assert self.user_id is not None
        data = message.get("data")
        raw = (data if isinstance(data, dict) else message).get("match_id")
        try:
            match_id = uuid.UUID(raw) if isinstance(raw, str) else None
        except ValueError:
            match_id = None
        if match_id is None:
            await self._error("validation_error", "typing needs a match_id.")
            return
        if not self._typing.allow(time.monotonic()):
            await self._error("rate_limited", f"At most {TYPING_LIMIT} typing frames a second.")
            return
        try:
            async with self.db.unit_of_work() as session:
                conversation = await RealtimeRepository(session).conversation(match_id, self.user_id, clock.now())
        except ServiceUnavailable as exc:
            await self._error(exc.code, exc.detail_message)
            return
        if conversation is None:
            await self._error("match_not_found", "Match not found.")
        elif not conversation.open:
            await self._error("conversation_closed", "This conversation is closed.")
        else:
            data = {"match_id": str(match_id), "user_id": str(self.user_id)}
            await publish(self.cache, [conversation.other_id], "typing", data)

    async def _seen(self) -> None:
        if self.user_id is not None:
            await self._quietly(self.presence.seen(self.user_id))

    # ------------------------------------------------------------------ sending
    async def _send(self, text: str) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT), self._send_lock:
                await self.ws.send_text(text)
        except (TimeoutError, WebSocketDisconnect, WebSocketDisconnected, RuntimeError, OSError):
            raise _Gone() from None

    async def _error(self, code: str, message: str) -> None:
        await self._send(frame("error", {"code": code, "message": message}))

    async def _close(self, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CLOSE_TIMEOUT), self._send_lock:
                await self.ws.close(code, reason)

    # ------------------------------------------------------------------ helpers
    async def _until_close(self, awaitable: Awaitable[T], *, within: float) -> T:
        """`awaitable`'s result, unless a close is requested first (_Close) or `within` seconds pass."""
        task = asyncio.ensure_future(awaitable)
        either: list[asyncio.Future[Any]] = [task, self._close_requested]
        try:
            await asyncio.wait(either, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.done() and not task.cancelled():
            return task.result()
        if self._close_requested.done():
            raise _Close(*self._close_requested.result())
        raise TimeoutError

    async def _quietly(self, awaitable: Awaitable[None]) -> None:
        """Presence and activity are best effort: a failure is logged, never the socket's end."""
        try:
            await awaitable
        except Exception as exc:
            log.warning("ws.presence_failed", error=type(exc).__name__)


def _json_object(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        return None
    return value
