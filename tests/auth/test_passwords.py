"""Forgotten and changed passwords: POST /forgot-password, /reset-password and /change-password."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.models import AuthSession, User
from kindred.settings import Settings
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import Account, emailed_token, login, new_email, register, verified_account

FORGOT = "/api/v1/auth/forgot-password"
RESET = "/api/v1/auth/reset-password"
CHANGE = "/api/v1/auth/change-password"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/me"
NEW_PASSWORD = "a brand new passphrase"


# ---------------------------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def move_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + by)


async def reset_token(client: httpx.AsyncClient, mail: MemoryEmailBackend, email: str) -> str:
    response = await client.post(FORGOT, json={"email": email})
    assert response.status_code == 202, response.text
    return emailed_token(mail, email, "reset_password")


async def reset(client: httpx.AsyncClient, token: str, new_password: str = NEW_PASSWORD) -> httpx.Response:
    return await client.post(RESET, json={"token": token, "new_password": leaks.canary(new_password)})


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def second_session(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    response = await login(client, account)
    assert response.status_code == 200, response.text
    return response.json()


async def password_hash(app: FastAPI, email: str) -> str:
    async with app.state.db.sessionmaker() as session:
        value = await session.scalar(select(User.password_hash).where(User.email == email))
    assert value is not None
    return value


async def sessions_of(app: FastAPI, user_id: str) -> list[AuthSession]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.scalars(select(AuthSession).where(AuthSession.user_id == uuid.UUID(user_id)))
        return list(rows.all())


# ---------------------------------------------------------------------------------------------- forgot-password


async def test_forgot_password_for_a_known_address_is_202_and_emails_a_reset_link(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    response = await client.post(FORGOT, json={"email": account.email})
    assert response.status_code == 202, response.text
    [message] = mail.sent_to(account.email)
    assert message.template == "reset_password"
    token = emailed_token(mail, account.email, "reset_password")
    assert f"{settings.frontend_url}/reset-password?token={token}" in message.text


async def test_forgot_password_for_an_unknown_address_is_202_and_sends_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    response = await client.post(FORGOT, json={"email": new_email()})
    assert response.status_code == 202, response.text
    assert mail.outbox == []


async def test_forgot_password_answers_identically_for_known_and_unknown_addresses(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    known = await client.post(FORGOT, json={"email": account.email})
    unknown = await client.post(FORGOT, json={"email": new_email()})
    assert known.status_code == unknown.status_code == 202
    assert known.content == unknown.content


async def test_forgot_password_matches_the_address_case_insensitively(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    await client.post(FORGOT, json={"email": account.email.upper()})
    assert [m.template for m in mail.sent_to(account.email)] == ["reset_password"]
    assert mail.outbox[0].to == account.email


# ---------------------------------------------------------------------------------------------- reset-password


async def test_reset_password_with_a_fresh_token_is_204(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await reset(client, await reset_token(client, mail, account.email))
    assert response.status_code == 204, response.text
    assert response.content == b""


async def test_reset_password_token_is_single_use(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    assert (await reset(client, token)).status_code == 204
    assert_error(await reset(client, token, "yet another passphrase"), 400, "token_invalid")


async def test_concurrent_resets_with_one_token_succeed_once(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    candidates = ["first new passphrase", "second new passphrase", "third new passphrase"]
    responses = await asyncio.gather(*(reset(client, token, p) for p in candidates))
    assert sorted(r.status_code for r in responses) == [204, 400, 400], [r.text for r in responses]
    winner = candidates[[r.status_code for r in responses].index(204)]
    for password in candidates:
        expected = 200 if password == winner else 401
        assert (await sign_in(client, account.email, password)).status_code == expected


async def test_reset_password_token_is_rejected_after_30_minutes(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    before = await password_hash(app, account.email)
    move_clock(monkeypatch, timedelta(minutes=31))
    assert_error(await reset(client, token), 400, "token_invalid")
    assert await password_hash(app, account.email) == before


async def test_reset_password_token_still_works_at_29_minutes(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    move_clock(monkeypatch, timedelta(minutes=29))
    assert (await reset(client, token)).status_code == 204


async def test_reset_password_with_an_unknown_token_is_400_token_invalid(client: httpx.AsyncClient) -> None:
    assert_error(await reset(client, leaks.canary(uuid.uuid4().hex * 2)), 400, "token_invalid")


async def test_reset_password_with_a_verify_email_token_is_400_token_invalid(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    assert_error(await reset(client, emailed_token(mail, body["email"], "verify_email")), 400, "token_invalid")


async def test_reset_password_with_a_weak_password_is_422_and_does_not_spend_the_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    before = await password_hash(app, account.email)
    assert_error(await reset(client, token, "password123"), 422, "weak_password")
    assert await password_hash(app, account.email) == before
    assert (await reset(client, token)).status_code == 204


async def test_reset_password_lets_the_new_password_sign_in(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await reset(client, await reset_token(client, mail, account.email))
    response = await sign_in(client, account.email, NEW_PASSWORD)
    assert response.status_code == 200, response.text


async def test_reset_password_makes_the_old_password_fail_with_invalid_credentials(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await reset(client, await reset_token(client, mail, account.email))
    assert_error(await sign_in(client, account.email, account.password), 401, "invalid_credentials")


async def test_reset_password_revokes_every_session_and_its_access_tokens(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    other = await second_session(client, account)
    for token in (account.access_token, other["access_token"]):  # warm the session cache first
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
    await reset(client, await reset_token(client, mail, account.email))
    for token in (account.access_token, other["access_token"]):
        assert_error(await client.get(ME, headers=bearer(token)), 401, "session_revoked")
    rows = await sessions_of(app, account.id)
    assert len(rows) == 2 and all(r.revoked_at is not None for r in rows)


async def test_reset_password_makes_old_refresh_tokens_fail_with_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    other = await second_session(client, account)
    await reset(client, await reset_token(client, mail, account.email))
    for refresh_token in (account.refresh_token, other["refresh_token"]):
        response = await client.post(REFRESH, json={"refresh_token": refresh_token})
        assert_error(response, 401, "session_revoked")


async def test_reset_password_emails_a_password_changed_notice(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    token = await reset_token(client, mail, account.email)
    mail.clear()
    await reset(client, token)
    assert [m.template for m in mail.sent_to(account.email)] == ["password_changed"]
    assert len(mail.outbox) == 1


async def test_reset_password_verifies_an_account_that_had_not_confirmed_its_address(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    body = await register(client)
    await reset(client, await reset_token(client, mail, body["email"]))
    response = await sign_in(client, body["email"], NEW_PASSWORD)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["email_verified"] is True


async def test_a_newer_reset_link_invalidates_the_previous_one(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    previous = await reset_token(client, mail, account.email)
    newest = await reset_token(client, mail, account.email)
    assert_error(await reset(client, previous), 400, "token_invalid")
    assert (await reset(client, newest)).status_code == 204


# ---------------------------------------------------------------------------------------------- change-password


async def change_password(client: httpx.AsyncClient, account: Account, current: str, new: str) -> httpx.Response:
    return await client.post(
        CHANGE, json={"current_password": current, "new_password": leaks.canary(new)}, headers=account.headers
    )


async def test_change_password_with_a_wrong_current_password_is_401_invalid_credentials(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    before = await password_hash(app, account.email)
    response = await change_password(client, account, "not the password at all", NEW_PASSWORD)
    assert_error(response, 401, "invalid_credentials")
    assert await password_hash(app, account.email) == before


async def test_change_password_with_a_wrong_current_password_keeps_the_session(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await change_password(client, account, "not the password at all", NEW_PASSWORD)
    assert (await client.get(ME, headers=account.headers)).status_code == 200


async def test_change_password_is_204(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await change_password(client, account, account.password, NEW_PASSWORD)
    assert response.status_code == 204, response.text
    assert response.content == b""


async def test_change_password_lets_the_new_password_sign_in_and_not_the_old(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await change_password(client, account, account.password, NEW_PASSWORD)
    assert (await sign_in(client, account.email, NEW_PASSWORD)).status_code == 200
    assert_error(await sign_in(client, account.email, account.password), 401, "invalid_credentials")


async def test_change_password_revokes_the_other_sessions(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    other = await second_session(client, account)
    assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 200  # cached as live
    await change_password(client, account, account.password, NEW_PASSWORD)
    assert_error(await client.get(ME, headers=bearer(other["access_token"])), 401, "session_revoked")
    assert_error(await client.post(REFRESH, json={"refresh_token": other["refresh_token"]}), 401, "session_revoked")


async def test_change_password_keeps_the_current_session_working(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await second_session(client, account)
    await change_password(client, account, account.password, NEW_PASSWORD)
    assert (await client.get(ME, headers=account.headers)).status_code == 200
    refreshed = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    live = [r for r in await sessions_of(app, account.id) if r.revoked_at is None]
    assert len(live) == 1


async def test_change_password_emails_a_password_changed_notice(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    await change_password(client, account, account.password, NEW_PASSWORD)
    assert [m.template for m in mail.sent_to(account.email)] == ["password_changed"]


@pytest.mark.parametrize("weak", ["short1!", "1234567890", "password123"])
async def test_change_password_to_a_weak_password_is_422_weak_password(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, weak: str
) -> None:
    account = await verified_account(client, mail)
    before = await password_hash(app, account.email)
    assert_error(await change_password(client, account, account.password, weak), 422, "weak_password")
    assert await password_hash(app, account.email) == before


async def test_change_password_without_a_session_is_401_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.post(CHANGE, json={"current_password": "whatever password", "new_password": NEW_PASSWORD})
    assert_error(response, 401, "not_authenticated")
