"""Changing the sign-in address: POST /change-email, confirmed by a link to the new address (/confirm-email-change)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.models import EmailToken, User
from kindred.settings import Settings
from tests.support.assertions import assert_error
from tests.support.factories import Account, emailed_token, new_email, verified_account

CHANGE = "/api/v1/auth/change-email"
CONFIRM = "/api/v1/auth/confirm-email-change"
LOGIN = "/api/v1/auth/login"


# ---------------------------------------------------------------------------------------------- helpers


async def request_change(
    client: httpx.AsyncClient, account: Account, new_address: str, password: str | None = None
) -> httpx.Response:
    return await client.post(
        CHANGE,
        json={"password": account.password if password is None else password, "new_email": new_address},
        headers=account.headers,
    )


async def confirm_token(client: httpx.AsyncClient, mail: MemoryEmailBackend, account: Account, new_address: str) -> str:
    response = await request_change(client, account, new_address)
    assert response.status_code == 202, response.text
    return emailed_token(mail, new_address, "confirm_new_email")


async def email_of(app: FastAPI, user_id: str) -> str:
    async with app.state.db.sessionmaker() as session:
        user = await session.get(User, uuid.UUID(user_id))
    assert user is not None
    return user.email


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


# ---------------------------------------------------------------------------------------------- request the change


async def test_change_email_with_a_wrong_password_is_401_invalid_credentials_and_sends_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    target = new_email()
    response = await request_change(client, account, target, password="not the password at all")
    assert_error(response, 401, "invalid_credentials")
    assert mail.outbox == []
    assert await email_of(app, account.id) == account.email


async def test_change_email_is_202(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await request_change(client, account, new_email())
    assert response.status_code == 202, response.text
    assert isinstance(response.json()["status"], str)


async def test_change_email_sends_the_confirm_link_to_the_new_address_only(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    target = new_email()
    await request_change(client, account, target)
    [message] = mail.outbox
    assert message.to == target
    assert message.template == "confirm_new_email"
    token = emailed_token(mail, target, "confirm_new_email")
    assert f"{settings.frontend_url}/confirm-email?token={token}" in message.text
    assert mail.sent_to(account.email) == []


async def test_change_email_does_not_change_the_address_before_it_is_confirmed(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await request_change(client, account, new_email())
    assert await email_of(app, account.id) == account.email
    assert (await sign_in(client, account.email, account.password)).status_code == 200


async def test_change_email_to_a_taken_address_is_the_same_202_and_emails_no_one(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    other = await verified_account(client, mail)
    free = await request_change(client, account, new_email())
    mail.clear()
    taken = await request_change(client, account, other.email.upper())
    assert taken.status_code == 202, taken.text
    assert taken.content == free.content
    assert mail.outbox == []
    async with app.state.db.sessionmaker() as session:
        pending = await session.scalar(
            select(func.count()).select_from(EmailToken).where(EmailToken.new_email == other.email)
        )
    assert pending == 0


async def test_change_email_to_the_current_address_is_422_validation_error(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    mail.clear()
    assert_error(await request_change(client, account, account.email.upper()), 422, "validation_error")
    assert mail.outbox == []


async def test_change_email_to_an_invalid_address_is_422_validation_error(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    error = assert_error(await request_change(client, account, "not-an-address"), 422, "validation_error")
    assert ["body", "new_email"] in [f["loc"] for f in error["details"]["fields"]]


async def test_change_email_without_a_session_is_401_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.post(CHANGE, json={"password": "whatever password", "new_email": new_email()})
    assert_error(response, 401, "not_authenticated")


# ---------------------------------------------------------------------------------------------- confirm


async def test_confirm_email_change_is_200_with_the_user_carrying_the_new_address(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    target = new_email()
    response = await client.post(CONFIRM, json={"token": await confirm_token(client, mail, account, target)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"user"}
    assert body["user"]["id"] == account.id
    assert body["user"]["email"] == target
    assert body["user"]["email_verified"] is True
    assert await email_of(app, account.id) == target


async def test_confirm_email_change_tells_the_old_address_without_revealing_the_new_one(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    target = new_email()
    token = await confirm_token(client, mail, account, target)
    mail.clear()
    await client.post(CONFIRM, json={"token": token})
    [notice] = mail.sent_to(account.email)
    assert notice.template == "email_changed"
    for part in (notice.subject, notice.text, notice.html):
        assert target.casefold() not in part.casefold()
        assert target.split("@")[0] not in part
    assert mail.sent_to(target) == []


async def test_after_confirming_the_new_address_signs_in(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    target = new_email()
    await client.post(CONFIRM, json={"token": await confirm_token(client, mail, account, target)})
    response = await sign_in(client, target, account.password)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.id


async def test_after_confirming_the_old_address_no_longer_signs_in(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await client.post(CONFIRM, json={"token": await confirm_token(client, mail, account, new_email())})
    assert_error(await sign_in(client, account.email, account.password), 401, "invalid_credentials")


async def test_confirm_email_change_token_is_single_use(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    token = await confirm_token(client, mail, account, new_email())
    assert (await client.post(CONFIRM, json={"token": token})).status_code == 200
    assert_error(await client.post(CONFIRM, json={"token": token}), 400, "token_invalid")


async def test_confirm_email_change_link_expires_after_24_hours(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await verified_account(client, mail)
    token = await confirm_token(client, mail, account, new_email())
    real_now = clock.now
    monkeypatch.setattr(clock, "now", lambda: real_now() + timedelta(hours=24, seconds=1))
    assert_error(await client.post(CONFIRM, json={"token": token}), 400, "token_invalid")
    assert await email_of(app, account.id) == account.email


async def test_confirm_email_change_with_an_unknown_token_is_400_token_invalid(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(CONFIRM, json={"token": uuid.uuid4().hex * 2}), 400, "token_invalid")


async def test_confirm_token_for_one_user_changes_only_that_user(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    alice = await verified_account(client, mail)
    bob = await verified_account(client, mail)
    alice_target, bob_target = new_email(), new_email()
    alice_token = await confirm_token(client, mail, alice, alice_target)
    bob_token = await confirm_token(client, mail, bob, bob_target)

    response = await client.post(CONFIRM, json={"token": alice_token})
    assert response.json()["user"]["id"] == alice.id
    assert await email_of(app, alice.id) == alice_target
    assert await email_of(app, bob.id) == bob.email
    # Bob's own pending change is untouched and still confirms.
    assert (await client.post(CONFIRM, json={"token": bob_token})).json()["user"]["email"] == bob_target


async def test_confirm_fails_when_the_new_address_was_taken_in_the_meantime(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    alice = await verified_account(client, mail)
    bob = await verified_account(client, mail)
    target = new_email()
    alice_token = await confirm_token(client, mail, alice, target)
    bob_token = await confirm_token(client, mail, bob, target)
    assert (await client.post(CONFIRM, json={"token": bob_token})).status_code == 200
    assert_error(await client.post(CONFIRM, json={"token": alice_token}), 400, "token_invalid")
    assert await email_of(app, alice.id) == alice.email


async def test_concurrent_confirmations_to_one_address_give_it_to_one_user(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    alice = await verified_account(client, mail)
    bob = await verified_account(client, mail)
    target = new_email()
    tokens = [await confirm_token(client, mail, alice, target), await confirm_token(client, mail, bob, target)]
    responses = await asyncio.gather(*(client.post(CONFIRM, json={"token": t}) for t in tokens))
    assert sorted(r.status_code for r in responses) == [200, 400], [r.text for r in responses]
    loser = next(r for r in responses if r.status_code == 400)
    assert_error(loser, 400, "token_invalid")
    alice_now, bob_now = await email_of(app, alice.id), await email_of(app, bob.id)
    assert [alice_now, bob_now].count(target) == 1
    assert alice_now in {target, alice.email} and bob_now in {target, bob.email}


async def test_a_newer_change_request_invalidates_the_previous_link(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    first, second = new_email(), new_email()
    first_token = await confirm_token(client, mail, account, first)
    await confirm_token(client, mail, account, second)
    assert_error(await client.post(CONFIRM, json={"token": first_token}), 400, "token_invalid")
    assert await email_of(app, account.id) == account.email


async def test_links_mailed_to_the_old_address_stop_working_once_the_change_is_confirmed(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    reset_token = emailed_token(mail, account.email, "reset_password")
    await client.post(CONFIRM, json={"token": await confirm_token(client, mail, account, new_email())})
    response = await client.post(
        "/api/v1/auth/reset-password", json={"token": reset_token, "new_password": "a brand new passphrase"}
    )
    assert_error(response, 400, "token_invalid")
