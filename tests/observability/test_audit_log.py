"""The `kindred.audit` log stream says what the audit table says: a line per committed action, none for
an action whose transaction rolled back."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit.email import MemoryEmailBackend
from kindred.kit.errors import AppError
from kindred.models import AuditEntry
from kindred.observability import audit
from tests.support.factories import login, verified_account


class _Refused(AppError):
    status, code = 409, "test_refused"


class _RefusedKeepingWrites(AppError):
    status, code, keep_writes = 409, "test_refused_kept", True


def _audit_lines(output: str, action: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == f"audit.{action}"]


async def _rows(app: FastAPI, target_id: str) -> list[AuditEntry]:
    async with app.state.db.sessionmaker() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.target_id == target_id))).all())


async def test_a_committed_action_is_logged_once_with_its_row(app: FastAPI, log_output: Callable[[], str]) -> None:
    target = str(uuid.uuid4())
    async with app.state.db.unit_of_work() as session:
        audit.record(session, "test.committed", target_type="user", target_id=target, request_id="req-1")
        await session.flush()
        assert _audit_lines(log_output(), "test.committed") == []  # flushed is not committed
    [line] = _audit_lines(log_output(), "test.committed")
    assert (line["target_id"], line["request_id"]) == (target, "req-1")
    assert len(await _rows(app, target)) == 1


@pytest.mark.parametrize("error", [_Refused, RuntimeError])
async def test_an_action_rolled_back_leaves_neither_row_nor_line(
    app: FastAPI, log_output: Callable[[], str], error: type[Exception]
) -> None:
    target = str(uuid.uuid4())
    with pytest.raises(error):
        async with app.state.db.unit_of_work() as session:
            audit.record(session, "test.rolled_back", target_type="user", target_id=target)
            await session.flush()
            raise error()
    assert _audit_lines(log_output(), "test.rolled_back") == []
    assert await _rows(app, target) == []


async def test_an_error_that_keeps_its_writes_keeps_its_line(app: FastAPI, log_output: Callable[[], str]) -> None:
    target = str(uuid.uuid4())
    with pytest.raises(_RefusedKeepingWrites):
        async with app.state.db.unit_of_work() as session:
            audit.record(session, "test.kept", target_type="user", target_id=target)
            raise _RefusedKeepingWrites()
    assert len(_audit_lines(log_output(), "test.kept")) == 1
    assert len(await _rows(app, target)) == 1


async def test_a_rollback_does_not_leak_lines_into_the_next_transaction(
    app: FastAPI, log_output: Callable[[], str]
) -> None:
    async with app.state.db.sessionmaker() as session:
        async with session.begin():
            audit.record(session, "test.first_rolled_back")
            await session.rollback()
        async with session.begin():
            audit.record(session, "test.second_committed")
    assert _audit_lines(log_output(), "test.first_rolled_back") == []
    assert len(_audit_lines(log_output(), "test.second_committed")) == 1


async def test_a_sign_in_and_a_failed_one_are_both_in_the_stream(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, log_output: Callable[[], str]
) -> None:
    account = await verified_account(client, mail)
    assert (await login(client, account)).status_code == 200
    assert (await login(client, account, password="not the password at all")).status_code == 401
    output = log_output()
    assert [line["actor_id"] for line in _audit_lines(output, "auth.signin")][-1] == account.id
    assert len(_audit_lines(output, "auth.signin_failed")) == 1
