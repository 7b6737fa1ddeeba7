"""POST /reports: strict body, the reason codes, 404/422 rules, audit without the free text."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit.email import MemoryEmailBackend
from kindred.models import AccountStatus, User
from kindred.safety.repository import not_reported_by
from tests.safety.helpers import audit_rows, report, reports_against, set_user
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import verified_account

REASONS = ["fake_profile", "harassment", "inappropriate_photos", "spam", "underage", "scam", "other"]


async def test_report_is_201_with_the_report_id_and_stored_open(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    message_id = str(uuid.uuid4())
    response = await report(client, me, other, reason="harassment", details="Rude messages", message_id=message_id)
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id"}
    [stored] = await reports_against(app, other)
    assert str(stored.id) == body["id"]
    assert (str(stored.reporter_id), stored.reason, stored.details) == (me.id, "harassment", "Rude messages")
    assert (str(stored.message_id), stored.status) == (message_id, "open")


@pytest.mark.parametrize("reason", REASONS)
async def test_every_contract_reason_is_accepted(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, reason: str
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    response = await report(client, me, other, reason=reason)
    assert response.status_code == 201, response.text


async def test_report_body_is_strict(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    bad_bodies = [
        {"user_id": other.id, "reason": "spam", "extra": True},
        {"user_id": other.id, "reason": "rude"},
        {"user_id": other.id},
        {"user_id": "not-a-uuid", "reason": "spam"},
        {"user_id": other.id, "reason": "spam", "message_id": "nope"},
        {"user_id": other.id, "reason": "spam", "details": 5},
        {"user_id": other.id, "reason": "spam", "details": "x" * 1001},
    ]
    for body in bad_bodies:
        response = await client.post("/api/v1/reports", headers=me.headers, json=body)
        assert_error(response, 422, "validation_error")


async def test_details_of_exactly_1000_characters_are_accepted(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    response = await report(client, me, other, details="x" * 1000)
    assert response.status_code == 201, response.text


async def test_reporting_yourself_is_422(app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    me = await verified_account(client, mail)
    error = assert_error(await report(client, me, me), 422, "validation_error")
    assert error["details"]["fields"][0]["loc"] == ["body", "user_id"]
    assert await reports_against(app, me) == []


async def test_reporting_an_unknown_user_is_404_user_not_found(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me = await verified_account(client, mail)
    response = await client.post(
        "/api/v1/reports", headers=me.headers, json={"user_id": str(uuid.uuid4()), "reason": "spam"}
    )
    assert_error(response, 404, "user_not_found")


async def test_reporting_a_deleted_user_is_404_user_not_found(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    await set_user(app, other, status=AccountStatus.deleted.value)
    assert_error(await report(client, me, other), 404, "user_not_found")


async def test_reports_require_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/reports", json={"user_id": str(uuid.uuid4()), "reason": "spam"})
    assert_error(response, 401, "not_authenticated")


async def test_report_audit_row_has_the_reason_code_but_never_the_details(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other = await verified_account(client, mail), await verified_account(client, mail)
    # A canary: the suite's log scan fails this test if the text reaches any log line.
    details = leaks.canary(f"private-story-{uuid.uuid4().hex}")
    response = await report(client, me, other, reason="scam", details=details)
    assert response.status_code == 201, response.text
    [row] = await audit_rows(app, "safety.report")
    assert (str(row.actor_id), row.target_type, row.target_id, row.reason) == (me.id, "user", other.id, "scam")
    flattened = repr([row.actor_id, row.action, row.target_type, row.target_id, row.reason, row.request_id, row.meta])
    assert details not in flattened


async def test_a_report_hides_the_reported_user_from_the_reporter_only(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    me, other, bystander = (
        await verified_account(client, mail),
        await verified_account(client, mail),
        await verified_account(client, mail),
    )
    await report(client, me, other)

    async def visible_to(viewer: uuid.UUID) -> set[uuid.UUID]:
        ids = [uuid.UUID(x.id) for x in (me, other, bystander)]
        async with app.state.db.sessionmaker() as session:
            query = select(User.id).where(User.id.in_(ids), User.id != viewer, not_reported_by(viewer, User.id))
            return set(await session.scalars(query))

    assert await visible_to(uuid.UUID(me.id)) == {uuid.UUID(bystander.id)}
    assert await visible_to(uuid.UUID(bystander.id)) == {uuid.UUID(me.id), uuid.UUID(other.id)}
