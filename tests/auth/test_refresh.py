"""Refresh-token rotation: single use, the reuse grace, family revocation, races, expiry and cookie mode."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit import clock
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.security import hash_token
from kindred.models import AuditEntry, AuthSession, RefreshToken
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import Account, login, verified_account

ME = "/api/v1/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"

# Parametrizing the `settings_overrides` fixture by name replaces it for one test.
NO_GRACE = pytest.mark.parametrize("settings_overrides", [{"refresh_reuse_grace": 0}], ids=["grace_0s"])


# ---------------------------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_id(access_token: str) -> uuid.UUID:
    return uuid.UUID(jwt.decode(access_token, options={"verify_signature": False})["sid"])


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH, json={"refresh_token": token})


async def rotate(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await refresh(client, token)
    assert response.status_code == 200, response.text
    return response.json()


async def refresh_row(app: FastAPI, token: str) -> RefreshToken | None:
    async with app.state.db.sessionmaker() as db:
        return await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(token)))


async def session_row(app: FastAPI, sid: uuid.UUID) -> AuthSession:
    async with app.state.db.sessionmaker() as db:
        row = await db.get(AuthSession, sid)
    assert row is not None
    return row


async def tokens_of_session(app: FastAPI, sid: uuid.UUID) -> list[RefreshToken]:
    async with app.state.db.sessionmaker() as db:
        return list((await db.scalars(select(RefreshToken).where(RefreshToken.session_id == sid))).all())


@pytest.fixture
def shift_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[timedelta], None]:
    """Move the app's clock (`kindred.kit.clock.now`) by an offset from real time."""

    def shift(offset: timedelta) -> None:
        monkeypatch.setattr(clock, "now", lambda: datetime.now(UTC) + offset)

    return shift


def parse_set_cookies(response: httpx.Response) -> dict[str, dict[str, str | bool]]:
    cookies: dict[str, dict[str, str | bool]] = {}
    for header in response.headers.get_list("set-cookie"):
        first, *attributes = [part.strip() for part in header.split(";")]
        name, _, value = first.partition("=")
        parsed: dict[str, str | bool] = {"value": leaks.canary(value)}
        for attribute in attributes:
            key, has_value, attr_value = attribute.partition("=")
            parsed[key.lower()] = attr_value if has_value else True
        cookies[name] = parsed
    return cookies


# ---------------------------------------------------------------------------------------------- rotation


async def test_refresh_returns_a_new_token_pair(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    pair = await rotate(client, account.refresh_token)
    assert set(pair) >= {"user", "access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    assert pair["user"]["id"] == account.id
    assert pair["refresh_token"] != account.refresh_token
    assert pair["access_token"] != account.access_token
    assert session_id(pair["access_token"]) == session_id(account.access_token)


async def test_refresh_spends_the_old_token_and_stores_the_new_one_in_the_same_family(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    pair = await rotate(client, account.refresh_token)
    old, new = await refresh_row(app, account.refresh_token), await refresh_row(app, pair["refresh_token"])
    assert old is not None and old.spent_at is not None
    assert new is not None and new.spent_at is None
    assert old.session_id == new.session_id == session_id(account.access_token)


async def test_refresh_token_is_stored_only_as_a_hash(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    row = await refresh_row(app, account.refresh_token)
    assert row is not None
    assert row.token_hash != account.refresh_token


async def test_access_token_from_refresh_works(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    pair = await rotate(client, account.refresh_token)
    response = await client.get(ME, headers=bearer(pair["access_token"]))
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.id


async def test_refresh_touches_the_session_last_used_at(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    sid = session_id(account.access_token)
    before = (await session_row(app, sid)).last_used_at
    shift_clock(timedelta(minutes=1))
    await rotate(client, account.refresh_token)
    assert (await session_row(app, sid)).last_used_at >= before + timedelta(minutes=1)


# ---------------------------------------------------------------------------------------------- reuse within the grace


async def test_spent_token_within_grace_is_401_refresh_token_spent(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    await rotate(client, account.refresh_token)
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_spent")


async def test_spent_token_within_grace_revokes_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    pair = await rotate(client, account.refresh_token)
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_spent")

    assert (await session_row(app, session_id(account.access_token))).revoked_at is None
    newest = await refresh_row(app, pair["refresh_token"])
    assert newest is not None and newest.spent_at is None
    assert (await client.get(ME, headers=bearer(pair["access_token"]))).status_code == 200
    assert (await refresh(client, pair["refresh_token"])).status_code == 200


async def test_spent_token_four_seconds_later_is_still_only_spent(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    await rotate(client, account.refresh_token)
    shift_clock(timedelta(seconds=4))
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_spent")
    assert (await session_row(app, session_id(account.access_token))).revoked_at is None


# ---------------------------------------------------------------------------------------------- reuse after the grace


async def test_spent_token_six_seconds_later_is_401_refresh_token_reused(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    await rotate(client, account.refresh_token)
    shift_clock(timedelta(seconds=6))
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_reused")
    assert (await session_row(app, session_id(account.access_token))).revoked_at is not None


@NO_GRACE
async def test_reused_token_after_grace_is_401_refresh_token_reused_and_revokes_the_session(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await rotate(client, account.refresh_token)
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_reused")
    revoked = await session_row(app, session_id(account.access_token))
    assert revoked.revoked_at is not None
    assert revoked.revoke_reason == "refresh_reuse"


@NO_GRACE
async def test_reuse_makes_the_newest_refresh_token_of_the_family_fail(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    newest = (await rotate(client, account.refresh_token))["refresh_token"]
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_reused")
    assert_error(await refresh(client, newest), 401, "session_revoked")


@NO_GRACE
async def test_reuse_kills_the_access_tokens_of_the_session_at_once(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    pair = await rotate(client, account.refresh_token)
    # Both access tokens are cached as live before the reuse: revocation must not wait for the cache.
    for token in (account.access_token, pair["access_token"]):
        assert (await client.get(ME, headers=bearer(token))).status_code == 200
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_reused")
    for token in (account.access_token, pair["access_token"]):
        assert_error(await client.get(ME, headers=bearer(token)), 401, "session_revoked")


@NO_GRACE
async def test_reuse_writes_an_auth_refresh_reused_audit_row(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await rotate(client, account.refresh_token)
    response = await refresh(client, account.refresh_token)
    assert_error(response, 401, "refresh_token_reused")
    async with app.state.db.sessionmaker() as db:
        rows = list((await db.scalars(select(AuditEntry).where(AuditEntry.action == "auth.refresh_reused"))).all())
    assert len(rows) == 1
    assert rows[0].actor_id == uuid.UUID(account.id)
    assert rows[0].target_id == account.id
    assert rows[0].request_id == response.headers["x-request-id"]


@NO_GRACE
async def test_reuse_leaves_the_users_other_sessions_working(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    other = await login(client, account)
    assert other.status_code == 200, other.text
    other_pair = other.json()
    await rotate(client, account.refresh_token)
    assert_error(await refresh(client, account.refresh_token), 401, "refresh_token_reused")

    assert (await session_row(app, session_id(other_pair["access_token"]))).revoked_at is None
    assert (await client.get(ME, headers=bearer(other_pair["access_token"]))).status_code == 200
    assert (await refresh(client, other_pair["refresh_token"])).status_code == 200


# ---------------------------------------------------------------------------------------------- other refusals


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await refresh(client, leaks.canary("x" * 43)), 401, "not_authenticated")


async def test_refresh_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(REFRESH), 401, "not_authenticated")


async def test_refresh_with_unknown_body_field_is_422(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.post(REFRESH, json={"refresh_token": account.refresh_token, "extra": 1})
    assert_error(response, 422, "validation_error")


async def test_refresh_on_a_logged_out_session_is_401_session_revoked(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    assert (await client.post(LOGOUT, headers=account.headers)).status_code == 204
    assert_error(await refresh(client, account.refresh_token), 401, "session_revoked")


async def test_refresh_after_thirty_days_is_401_and_spends_nothing(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    shift_clock(timedelta(days=30, seconds=1))
    assert_error(await refresh(client, account.refresh_token), 401, "token_expired")
    row = await refresh_row(app, account.refresh_token)
    assert row is not None and row.spent_at is None


async def test_refresh_just_before_thirty_days_still_works(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    shift_clock(timedelta(days=29, hours=23))
    assert (await refresh(client, account.refresh_token)).status_code == 200


async def test_rotation_does_not_extend_the_session_past_thirty_days(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, shift_clock: Callable[[timedelta], None]
) -> None:
    account = await verified_account(client, mail)
    shift_clock(timedelta(days=29))
    newest = (await rotate(client, account.refresh_token))["refresh_token"]
    shift_clock(timedelta(days=30, seconds=1))
    assert_error(await refresh(client, newest), 401, "token_expired")


# ---------------------------------------------------------------------------------------------- concurrency


async def test_twenty_concurrent_refreshes_of_one_token_rotate_exactly_once(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    responses = await asyncio.gather(*(refresh(client, account.refresh_token) for _ in range(20)))

    winners = [r for r in responses if r.status_code == 200]
    assert len(winners) == 1, [r.status_code for r in responses]
    for loser in (r for r in responses if r.status_code != 200):
        assert_error(loser, 401, "refresh_token_spent")
    sid = session_id(account.access_token)
    assert (await session_row(app, sid)).revoked_at is None
    assert len(await tokens_of_session(app, sid)) == 2  # the spent original and the winner's, nothing else


async def test_the_winner_of_concurrent_refreshes_keeps_a_working_pair(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    responses = await asyncio.gather(*(refresh(client, account.refresh_token) for _ in range(20)))
    [winner] = [r.json() for r in responses if r.status_code == 200]
    me = await client.get(ME, headers=bearer(winner["access_token"]))
    assert me.status_code == 200, me.text
    assert (await refresh(client, winner["refresh_token"])).status_code == 200


# ---------------------------------------------------------------------------------------------- cookie mode


async def cookie_login(client: httpx.AsyncClient, account: Account) -> httpx.Response:
    """As a browser signs in: a CSRF token for its pre-session first, echoed in X-CSRF-Token."""
    token = (await client.get("/api/v1/auth/csrf")).json()["csrf_token"]
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": account.email, "password": account.password, "session": "cookie"},
        headers={"X-CSRF-Token": token},
    )
    assert response.status_code == 200, response.text
    return response


def csrf_header(client: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies["kindred_csrf"]}


async def test_cookie_login_returns_only_the_user(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    body = (await cookie_login(client, account)).json()
    assert set(body) == {"user"}
    assert body["user"]["id"] == account.id


async def test_cookie_login_sets_httponly_lax_root_cookies_without_host_prefix_in_test(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    cookies = parse_set_cookies(await cookie_login(client, account))
    assert set(cookies) == {"kindred_access", "kindred_refresh", "kindred_csrf"}
    csrf = cookies.pop("kindred_csrf")
    assert csrf["value"] and "httponly" not in csrf  # readable: the page echoes it in X-CSRF-Token
    for cookie in cookies.values():
        assert cookie["value"]
        assert cookie.get("httponly") is True
        assert str(cookie.get("samesite")).lower() == "lax"
        assert cookie.get("path") == "/"
        assert "secure" not in cookie  # plain http in test; production uses __Host- and Secure
    # The JWT inside expires in 15 minutes; the cookie lives as long as the session (CSRF binding).
    assert cookies["kindred_access"]["max-age"] == cookies["kindred_refresh"]["max-age"] == str(30 * 24 * 3600)


async def test_me_works_with_the_access_cookie_alone(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await cookie_login(client, account)
    assert client.cookies.get("kindred_access")
    response = await client.get(ME)  # no Authorization header: the cookie jar only
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.id


async def test_cookie_refresh_without_body_rotates_both_cookies(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    first = parse_set_cookies(await cookie_login(client, account))
    response = await client.post(REFRESH, headers=csrf_header(client))
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"user"}
    second = parse_set_cookies(response)
    assert set(second) == {"kindred_access", "kindred_refresh", "kindred_csrf"}
    for name in ("kindred_access", "kindred_refresh"):
        assert second[name]["value"] != first[name]["value"]
        assert second[name].get("httponly") is True
    old = await refresh_row(app, str(first["kindred_refresh"]["value"]))
    assert old is not None and old.spent_at is not None
    me = await client.get(ME)  # the jar now holds the rotated cookies
    assert me.status_code == 200, me.text
