"""Email verification, resending the link, and password sign-in (POST /verify-email, /resend-verification, /login)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.models import AccountStatus, AuditEntry, AuthSession, User
from kindred.settings import Settings
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import emailed_token, login, new_email, register, verified_account

VERIFY = "/api/v1/auth/verify-email"
RESEND = "/api/v1/auth/resend-verification"
LOGIN = "/api/v1/auth/login"
ME = "/api/v1/me"
PAIR_KEYS = {"user", "access_token", "refresh_token", "token_type", "expires_in"}
USER_KEYS = {"id", "email", "display_name", "role", "tier", "email_verified", "created_at"}


# ---------------------------------------------------------------------------------------------- helpers


def without_request_id(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    body.pop("request_id")
    return body


def move_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + by)


async def user_row(app: FastAPI, email: str) -> User:
    async with app.state.db.sessionmaker() as session:
        user = await session.scalar(select(User).where(User.email == email))
    assert user is not None
    return user


async def audit_rows(app: FastAPI, action: str) -> list[AuditEntry]:
    async with app.state.db.sessionmaker() as session:
        return list((await session.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def set_status(app: FastAPI, email: str, status: AccountStatus, **values: Any) -> None:
    async with app.state.db.sessionmaker() as session:
        await session.execute(update(User).where(User.email == email).values(status=status.value, **values))
        await session.commit()


def assert_no_email_in(entry: AuditEntry, *addresses: str) -> None:
    text = " ".join(
        str(v)
        for v in (entry.action, entry.actor_id, entry.target_type, entry.target_id, entry.reason, entry.request_id)
    )
    text += " " + str(entry.meta)
    assert "@" not in text
    for address in addresses:
        assert address.split("@")[0] not in text


# ---------------------------------------------------------------------------------------------- verify-email


async def test_verify_email_returns_a_token_pair_for_the_new_user(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client, display_name="Robin")
    response = await client.post(VERIFY, json={"token": emailed_token(mail, body["email"], "verify_email")})
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) >= PAIR_KEYS
    assert pair["token_type"] == "bearer"
    assert isinstance(pair["expires_in"], int) and pair["expires_in"] > 0
    assert set(pair["user"]) >= USER_KEYS
    assert pair["user"]["email"] == body["email"]
    assert pair["user"]["display_name"] == "Robin"
    assert pair["user"]["email_verified"] is True
    assert (pair["user"]["role"], pair["user"]["tier"]) == ("user", "free")


async def test_verify_email_marks_the_account_verified_in_the_database(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    body = await register(client)
    assert (await user_row(app, body["email"])).email_verified_at is None
    await client.post(VERIFY, json={"token": emailed_token(mail, body["email"], "verify_email")})
    assert (await user_row(app, body["email"])).email_verified_at is not None


async def test_verify_email_logs_the_user_in_with_a_working_access_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    body = await register(client)
    pair = (await client.post(VERIFY, json={"token": emailed_token(mail, body["email"], "verify_email")})).json()
    me = await client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200, me.text
    assert me.json()["user"]["id"] == pair["user"]["id"]
    async with app.state.db.sessionmaker() as session:
        sessions = (
            await session.scalars(select(AuthSession).where(AuthSession.user_id == uuid.UUID(pair["user"]["id"])))
        ).all()
    assert len(sessions) == 1 and sessions[0].revoked_at is None


async def test_verify_token_is_single_use(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    body = await register(client)
    token = emailed_token(mail, body["email"], "verify_email")
    assert (await client.post(VERIFY, json={"token": token})).status_code == 200
    assert_error(await client.post(VERIFY, json={"token": token}), 400, "token_invalid")


async def test_concurrent_uses_of_one_verify_token_sign_in_once(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    body = await register(client)
    token = emailed_token(mail, body["email"], "verify_email")
    responses = await asyncio.gather(*(client.post(VERIFY, json={"token": token}) for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [200, 400, 400], [r.text for r in responses]
    for response in responses:
        if response.status_code == 400:
            assert_error(response, 400, "token_invalid")
    user = await user_row(app, body["email"])
    async with app.state.db.sessionmaker() as session:
        sessions = (await session.scalars(select(AuthSession).where(AuthSession.user_id == user.id))).all()
    assert len(sessions) == 1


async def test_verify_token_still_works_just_before_24_hours(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = await register(client)
    token = emailed_token(mail, body["email"], "verify_email")
    move_clock(monkeypatch, timedelta(hours=23, minutes=59))
    assert (await client.post(VERIFY, json={"token": token})).status_code == 200


async def test_verify_token_expires_after_24_hours_with_400_token_invalid(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = await register(client)
    token = emailed_token(mail, body["email"], "verify_email")
    move_clock(monkeypatch, timedelta(hours=24, seconds=1))
    assert_error(await client.post(VERIFY, json={"token": token}), 400, "token_invalid")
    assert (await user_row(app, body["email"])).email_verified_at is None


async def test_verify_with_an_unknown_token_is_400_token_invalid(client: httpx.AsyncClient) -> None:
    token = leaks.canary(uuid.uuid4().hex + uuid.uuid4().hex)
    assert_error(await client.post(VERIFY, json={"token": token}), 400, "token_invalid")


async def test_verify_with_a_reset_password_token_is_400_token_invalid(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    await client.post("/api/v1/auth/forgot-password", json={"email": body["email"]})
    token = emailed_token(mail, body["email"], "reset_password")
    assert_error(await client.post(VERIFY, json={"token": token}), 400, "token_invalid")


# ---------------------------------------------------------------------------------------------- login before verifying


async def test_login_before_verifying_with_the_right_password_is_403_email_not_verified(
    client: httpx.AsyncClient,
) -> None:
    body = await register(client)
    response = await client.post(LOGIN, json={"email": body["email"], "password": body["password"]})
    assert_error(response, 403, "email_not_verified")


async def test_login_before_verifying_with_a_wrong_password_is_401_invalid_credentials(
    client: httpx.AsyncClient,
) -> None:
    body = await register(client)
    response = await client.post(LOGIN, json={"email": body["email"], "password": "not the password at all"})
    assert_error(response, 401, "invalid_credentials")


# ---------------------------------------------------------------------------------------------- resend-verification


async def test_resend_verification_for_an_unknown_address_is_202_and_sends_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    response = await client.post(RESEND, json={"email": new_email()})
    assert response.status_code == 202, response.text
    assert mail.outbox == []


async def test_resend_verification_for_a_verified_address_is_202_and_sends_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    response = await client.post(RESEND, json={"email": account.email})
    assert response.status_code == 202, response.text
    assert mail.outbox == []


async def test_resend_verification_answers_identically_for_unknown_verified_and_unverified_addresses(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    pending = await register(client)
    verified = await verified_account(client, mail)
    responses = [
        await client.post(RESEND, json={"email": address})
        for address in (new_email(), verified.email, pending["email"])
    ]
    assert {r.status_code for r in responses} == {202}
    assert {r.content for r in responses} == {responses[0].content}


async def test_resend_verification_emails_a_new_link_to_an_unverified_address(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    body = await register(client)
    mail.clear()
    assert (await client.post(RESEND, json={"email": body["email"].upper()})).status_code == 202
    [message] = mail.sent_to(body["email"])
    assert message.template == "verify_email"
    assert f"{settings.frontend_url}/verify-email?token=" in message.text


async def test_resent_verification_link_verifies_the_account(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    await client.post(RESEND, json={"email": body["email"]})
    newest = emailed_token(mail, body["email"], "verify_email")
    response = await client.post(VERIFY, json={"token": newest})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email_verified"] is True


async def test_resending_verification_invalidates_the_previous_link(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    previous = emailed_token(mail, body["email"], "verify_email")
    await client.post(RESEND, json={"email": body["email"]})
    newest = emailed_token(mail, body["email"], "verify_email")
    assert newest != previous
    assert_error(await client.post(VERIFY, json={"token": previous}), 400, "token_invalid")


# ---------------------------------------------------------------------------------------------- login


async def test_login_with_the_right_password_returns_a_token_pair(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    pair = response.json()
    assert set(pair) >= PAIR_KEYS
    assert pair["token_type"] == "bearer"
    assert pair["user"]["id"] == account.id
    me = await client.get(ME, headers={"Authorization": f"Bearer {pair['access_token']}"})
    assert me.status_code == 200, me.text


async def test_login_is_case_insensitive_on_the_email(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.post(LOGIN, json={"email": account.email.upper(), "password": account.password})
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.id


async def test_login_with_a_wrong_password_is_401_invalid_credentials(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    response = await client.post(LOGIN, json={"email": account.email, "password": "not the password at all"})
    assert_error(response, 401, "invalid_credentials")


async def test_login_answers_unknown_email_and_wrong_password_identically(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    unknown = await client.post(LOGIN, json={"email": new_email(), "password": account.password})
    wrong = await client.post(LOGIN, json={"email": account.email, "password": "not the password at all"})
    assert_error(unknown, 401, "invalid_credentials")
    assert_error(wrong, 401, "invalid_credentials")
    assert without_request_id(unknown) == without_request_id(wrong)
    assert unknown.headers.get("www-authenticate") == wrong.headers.get("www-authenticate")


@pytest.mark.parametrize("status", [AccountStatus.banned, AccountStatus.deleted])
async def test_login_to_a_banned_or_deleted_account_is_the_same_401_invalid_credentials(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, status: AccountStatus
) -> None:
    account = await verified_account(client, mail)
    unknown = await client.post(LOGIN, json={"email": new_email(), "password": account.password})
    await set_status(app, account.email, status)
    closed = await login(client, account)
    assert_error(closed, 401, "invalid_credentials")
    assert without_request_id(closed) == without_request_id(unknown)


async def test_login_to_a_suspended_account_is_403_account_suspended_with_until(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    until = datetime.now(UTC).replace(microsecond=0) + timedelta(days=3)
    await set_status(app, account.email, AccountStatus.suspended, suspended_until=until)
    error = assert_error(await login(client, account), 403, "account_suspended")
    assert error["details"]["until"] == until.isoformat().replace("+00:00", "Z")


async def test_login_creates_a_new_session_row(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await login(client, account)
    async with app.state.db.sessionmaker() as session:
        rows = (await session.scalars(select(AuthSession).where(AuthSession.user_id == uuid.UUID(account.id)))).all()
    assert len(rows) == 2  # verify-email's and this one
    assert all(r.revoked_at is None for r in rows)


# ---------------------------------------------------------------------------------------------- login audit


async def test_login_writes_an_auth_signin_audit_row_without_the_email(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    response = await login(client, account)
    assert response.status_code == 200
    rows = [r for r in await audit_rows(app, "auth.signin") if r.reason != "email_verification"]
    assert len(rows) == 1
    assert rows[0].actor_id == uuid.UUID(account.id)
    assert rows[0].request_id == response.headers["x-request-id"]
    assert_no_email_in(rows[0], account.email)


async def test_failed_login_audit_row_survives_the_401_and_holds_no_email(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    response = await client.post(LOGIN, json={"email": account.email, "password": "not the password at all"})
    assert response.status_code == 401
    [row] = await audit_rows(app, "auth.signin_failed")
    assert row.target_id == account.id
    assert row.actor_id is None
    assert row.request_id == response.headers["x-request-id"]
    assert_no_email_in(row, account.email)


async def test_failed_login_for_an_unknown_email_is_audited_without_the_email(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    address = new_email()
    response = await client.post(LOGIN, json={"email": address, "password": "whatever password"})
    assert response.status_code == 401
    [row] = await audit_rows(app, "auth.signin_failed")
    assert row.target_id is None and row.actor_id is None
    assert_no_email_in(row, address)


async def test_login_with_an_unknown_field_is_422_validation_error(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    response = await client.post(LOGIN, json={"email": account.email, "password": account.password, "remember": True})
    error = assert_error(response, 422, "validation_error")
    assert ["body", "remember"] in [f["loc"] for f in error["details"]["fields"]]
