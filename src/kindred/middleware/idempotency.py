"""`Idempotency-Key` on unsafe POSTs: a retry with the same key and request gets the first response again.

Two halves:
- `Idempotent`, a route parameter: before the endpoint touches the database it claims the caller's
  (user, key) row in its own short transaction, committed at once so concurrent retries see it. A key
  already used answers without running the endpoint: the stored response (replay, `Idempotent-Replayed:
  true`), 409 `idempotency_in_progress` while the first request still runs, or 422
  `idempotency_key_reused` when the request differs.
- `IdempotencyMiddleware` (pure ASGI, idle unless the header is present): buffers the response of a
  claimed request and stores it in its own transaction before forwarding it. 2xx-4xx responses are kept;
  5xx and 429 are transient, so the claim is released and a retry runs again.

Keys live 24 h (KEY_TTL) from first use; an older row is taken over as if new. A claim left in progress
by a crashed worker is taken over after LOCK_TIMEOUT. Every write after the claim is conditional on the
claim's `lock_token`, so a request that lost its claim never overwrites the new owner's row.

The dependency needs the authenticated principal (keys are per user), hence the import from `auth`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio
from fastapi import Depends, Header, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement, and_, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kindred.auth.dependencies import CurrentUser
from kindred.kit import clock
from kindred.kit.db import Database
from kindred.kit.errors import AppError, Conflict
from kindred.models import IdempotencyKey, IdempotencyState
from kindred.observability.logging import get_logger

log = get_logger(__name__)

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL = timedelta(hours=24)
# Longer than any request may run (REQUEST_TIMEOUT defaults to 30 s): an older claim is a crashed worker's.
LOCK_TIMEOUT = timedelta(seconds=60)
RETRY_AFTER_SECONDS = 1
# Responses of the routes that take a key are small JSON; a larger one is forwarded, not stored.
MAX_STORED_BODY = 1024 * 1024
KEY_PATTERN = r"^[!-~]+$"  # visible ASCII, no spaces

_SCOPE_KEY = "kindred.idempotency"
_HEADER_BYTES = KEY_HEADER.lower().encode()
_FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded"})
_CHUNK = 256 * 1024


class IdempotencyInProgress(Conflict):
    code, message = "idempotency_in_progress", "A request with this Idempotency-Key is still in progress."

    def __init__(self) -> None:
        super().__init__(headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class IdempotencyKeyReused(AppError):
    status, code, message = 422, "idempotency_key_reused", "This Idempotency-Key was used for a different request."


@dataclass(frozen=True)
class StoredResponse:
    status: int
    content_type: str | None
    body: bytes


class IdempotentReplay(Exception):
    """Raised by the dependency to answer with the stored response instead of running the endpoint.

    Control flow rather than an error: `replay_handler` turns it into the stored response.
    """

    def __init__(self, stored: StoredResponse) -> None:
        self.stored = stored
        super().__init__("idempotent replay")


async def replay_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    stored = exc.stored
    headers = {REPLAYED_HEADER: "true"}
    if stored.content_type:
        headers["content-type"] = stored.content_type
    return Response(content=stored.body, status_code=stored.status, headers=headers)


# ---------------------------------------------------------------------------------------------- storage


class IdempotencyStore:
    """All SQL on `idempotency_keys`. Each method is its own short transaction, never the request's."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(self, user_id: uuid.UUID, key: str, fingerprint: str, now: datetime) -> uuid.UUID | StoredResponse:
        """The new claim's lock token, or the stored response to replay; raises 409/422 as described above."""
        for _ in range(3):  # a lost race re-reads the row; three losses in a row mean someone else owns it
            token = uuid.uuid4()
            async with self.db.unit_of_work() as session:
                outcome = await self._claim_once(session, user_id, key, fingerprint, token, now)
            if outcome is not None:
                return outcome
        raise IdempotencyInProgress()

    async def _claim_once(
        self,
        session: AsyncSession,
        user_id: uuid.UUID,
        key: str,
        fingerprint: str,
        token: uuid.UUID,
        now: datetime,
    ) -> uuid.UUID | StoredResponse | None:
        values: dict[str, Any] = {
            "fingerprint": fingerprint,
            "state": IdempotencyState.in_progress.value,
            "lock_token": token,
            "locked_at": now,
            "created_at": now,
            "completed_at": None,
            "response_status": None,
            "response_content_type": None,
            "response_body": None,
        }
        insert_fn = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        inserted = await session.execute(
            insert_fn(IdempotencyKey)
            .values(user_id=user_id, key=key, **values)
            .on_conflict_do_nothing(index_elements=["user_id", "key"])
        )
        if getattr(inserted, "rowcount", 0) == 1:
            return token
        row = await session.scalar(select(IdempotencyKey).where(_row(user_id, key)))
        if row is None:  # deleted (released) since the insert collided: try again
            return None
        running = row.state == IdempotencyState.in_progress.value and row.locked_at > now - LOCK_TIMEOUT
        if row.created_at <= now - KEY_TTL and not running:
            return await self._take_over(session, row, values, token, reason="expired")
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if row.state == IdempotencyState.completed.value:
            assert row.response_status is not None
            return StoredResponse(row.response_status, row.response_content_type, row.response_body or b"")
        if running:
            raise IdempotencyInProgress()
        # In progress for longer than any request runs: its worker died. The key keeps its first-use time.
        return await self._take_over(session, row, {**values, "created_at": row.created_at}, token, reason="stale")

    async def _take_over(
        self, session: AsyncSession, row: IdempotencyKey, values: dict[str, Any], token: uuid.UUID, *, reason: str
    ) -> uuid.UUID | None:
        """Compare-and-set on the row's (lock_token, state): of concurrent takers exactly one wins."""
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                _row(row.user_id, row.key),
                IdempotencyKey.lock_token == row.lock_token,
                IdempotencyKey.state == row.state,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            return None
        log.info("idempotency.taken_over", user_id=str(row.user_id), reason=reason)
        return token

    async def complete(
        self, user_id: uuid.UUID, key: str, token: uuid.UUID, response: StoredResponse, now: datetime
    ) -> bool:
        async with self.db.unit_of_work() as session:
            result = await session.execute(
                update(IdempotencyKey)
                .where(_claimed(user_id, key, token))
                .values(
                    state=IdempotencyState.completed.value,
                    completed_at=now,
                    response_status=response.status,
                    response_content_type=response.content_type,
                    response_body=response.body,
                )
                .execution_options(synchronize_session=False)
            )
        return getattr(result, "rowcount", 0) == 1

    async def release(self, user_id: uuid.UUID, key: str, token: uuid.UUID) -> None:
        async with self.db.unit_of_work() as session:
            await session.execute(
                delete(IdempotencyKey).where(_claimed(user_id, key, token)).execution_options(synchronize_session=False)
            )


def _row(user_id: uuid.UUID, key: str) -> ColumnElement[bool]:
    return and_(IdempotencyKey.user_id == user_id, IdempotencyKey.key == key)


def _claimed(user_id: uuid.UUID, key: str, token: uuid.UUID) -> ColumnElement[bool]:
    """Still ours: in progress under our token (a takeover after LOCK_TIMEOUT changes the token)."""
    return and_(
        _row(user_id, key),
        IdempotencyKey.lock_token == token,
        IdempotencyKey.state == IdempotencyState.in_progress.value,
    )


# ---------------------------------------------------------------------------------------------- the request


@dataclass
class Claim:
    store: IdempotencyStore
    user_id: uuid.UUID
    key: str
    token: uuid.UUID

    async def complete(self, response: StoredResponse) -> None:
        if not await self.store.complete(self.user_id, self.key, self.token, response, clock.now()):
            log.warning("idempotency.claim_lost", user_id=str(self.user_id), status=response.status)

    async def release(self) -> None:
        await self.store.release(self.user_id, self.key, self.token)


class _Slot:
    """Put in the scope by the middleware, filled by the dependency: shared whatever copies the scope."""

    claim: Claim | None = None


async def request_fingerprint(request: Request) -> str:
    """sha256 over method, path, query and the body: JSON canonicalised (key order and spacing do not
    matter), forms by their fields and file contents (a retried upload has a new multipart boundary)."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.scope["path"].encode(), request.scope.get("query_string", b"")):
        _field(digest, part)
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type in _FORM_TYPES:
        _field(digest, b"form")
        # FastAPI parsed the form before the dependencies ran; Starlette returns that same parse.
        form = await request.form()
        for name, value in form.multi_items():
            _field(digest, name.encode())
            if isinstance(value, UploadFile):
                _field(digest, b"file")
                _field(digest, (value.filename or "").encode())
                _field(digest, (value.content_type or "").encode())
                _field(digest, await _file_digest(value))
            else:
                _field(digest, b"text")
                _field(digest, value.encode())
    else:
        body = await request.body()
        if media_type == "application/json" or media_type.endswith("+json"):
            _field(digest, b"json")
            _field(digest, _canonical_json(body))
        else:
            _field(digest, b"raw")
            _field(digest, body)
    return digest.hexdigest()


def _field(digest: Any, data: bytes) -> None:
    """Length-prefixed, so no two different requests hash the same concatenation."""
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)


def _canonical_json(body: bytes) -> bytes:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return body  # the endpoint answers it (400/422); the raw bytes still identify it
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


async def _file_digest(upload: UploadFile) -> bytes:
    """Hash the spooled upload and rewind it for the endpoint."""
    digest = hashlib.sha256()
    await upload.seek(0)
    while chunk := await upload.read(_CHUNK):
        digest.update(chunk)
    await upload.seek(0)
    return digest.digest()


async def idempotent(
    request: Request,
    principal: CurrentUser,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=KEY_HEADER,
            min_length=1,
            max_length=255,
            pattern=KEY_PATTERN,
            description=(
                "Optional, 1-255 visible ASCII characters, unique per request you mean (a UUID). A retry with "
                "the same key and request within 24 h returns the first response with `Idempotent-Replayed: "
                "true` and does nothing again; the same key with a different request is 422 "
                "`idempotency_key_reused`; while the first is still running, 409 `idempotency_in_progress`. "
                "Keys are per user."
            ),
        ),
    ] = None,
) -> None:
    if idempotency_key is None:
        return
    slot = request.scope.get(_SCOPE_KEY)
    if not isinstance(slot, _Slot):
        raise RuntimeError("IdempotencyMiddleware is not installed: responses could not be stored")
    fingerprint = await request_fingerprint(request)
    store = IdempotencyStore(request.app.state.db)
    outcome = await store.claim(principal.user_id, idempotency_key, fingerprint, clock.now())
    if isinstance(outcome, StoredResponse):
        log.info("idempotency.replayed", user_id=str(principal.user_id), status=outcome.status)
        raise IdempotentReplay(outcome)
    slot.claim = Claim(store, principal.user_id, idempotency_key, outcome)


# One parameter makes a route idempotent: `async def create(..., principal: CurrentUser, _: Idempotent)`.
# Declare it before the parameters that open the request's database session.
Idempotent = Annotated[None, Depends(idempotent)]

# For a route's `responses=`: the codes a key adds (merge the descriptions with the route's own).
IDEMPOTENCY_409 = "idempotency_in_progress (Retry-After)"
IDEMPOTENCY_422 = "idempotency_key_reused"


# ---------------------------------------------------------------------------------------------- middleware


def _is_transient(status: int) -> bool:
    """Worth running again on a retry: server errors, unavailability, rate limits and used-up quotas."""
    return status >= 500 or status == 429


class IdempotencyMiddleware:
    """Store the response of a request `Idempotent` claimed, before forwarding it; release it on failure.

    Runs inside the request-id middleware and outside the exception handlers, so it sees the rendered
    error responses and the unhandled exceptions. By the time a response is sent the request's own
    session has closed (it commits before the response), so the write never needs a second connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not any(name == _HEADER_BYTES for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        slot = _Slot()
        scope[_SCOPE_KEY] = slot
        recorder = _Recorder(slot, send)
        try:
            await self.app(scope, receive, recorder.send)
        finally:
            # No complete response went out (an exception, a cancelled request): a retry must run again.
            await recorder.abandon()


class _Recorder:
    def __init__(self, slot: _Slot, send: Send) -> None:
        self.slot = slot
        self.downstream = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.size = 0
        self.settled = False

    async def send(self, message: Message) -> None:
        claim = self.slot.claim
        if claim is None or self.settled:
            await self.downstream(message)
            return
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self._give_up(claim, "unsupported_message")
            await self.downstream(message)
            return
        chunk = message.get("body", b"")
        self.chunks.append(chunk)
        self.size += len(chunk)
        if message.get("more_body", False):
            if self.size > MAX_STORED_BODY:
                await self._give_up(claim, "body_too_large")
            return
        body = b"".join(self.chunks)
        await self._settle(claim, self.start, body)
        await self.downstream(self.start)
        await self.downstream({"type": "http.response.body", "body": body})

    async def _settle(self, claim: Claim, start: Message, body: bytes) -> None:
        self.settled = True
        status = int(start["status"])
        try:
            if _is_transient(status) or len(body) > MAX_STORED_BODY:
                await claim.release()
            else:
                await claim.complete(StoredResponse(status, _content_type(start), body))
        except Exception as exc:  # the response itself is right; only its replay is lost
            log.warning("idempotency.store_failed", user_id=str(claim.user_id), error=type(exc).__name__)

    async def _give_up(self, claim: Claim, reason: str) -> None:
        """Stop recording (streamed or oversized response): release the key and pass what was held."""
        self.settled = True
        log.warning("idempotency.not_stored", user_id=str(claim.user_id), reason=reason)
        await self._release_quietly(claim)
        if self.start is not None:
            await self.downstream(self.start)
        if self.chunks:
            await self.downstream({"type": "http.response.body", "body": b"".join(self.chunks), "more_body": True})

    async def abandon(self) -> None:
        claim = self.slot.claim
        if claim is None or self.settled:
            return
        self.settled = True
        with anyio.CancelScope(shield=True):
            await self._release_quietly(claim)

    async def _release_quietly(self, claim: Claim) -> None:
        try:
            await claim.release()
        except Exception as exc:  # left in progress: taken over after LOCK_TIMEOUT
            log.warning("idempotency.release_failed", user_id=str(claim.user_id), error=type(exc).__name__)


def _content_type(start: Message) -> str | None:
    for name, value in start.get("headers", []):
        if name.lower() == b"content-type":
            return bytes(value).decode("latin-1")
    return None
