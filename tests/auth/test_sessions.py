"""Sign-in sessions: listing, revoking one, logout, logout-all, their audit rows, and accounts that may not act."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from kindred.auth.session_state import PREFIX as SESSION_CACHE_PREFIX
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.security import hash_token
from kindred.models import AuditEntry, AuthSession, RefreshToken, User
from tests.support.assertions import assert_error
from tests.support.factories import Account, login, new_email, verified_account

ME = "/api/v1/me"
SESSIONS = "/api/v1/auth/sessions"
LOGIN = "/api/v1/auth/login"
LOGOUT = "/api/v1/auth/logout"
LOGOUT_ALL = "/api/v1/auth/logout-all"
REFRESH = "/api/v1/auth/refresh"
SESSION_FIELDS = {"id", "created_at", "last_used_at", "user_agent", "current"}


# ---------------------------------------------------------------------------------------------- helpers


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_id(access_token: str) -> str:
    return str(jwt.decode(access_token, options={"verify_signature": False})["sid"])


async def sign_in(client: httpx.AsyncClient, account: Account, user_agent: str = "KindredTest/1.0") -> Account:
    """Another session (device) of the same account."""
    response = await client.post(
        LOGIN, json={"email": account.email, "password": account.password}, headers={"User-Agent": user_agent}
    )
    assert response.status_code == 200, response.text
    pair = response.json()
    return Account(account.id, account.email, account.password, pair["access_token"], pair["refresh_token"])


async def me_status(client: httpx.AsyncClient, account: Account) -> int:
    return (await client.get(ME, headers=account.headers)).status_code


async def refresh_status(client: httpx.AsyncClient, account: Account) -> int:
    return (await client.post(REFRESH, json={"refresh_token": account.refresh_token})).status_code


async def session_row(app: FastAPI, sid: str) -> AuthSession:
    async with app.state.db.sessionmaker() as db:
        row = await db.get(AuthSession, uuid.UUID(sid))
    assert row is not None
    return row


async def audit_rows(app: FastAPI, action: str) -> list[AuditEntry]:
    async with app.state.db.sessionmaker() as db:
        return list((await db.scalars(select(AuditEntry).where(AuditEntry.action == action))).all())


async def set_account(app: FastAPI, user_id: str, **values: Any) -> None:
    """Change the account row directly, the way a moderator's action will."""
    async with app.state.db.sessionmaker() as db, db.begin():
        await db.execute(update(User).where(User.id == uuid.UUID(user_id)).values(**values))


async def forget_session_state(app: FastAPI, account: Account) -> None:
    # Writing the row directly skips the invalidation a moderator endpoint does; see the cache tests below.
    await app.state.cache.delete(SESSION_CACHE_PREFIX + session_id(account.access_token))


def iso_z(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------- listing


async def test_sessions_lists_every_active_session_in_the_page_shape(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    first = await verified_account(client, mail)
    second = await sign_in(client, first, "Phone/1")
    third = await sign_in(client, first, "Laptop/2")
    response = await client.get(SESSIONS, headers=second.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    assert body["next_cursor"] is None
    assert {item["id"] for item in body["items"]} == {session_id(a.access_token) for a in (first, second, third)}
    for item in body["items"]:
        assert set(item) == SESSION_FIELDS
        assert item["created_at"].endswith("Z") and item["last_used_at"].endswith("Z")


async def test_sessions_marks_only_the_callers_session_current(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    first = await verified_account(client, mail)
    second = await sign_in(client, first)
    await sign_in(client, first)
    items = (await client.get(SESSIONS, headers=second.headers)).json()["items"]
    assert [item["id"] for item in items if item["current"]] == [session_id(second.access_token)]
    assert sum(item["current"] is False for item in items) == 2


async def test_sessions_shows_each_sessions_user_agent(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    phone = await sign_in(client, account, "KindredPhone/3.1")
    items = (await client.get(SESSIONS, headers=phone.headers)).json()["items"]
    assert {item["user_agent"] for item in items if item["current"]} == {"KindredPhone/3.1"}


async def test_sessions_omits_revoked_sessions_and_other_users(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    gone = await sign_in(client, account)
    assert (await client.post(LOGOUT, headers=gone.headers)).status_code == 204
    stranger = await verified_account(client, mail)
    items = (await client.get(SESSIONS, headers=account.headers)).json()["items"]
    assert [item["id"] for item in items] == [session_id(account.access_token)]
    assert session_id(stranger.access_token) not in {item["id"] for item in items}


async def test_sessions_pagination_with_limit_one_walks_all_without_repeats(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    others = [await sign_in(client, account) for _ in range(3)]
    expected = {session_id(a.access_token) for a in [account, *others]}
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(expected) + 1):
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        response = await client.get(SESSIONS, params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) == 1
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected


async def test_sessions_with_a_malformed_cursor_is_400(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.get(SESSIONS, params={"cursor": "not-a-cursor"}, headers=account.headers)
    assert_error(response, 400, "malformed_request")


@pytest.mark.parametrize("limit", [0, 101])
async def test_sessions_limit_out_of_range_is_422(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, limit: int
) -> None:
    account = await verified_account(client, mail)
    response = await client.get(SESSIONS, params={"limit": limit}, headers=account.headers)
    assert_error(response, 422, "validation_error")


async def test_sessions_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(SESSIONS), 401, "not_authenticated")


# ---------------------------------------------------------------------------------------------- revoking one


async def test_deleting_own_other_session_is_204_and_its_access_token_then_401_session_revoked(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    other = await sign_in(client, account)
    assert await me_status(client, other) == 200  # its live state is cached before the revocation
    response = await client.delete(f"{SESSIONS}/{session_id(other.access_token)}", headers=account.headers)
    assert response.status_code == 204, response.text
    assert_error(await client.get(ME, headers=other.headers), 401, "session_revoked")
    assert (await session_row(app, session_id(other.access_token))).revoked_at is not None


async def test_deleting_own_other_session_stops_its_refresh_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    other = await sign_in(client, account)
    await client.delete(f"{SESSIONS}/{session_id(other.access_token)}", headers=account.headers)
    response = await client.post(REFRESH, json={"refresh_token": other.refresh_token})
    assert_error(response, 401, "session_revoked")


async def test_deleting_own_other_session_leaves_the_callers_session_working(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    other = await sign_in(client, account)
    await client.delete(f"{SESSIONS}/{session_id(other.access_token)}", headers=account.headers)
    assert await me_status(client, account) == 200


async def test_deleting_another_users_session_is_404_and_that_session_still_works(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    attacker = await verified_account(client, mail)
    victim = await verified_account(client, mail)
    response = await client.delete(f"{SESSIONS}/{session_id(victim.access_token)}", headers=attacker.headers)
    assert_error(response, 404, "not_found")
    assert (await session_row(app, session_id(victim.access_token))).revoked_at is None
    assert await me_status(client, victim) == 200
    assert await refresh_status(client, victim) == 200


async def test_deleting_another_users_session_looks_like_deleting_an_unknown_one(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    attacker = await verified_account(client, mail)
    victim = await verified_account(client, mail)
    theirs = await client.delete(f"{SESSIONS}/{session_id(victim.access_token)}", headers=attacker.headers)
    unknown = await client.delete(f"{SESSIONS}/{uuid.uuid4()}", headers=attacker.headers)
    assert theirs.status_code == unknown.status_code == 404
    assert theirs.json()["error"] == unknown.json()["error"]


async def test_deleting_a_session_with_a_non_uuid_id_is_422(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    assert_error(await client.delete(f"{SESSIONS}/1", headers=account.headers), 422, "validation_error")


# ---------------------------------------------------------------------------------------------- logout


async def test_logout_is_204_and_its_access_token_then_401_session_revoked(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    assert await me_status(client, account) == 200
    response = await client.post(LOGOUT, headers=account.headers)
    assert response.status_code == 204, response.text
    assert_error(await client.get(ME, headers=account.headers), 401, "session_revoked")
    row = await session_row(app, session_id(account.access_token))
    assert row.revoked_at is not None and row.revoke_reason == "logout"


async def test_logout_stops_its_refresh_token(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    await client.post(LOGOUT, headers=account.headers)
    response = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert_error(response, 401, "session_revoked")


async def test_logout_leaves_other_sessions_working(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    other = await sign_in(client, account)
    await client.post(LOGOUT, headers=account.headers)
    assert await me_status(client, other) == 200
    assert await refresh_status(client, other) == 200


@pytest.mark.postgres_only  # on SQLite the reader's open transaction holds the only connection: no interleaving
async def test_logout_is_not_undone_by_a_request_that_read_the_session_before_logout_committed(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader that loaded the live session before logout committed caches it only after logout finished:
    its stale copy must not bring the revoked session back."""
    account = await verified_account(client, mail)
    cache = app.state.cache
    await cache.delete(SESSION_CACHE_PREFIX + session_id(account.access_token))  # cold: the reader loads the DB
    add = cache.add
    loaded, release = asyncio.Event(), asyncio.Event()

    async def add_after_logout(key: str, value: str, ttl: float | None = None) -> bool:
        loaded.set()
        await release.wait()  # the logout below runs to completion in between
        return await add(key, value, ttl)

    monkeypatch.setattr(cache, "add", add_after_logout)
    racing = asyncio.create_task(client.get(ME, headers=account.headers))
    await asyncio.wait_for(loaded.wait(), 5)
    monkeypatch.setattr(cache, "add", add)
    assert (await client.post(LOGOUT, headers=account.headers)).status_code == 204
    release.set()
    assert (await racing).status_code == 200  # it was authenticated before the logout
    assert_error(await client.get(ME, headers=account.headers), 401, "session_revoked")


async def test_logout_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(LOGOUT), 401, "not_authenticated")


async def test_logout_all_kills_every_access_token_of_the_user(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    sessions = [await sign_in(client, account) for _ in range(3)]
    for device in sessions:
        assert await me_status(client, device) == 200
    assert (await client.post(LOGOUT_ALL, headers=sessions[0].headers)).status_code == 204
    for device in [account, *sessions]:
        assert_error(await client.get(ME, headers=device.headers), 401, "session_revoked")
        assert (await session_row(app, session_id(device.access_token))).revoked_at is not None


async def test_logout_all_kills_every_refresh_token_of_the_user(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    sessions = [await sign_in(client, account) for _ in range(3)]
    await client.post(LOGOUT_ALL, headers=sessions[0].headers)
    for device in [account, *sessions]:
        response = await client.post(REFRESH, json={"refresh_token": device.refresh_token})
        assert_error(response, 401, "session_revoked")


async def test_logout_all_leaves_another_users_sessions_working(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    sessions = [await sign_in(client, account) for _ in range(3)]
    stranger = await verified_account(client, mail)
    await client.post(LOGOUT_ALL, headers=sessions[0].headers)
    assert await me_status(client, stranger) == 200
    assert await refresh_status(client, stranger) == 200


# ---------------------------------------------------------------------------------------------- audit


async def test_signin_writes_an_auth_signin_audit_row(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    response = await login(client, account)
    assert response.status_code == 200, response.text
    rows = [r for r in await audit_rows(app, "auth.signin") if r.request_id == response.headers["x-request-id"]]
    assert len(rows) == 1
    assert rows[0].actor_id == uuid.UUID(account.id)
    assert rows[0].target_id == account.id


@pytest.mark.parametrize("who", ["wrong_password", "unknown_email"])
async def test_failed_signin_writes_an_audit_row_without_the_email(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, who: str
) -> None:
    account = await verified_account(client, mail)
    email = account.email if who == "wrong_password" else new_email()
    response = await client.post(LOGIN, json={"email": email, "password": "not the right password"})
    assert_error(response, 401, "invalid_credentials")

    rows = await audit_rows(app, "auth.signin_failed")
    assert len(rows) == 1
    row = rows[0]
    assert row.actor_id is None
    assert row.request_id == response.headers["x-request-id"]
    assert row.target_id == (account.id if who == "wrong_password" else None)
    stored = " ".join(str(getattr(row, column.key)) for column in AuditEntry.__table__.columns)
    assert email not in stored
    assert email.split("@")[0] not in stored


async def test_logout_writes_a_session_logout_audit_row(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    response = await client.post(LOGOUT, headers=account.headers)
    assert response.status_code == 204
    rows = await audit_rows(app, "session.logout")
    assert len(rows) == 1
    assert rows[0].actor_id == uuid.UUID(account.id)
    assert rows[0].request_id == response.headers["x-request-id"]


# ---------------------------------------------------------------------------------------------- suspended accounts


def suspended_until() -> datetime:
    return (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)


async def test_suspended_account_existing_access_token_is_403_account_suspended_with_until(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    assert await me_status(client, account) == 200  # the session state is now cached
    until = suspended_until()
    await set_account(app, account.id, status="suspended", suspended_until=until)
    await forget_session_state(app, account)
    error = assert_error(await client.get(ME, headers=account.headers), 403, "account_suspended")
    assert error["details"] == {"until": iso_z(until)}


@pytest.mark.parametrize("settings_overrides", [{"session_cache_ttl": 0}], ids=["no_session_cache"])
async def test_suspension_applies_to_the_next_request_when_session_state_is_not_cached(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    assert await me_status(client, account) == 200
    await set_account(app, account.id, status="suspended", suspended_until=suspended_until())
    assert_error(await client.get(ME, headers=account.headers), 403, "account_suspended")


async def test_suspended_account_login_is_403_account_suspended_with_until(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    until = suspended_until()
    await set_account(app, account.id, status="suspended", suspended_until=until)
    error = assert_error(await login(client, account), 403, "account_suspended")
    assert error["details"] == {"until": iso_z(until)}


async def test_suspended_account_refresh_is_403_and_does_not_spend_the_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await set_account(app, account.id, status="suspended", suspended_until=suspended_until())
    response = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert_error(response, 403, "account_suspended")
    async with app.state.db.sessionmaker() as db:
        row = await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(account.refresh_token)))
    assert row is not None and row.spent_at is None


async def test_suspension_that_has_ended_lets_the_user_sign_in(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    await set_account(app, account.id, status="suspended", suspended_until=datetime.now(UTC) - timedelta(minutes=1))
    assert (await login(client, account)).status_code == 200


# ---------------------------------------------------------------------------------------------- deleted and banned


@pytest.mark.parametrize("status", ["deleted", "banned"])
async def test_closed_account_existing_access_token_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, status: str
) -> None:
    account = await verified_account(client, mail)
    assert await me_status(client, account) == 200
    await set_account(app, account.id, status=status)
    await forget_session_state(app, account)
    assert_error(await client.get(ME, headers=account.headers), 401, "session_revoked")


@pytest.mark.parametrize("status", ["deleted", "banned"])
async def test_closed_account_existing_refresh_token_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, status: str
) -> None:
    account = await verified_account(client, mail)
    await set_account(app, account.id, status=status)
    response = await client.post(REFRESH, json={"refresh_token": account.refresh_token})
    assert_error(response, 401, "session_revoked")


@pytest.mark.parametrize("status", ["deleted", "banned"])
async def test_closed_account_login_is_401_invalid_credentials_like_an_unknown_email(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, status: str
) -> None:
    account = await verified_account(client, mail)
    await set_account(app, account.id, status=status)
    closed = await login(client, account)
    unknown = await client.post(LOGIN, json={"email": new_email(), "password": account.password})
    assert_error(closed, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert closed.json()["error"] == unknown.json()["error"]
