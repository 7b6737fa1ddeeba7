"""POST /auth/register: one answer for every address, age and password rules, strict input, one account per address."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from kindred.auth.repository import AccountRepository
from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.security import keyed_hash
from kindred.models import BannedEmail, Profile, User
from kindred.settings import Settings
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import emailed_token, new_email, register, registration, verified_account

REGISTER = "/api/v1/auth/register"
VERIFICATION_SENT = {"status": "verification_sent"}


# ---------------------------------------------------------------------------------------------- helpers


def field_locs(error: dict[str, Any]) -> list[list[str | int]]:
    fields = error["details"]["fields"]
    assert fields and all(set(f) == {"loc", "msg"} and f["msg"] for f in fields)
    return [f["loc"] for f in fields]


def headers_without_request_id(response: httpx.Response) -> list[tuple[str, str]]:
    """Every header but the per-request ones: the request id and the rate-limit counters."""
    return sorted(
        (k.lower(), v)
        for k, v in response.headers.multi_items()
        if k.lower() != "x-request-id" and not k.lower().startswith("ratelimit-")
    )


async def users_with_email(app: FastAPI, email: str) -> list[User]:
    async with app.state.db.sessionmaker() as session:
        rows = await session.scalars(select(User).where(func.lower(User.email) == email.lower()))
        return list(rows.all())


async def user_count(app: FastAPI) -> int:
    async with app.state.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)


def freeze_clock(monkeypatch: pytest.MonkeyPatch, at: datetime) -> None:
    monkeypatch.setattr(clock, "now", lambda: at)


# ---------------------------------------------------------------------------------------------- new address


async def test_register_new_address_is_202_verification_sent(client: httpx.AsyncClient) -> None:
    response = await client.post(REGISTER, json=registration())
    assert response.status_code == 202, response.text
    assert response.json() == VERIFICATION_SENT


async def test_register_new_address_creates_one_unverified_account_with_profile(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = await register(client, display_name="  Robin  ")
    [user] = await users_with_email(app, body["email"])
    assert user.email == body["email"]
    assert user.email_verified_at is None
    assert user.birthdate == date(1995, 6, 15)
    assert user.terms_version == "2026-01"
    assert user.password_hash != body["password"]
    async with app.state.db.sessionmaker() as session:
        assert await session.scalar(select(Profile.display_name).where(Profile.user_id == user.id)) == "Robin"


async def test_register_new_address_emails_a_verify_link_to_the_frontend(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    body = await register(client)
    [message] = mail.sent_to(body["email"])
    assert message.template == "verify_email"
    token = emailed_token(mail, body["email"], "verify_email")
    assert f"{settings.frontend_url}/verify-email?token={token}" in message.text
    assert len(mail.outbox) == 1


# ---------------------------------------------------------------------------------------------- no enumeration


async def test_register_answers_identically_for_new_registered_and_banned_addresses(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, settings: Settings
) -> None:
    taken = await verified_account(client, mail)
    banned = new_email()
    async with app.state.db.sessionmaker() as session:
        session.add(BannedEmail(email_hash=keyed_hash(settings.effective_secret_key, banned), reason="test"))
        await session.commit()

    fresh = await client.post(REGISTER, json=registration())
    again = await client.post(REGISTER, json=registration(email=taken.email))
    refused = await client.post(REGISTER, json=registration(email=banned))

    for response in (fresh, again, refused):
        assert response.status_code == 202, response.text
        assert response.content == fresh.content
        assert headers_without_request_id(response) == headers_without_request_id(fresh)


async def test_register_with_a_verified_address_emails_its_owner_a_signup_attempt(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    owner = await verified_account(client, mail)
    mail.clear()
    response = await client.post(REGISTER, json=registration(email=owner.email, display_name="Intruder"))
    assert response.status_code == 202
    assert [m.template for m in mail.sent_to(owner.email)] == ["signup_attempt"]
    assert len(mail.outbox) == 1


async def test_register_with_a_verified_address_creates_no_second_account_and_keeps_the_first(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    owner = await verified_account(client, mail)
    [before] = await users_with_email(app, owner.email)
    response = await client.post(
        REGISTER, json=registration(email=owner.email, password=leaks.canary("another fine passphrase"))
    )
    assert response.status_code == 202
    [after] = await users_with_email(app, owner.email)
    assert after.id == before.id
    assert after.password_hash == before.password_hash
    assert after.email_verified_at == before.email_verified_at
    assert await user_count(app) == 1


async def test_register_with_an_unverified_address_resends_a_working_verify_link(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    body = await register(client)
    mail.clear()
    await register(client, email=body["email"])
    token = emailed_token(mail, body["email"], "verify_email")
    assert len(await users_with_email(app, body["email"])) == 1
    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 200, verified.text


async def test_register_with_a_banned_address_creates_no_account_and_sends_no_email(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, settings: Settings
) -> None:
    banned = new_email()
    async with app.state.db.sessionmaker() as session:
        session.add(BannedEmail(email_hash=keyed_hash(settings.effective_secret_key, banned), reason="test"))
        await session.commit()
    response = await client.post(REGISTER, json=registration(email=banned))
    assert response.status_code == 202
    assert response.json() == VERIFICATION_SENT
    assert await users_with_email(app, banned) == []
    assert mail.outbox == []


async def test_register_with_a_banned_address_in_other_case_is_still_refused(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, settings: Settings
) -> None:
    banned = new_email()
    async with app.state.db.sessionmaker() as session:
        session.add(BannedEmail(email_hash=keyed_hash(settings.effective_secret_key, banned), reason="test"))
        await session.commit()
    response = await client.post(REGISTER, json=registration(email=banned.upper()))
    assert response.status_code == 202
    assert await users_with_email(app, banned) == []
    assert mail.outbox == []


# ---------------------------------------------------------------------------------------------- one account per address


async def test_register_lowercases_the_address_and_treats_case_variants_as_one_account(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    address = new_email()
    await register(client, email=address.upper())
    await register(client, email=address)
    users = await users_with_email(app, address)
    assert [u.email for u in users] == [address]
    assert await user_count(app) == 1
    assert all(m.to == address for m in mail.outbox)


async def test_concurrent_registrations_of_one_new_address_create_one_account(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = registration()
    responses = await asyncio.gather(*(client.post(REGISTER, json=body) for _ in range(4)))
    assert [r.status_code for r in responses] == [202] * 4, [r.text for r in responses]
    assert all(r.json() == VERIFICATION_SENT for r in responses)
    assert len(await users_with_email(app, body["email"])) == 1


async def test_register_that_loses_the_insert_race_answers_202_and_keeps_one_account(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = await register(client)
    original = AccountRepository.user_by_email
    lookups = 0

    async def lookup_missing_the_first_time(self: AccountRepository, email: str) -> User | None:
        # Simulates the other request committing between our existence check and our insert.
        nonlocal lookups
        lookups += 1
        return None if lookups == 1 else await original(self, email)

    monkeypatch.setattr(AccountRepository, "user_by_email", lookup_missing_the_first_time)
    response = await client.post(REGISTER, json={**body, "display_name": "Second"})
    assert response.status_code == 202, response.text
    assert response.json() == VERIFICATION_SENT
    assert lookups == 2  # the insert failed on the unique address and the handler looked again
    assert len(await users_with_email(app, body["email"])) == 1


# ---------------------------------------------------------------------------------------------- age


async def test_register_under_18_is_422_underage_and_creates_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    today = clock.now().date()
    body = registration(birthdate=(today - timedelta(days=17 * 366)).isoformat())
    assert_error(await client.post(REGISTER, json=body), 422, "underage")
    assert await users_with_email(app, body["email"]) == []
    assert mail.outbox == []


async def test_register_with_a_future_birthdate_is_422_underage(client: httpx.AsyncClient) -> None:
    tomorrow = clock.now().date() + timedelta(days=1)
    assert_error(await client.post(REGISTER, json=registration(birthdate=tomorrow.isoformat())), 422, "underage")


async def test_register_the_day_before_the_18th_birthday_in_utc_is_underage_even_where_it_is_already_the_day(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    instant = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    assert instant.astimezone(timezone(timedelta(hours=1))).date() == date(2026, 3, 11)
    freeze_clock(monkeypatch, instant)
    body = registration(birthdate="2008-03-11")
    assert_error(await client.post(REGISTER, json=body), 422, "underage")
    assert await users_with_email(app, body["email"]) == []


async def test_register_on_the_18th_birthday_in_utc_is_accepted(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    body = registration(birthdate="2008-03-10")
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 202, response.text
    assert len(await users_with_email(app, body["email"])) == 1


async def test_register_born_29_february_is_underage_on_28_february_of_the_18th_year(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, datetime(2026, 2, 28, 12, 0, tzinfo=UTC))
    assert_error(await client.post(REGISTER, json=registration(birthdate="2008-02-29")), 422, "underage")


async def test_register_born_29_february_is_accepted_on_1_march_of_the_18th_year(
    client: httpx.AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch, datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    body = registration(birthdate="2008-02-29")
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 202, response.text
    assert len(await users_with_email(app, body["email"])) == 1


async def test_register_with_an_impossible_date_is_422_validation_error(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.post(REGISTER, json=registration(birthdate="2007-02-29")), 422, "validation_error"
    )
    assert ["body", "birthdate"] in field_locs(error)


# ---------------------------------------------------------------------------------------------- password


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("Xq7#mP2!z", id="nine_characters"),
        pytest.param("1234567890", id="common_digits"),
        pytest.param("password123", id="common_word"),
        pytest.param("PASSWORD123", id="common_in_other_case"),
        pytest.param("aaaaaaaaaaaaab", id="two_distinct_characters"),
    ],
)
async def test_register_with_a_weak_password_is_422_weak_password_and_creates_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, password: str
) -> None:
    body = registration(password=password)
    assert_error(await client.post(REGISTER, json=body), 422, "weak_password")
    assert await users_with_email(app, body["email"]) == []
    assert mail.outbox == []


async def test_register_with_the_address_as_password_is_422_weak_password(client: httpx.AsyncClient) -> None:
    address = new_email()
    body = registration(email=address, password=address.split("@")[0])
    assert_error(await client.post(REGISTER, json=body), 422, "weak_password")


async def test_register_with_an_uncommon_ten_character_password_is_accepted(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = registration(password=leaks.canary("Xq7#mP2!zK"))
    assert (await client.post(REGISTER, json=body)).status_code == 202
    assert len(await users_with_email(app, body["email"])) == 1


# ---------------------------------------------------------------------------------------------- terms and input


async def test_register_with_an_unknown_terms_version_is_422_terms_version_invalid(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = registration(accepted_terms_version="2019-01")
    assert_error(await client.post(REGISTER, json=body), 422, "terms_version_invalid")
    assert await users_with_email(app, body["email"]) == []


async def test_register_with_an_unknown_field_is_422_validation_error_naming_it(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = registration(role="admin")
    error = assert_error(await client.post(REGISTER, json=body), 422, "validation_error")
    assert ["body", "role"] in field_locs(error)
    assert await users_with_email(app, body["email"]) == []


async def test_register_with_a_missing_field_is_422_validation_error_naming_it(client: httpx.AsyncClient) -> None:
    body = registration()
    del body["birthdate"]
    error = assert_error(await client.post(REGISTER, json=body), 422, "validation_error")
    assert ["body", "birthdate"] in field_locs(error)


async def test_register_with_an_invalid_email_is_422_validation_error(client: httpx.AsyncClient) -> None:
    error = assert_error(
        await client.post(REGISTER, json=registration(email="not-an-address")), 422, "validation_error"
    )
    assert ["body", "email"] in field_locs(error)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("password", 12345678901, id="number_as_password"),
        pytest.param("accepted_terms_version", 2026, id="number_as_terms_version"),
        pytest.param("display_name", ["Alex"], id="list_as_display_name"),
    ],
)
async def test_register_does_not_coerce_wrong_types_and_answers_422(
    client: httpx.AsyncClient, app: FastAPI, field: str, value: object
) -> None:
    body = registration(**{field: value})
    error = assert_error(await client.post(REGISTER, json=body), 422, "validation_error")
    assert ["body", field] in field_locs(error)
    assert await users_with_email(app, body["email"]) == []


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero_read_as_1970"),
        pytest.param(803174400, id="unix_timestamp"),
        pytest.param("1995-06-15T00:00:00", id="datetime_string"),
        pytest.param("19950615", id="basic_iso_format"),
    ],
)
async def test_register_with_a_birthdate_not_written_yyyy_mm_dd_is_422(
    client: httpx.AsyncClient, app: FastAPI, value: object
) -> None:
    # The contract's birthdate is a YYYY-MM-DD string; a number is a client bug, not a timestamp.
    body = registration(birthdate=value)
    error = assert_error(await client.post(REGISTER, json=body), 422, "validation_error")
    assert ["body", "birthdate"] in field_locs(error)
    assert await users_with_email(app, body["email"]) == []


async def test_register_with_malformed_json_is_400_malformed_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        REGISTER, content=b'{"email": "a@example.com", "password": ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_request")


async def test_register_with_a_blank_display_name_is_422_validation_error(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    body = registration(display_name="   ")
    assert_error(await client.post(REGISTER, json=body), 422, "validation_error")
    assert await users_with_email(app, body["email"]) == []
