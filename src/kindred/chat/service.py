"""Chat rules: only the two people of a match, only while it is open; idempotent sends; read receipts
that only move forward; events to both people once the transaction has committed."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from kindred.auth.service import Principal
from kindred.chat.exceptions import ConversationClosed, MessageNotInConversation
from kindred.chat.repository import ChatRepository, Position
from kindred.chat.schemas import MessageCreate, MessageRead, ReadCreate, ReadReceipt
from kindred.kit import clock
from kindred.kit.errors import MalformedRequest
from kindred.kit.pagination import Page, decode_cursor, encode_cursor
from kindred.matches.service import Conversation, MatchService
from kindred.models import Message
from kindred.observability.logging import get_logger
from kindred.observability.metrics import count_after_commit
from kindred.realtime.events import emit

log = get_logger(__name__)

MESSAGE_NEW = "message.new"
MESSAGE_READ = "message.read"

# Cursor directions: a history page continues to older messages, a catch-up page to newer ones.
OLDER, NEWER = "older", "newer"
TICK = timedelta(microseconds=1)


def message_read(message: Message) -> MessageRead:
    return MessageRead.model_validate(message, from_attributes=True)


class ChatService:
    def __init__(self, session: AsyncSession, *, request_id: str | None = None) -> None:
        self.session = session
        self.repo = ChatRepository(session)
        self.matches = MatchService(session, request_id=request_id)

    async def _open(self, principal: Principal, match_id: uuid.UUID, *, lock: bool = False) -> Conversation:
        """404 unless the caller is one of the match's two people; 403 once the conversation is closed.

        Closed means: unmatched, blocked either way, or the other account deleted, banned or suspended.
        Closed is closed for everything, reading the history included: whoever ended it, neither keeps
        a window into the other's messages.
        """
        conversation = await self.matches.conversation(principal.user_id, match_id, lock=lock)
        if conversation.closed:
            raise ConversationClosed()
        return conversation

    async def send(self, principal: Principal, match_id: uuid.UUID, body: MessageCreate) -> tuple[MessageRead, bool]:
        """The message and whether this call created it (False: the first one sent with this client_id).

        The match row is locked first, so sends in one conversation commit one after the other and each
        gets a `created_at` after the previous one: (created_at, id) is the commit order and `?after=`
        never skips a message that committed late. The unique (sender, match, client_id) settles retries.
        """
        me = principal.user_id
        conversation = await self._open(principal, match_id, lock=True)
        at = max(clock.now(), conversation.match.last_activity_at + TICK)
        message = Message(
            id=uuid.uuid4(), match_id=match_id, sender_id=me, body=body.body, client_id=body.client_id,
            created_at=at, read_at=None,
        )  # fmt: skip
        # Three statements on the way that matters: lock the match, insert, touch. A retry's insert does
        # nothing, and only then is the first message read back.
        if not await self.repo.insert(message):
            existing = await self.repo.by_client_id(match_id, me, body.client_id)
            if existing is None:  # pragma: no cover - the conflicting row is committed or ours
                raise RuntimeError("the message this client_id names has vanished")
            return message_read(existing), False
        read = message_read(message)
        await self.matches.touch(match_id, at)
        emit(self.session, [me, conversation.other_id], MESSAGE_NEW, {"message": read.model_dump(mode="json")})
        # Ids only: a message body never reaches the log.
        log.info("chat.message.sent", message_id=str(message.id), match_id=str(match_id), user_id=str(me))
        count_after_commit(self.session, "message.sent")
        return read, True

    async def history(
        self,
        principal: Principal,
        match_id: uuid.UUID,
        *,
        limit: int,
        cursor: str | None,
        after: uuid.UUID | None,
    ) -> Page[MessageRead]:
        """Newest first (`cursor` pages to older), or with `after` oldest first from that message on.

        A catch-up page's `next_cursor` continues the catch-up (with or without `after` repeated);
        a history cursor combined with `after` is malformed.
        """
        await self._open(principal, match_id)
        direction, position = OLDER, None
        if cursor:
            direction, position = self._decode(cursor)
            if after is not None and direction != NEWER:
                raise MalformedRequest("This cursor does not continue a catch-up (`after`).")
        elif after is not None:
            anchor = await self.repo.in_match(match_id, after)
            if anchor is None:
                raise MessageNotInConversation("query", "after")
            direction, position = NEWER, (anchor.created_at, anchor.id)
        if direction == NEWER:
            assert position is not None
            rows = await self.repo.oldest_first(match_id, limit=limit + 1, after=position)
        else:
            rows = await self.repo.newest_first(match_id, limit=limit + 1, before=position)
        page = rows[:limit]
        next_cursor = None
        if len(rows) > limit:
            last = page[-1]
            next_cursor = encode_cursor(direction, last.created_at.isoformat(), last.id)
        return Page[MessageRead](items=[message_read(m) for m in page], next_cursor=next_cursor)

    @staticmethod
    def _decode(cursor: str) -> tuple[str, Position]:
        direction, at_raw, id_raw = decode_cursor(cursor, 3)
        if direction not in (OLDER, NEWER):
            raise MalformedRequest("The cursor is invalid.")
        try:
            at = datetime.fromisoformat(at_raw)
            return direction, (at, uuid.UUID(id_raw))
        except ValueError:
            raise MalformedRequest("The cursor is invalid.") from None

    async def mark_read(self, principal: Principal, match_id: uuid.UUID, body: ReadCreate) -> None:
        """The other person's messages up to `up_to` (any message of the conversation) become read.

        Only unread ones change, so a receipt never moves backwards and repeating it changes nothing;
        `message.read` goes to both people only when something was marked.
        """
        me = principal.user_id
        conversation = await self._open(principal, match_id)
        anchor = await self.repo.in_match(match_id, body.up_to)
        if anchor is None:
            raise MessageNotInConversation("body", "up_to")
        now = clock.now()
        marked = await self.repo.mark_read(match_id, me, (anchor.created_at, anchor.id), now)
        if not marked:
            return
        receipt = ReadReceipt(match_id=match_id, up_to=anchor.id, read_at=now)
        emit(self.session, [conversation.other_id, me], MESSAGE_READ, receipt.model_dump(mode="json"))
        log.info("chat.messages.read", match_id=str(match_id), user_id=str(me), count=marked)
