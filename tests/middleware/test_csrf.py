"""CSRF for cookie mode: a signed double-submit token bound to the (pre-)session, rotated at sign-in."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit.email import MemoryEmailBackend
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account

CSRF = "/api/v1/auth/csrf"
LOGIN = "/api/v1/auth/login"
PROFILE = "/api/v1/me/profile"


def new_browser(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


async def sign_in(browser: httpx.AsyncClient, account: Account) -> None:
    token = (await browser.get(CSRF)).json()["csrf_token"]
    body = {"email": account.email, "password": account.password, "session": "cookie"}
    response = await browser.post(LOGIN, json=body, headers={"X-CSRF-Token": token})
    assert response.status_code == 200, response.text


def echo(browser: httpx.AsyncClient) -> dict[str, str]:
    return {"X-CSRF-Token": browser.cookies["kindred_csrf"]}


@pytest.fixture
async def account(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> Account:
    return await verified_account(client, mail)


async def test_csrf_without_a_session_sets_a_readable_token_and_an_httponly_pre_session(app: FastAPI) -> None:
    async with new_browser(app) as browser:
        response = await browser.get(CSRF)
        assert response.status_code == 200
        token = response.json()["csrf_token"]
        cookies = {h.split("=", 1)[0]: h for h in response.headers.get_list("set-cookie")}
        assert browser.cookies["kindred_csrf"] == token
        assert "httponly" not in cookies["kindred_csrf"].lower()
        assert "httponly" in cookies["kindred_presession"].lower()
        # Asking again keeps the pre-session: the token stays valid for the same browser.
        assert (await browser.get(CSRF)).status_code == 200
        assert browser.cookies["kindred_presession"] == response.cookies["kindred_presession"]


async def test_a_cookie_sign_in_needs_the_token_of_its_pre_session(app: FastAPI, account: Account) -> None:
    body = {"email": account.email, "password": account.password, "session": "cookie"}
    async with new_browser(app) as browser:
        assert_error(await browser.post(LOGIN, json=body), 403, "csrf_failed")
        await browser.get(CSRF)
        assert_error(await browser.post(LOGIN, json=body, headers={"X-CSRF-Token": "x.y"}), 403, "csrf_failed")
        ok = await browser.post(LOGIN, json=body, headers=echo(browser))
        assert ok.status_code == 200


async def test_a_token_sign_in_for_apps_needs_no_csrf(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(LOGIN, json={"email": account.email, "password": account.password})
    assert response.status_code == 200 and "access_token" in response.json()


async def test_signing_in_rotates_the_token(app: FastAPI, account: Account) -> None:
    async with new_browser(app) as browser:
        before = (await browser.get(CSRF)).json()["csrf_token"]
        await browser.post(
            LOGIN,
            json={"email": account.email, "password": account.password, "session": "cookie"},
            headers={"X-CSRF-Token": before},
        )
        after = browser.cookies["kindred_csrf"]
        assert after != before
        # The pre-session's token no longer opens anything: it is bound to the pre-session, not the session.
        browser.cookies.set("kindred_csrf", before)
        stale = await browser.patch(PROFILE, json={"bio": "hi"}, headers={"X-CSRF-Token": before})
        assert_error(stale, 403, "csrf_failed")
        browser.cookies.set("kindred_csrf", after)
        assert (await browser.patch(PROFILE, json={"bio": "hi"}, headers={"X-CSRF-Token": after})).status_code == 200


async def test_cookie_authenticated_unsafe_requests_need_the_matching_token(app: FastAPI, account: Account) -> None:
    async with new_browser(app) as browser:
        await sign_in(browser, account)
        assert (await browser.get("/api/v1/me")).status_code == 200  # safe methods need nothing
        assert_error(await browser.patch(PROFILE, json={"bio": "a"}), 403, "csrf_failed")
        mismatched = {"X-CSRF-Token": browser.cookies["kindred_csrf"] + "x"}
        assert_error(await browser.patch(PROFILE, json={"bio": "a"}, headers=mismatched), 403, "csrf_failed")
        assert (await browser.patch(PROFILE, json={"bio": "a"}, headers=echo(browser))).status_code == 200


async def test_a_valid_token_of_another_session_is_refused(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    """The naive double-submit accepts any cookie/header pair; a planted pair from the attacker's own
    session (e.g. through a sibling subdomain's cookie) must not work against the victim's session."""
    victim = await verified_account(client, mail)
    attacker = await verified_account(client, mail)
    async with new_browser(app) as victim_browser, new_browser(app) as attacker_browser:
        await sign_in(victim_browser, victim)
        await sign_in(attacker_browser, attacker)
        planted = attacker_browser.cookies["kindred_csrf"]
        victim_browser.cookies.set("kindred_csrf", planted)
        response = await victim_browser.patch(PROFILE, json={"bio": "pwned"}, headers={"X-CSRF-Token": planted})
        assert_error(response, 403, "csrf_failed")


async def test_bearer_requests_are_exempt_even_with_cookies(app: FastAPI, account: Account) -> None:
    async with new_browser(app) as browser:
        await sign_in(browser, account)
        headers = {"Authorization": f"Bearer {account.access_token}"}
        assert (await browser.patch(PROFILE, json={"bio": "b"}, headers=headers)).status_code == 200


async def test_requests_without_auth_cookies_need_no_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/forgot-password", json={"email": "someone@example.com"})
    assert response.status_code == 202


async def test_a_token_asked_for_while_signed_in_is_bound_to_the_session(app: FastAPI, account: Account) -> None:
    async with new_browser(app) as browser:
        await sign_in(browser, account)
        token = (await browser.get(CSRF)).json()["csrf_token"]
        assert (await browser.patch(PROFILE, json={"bio": "c"}, headers={"X-CSRF-Token": token})).status_code == 200


async def test_cookie_refresh_after_the_access_jwt_expired_still_passes_csrf(
    app: FastAPI, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with new_browser(app) as browser:
        await sign_in(browser, account)
        later = time.time() + 20 * 60
        monkeypatch.setattr("kindred.kit.security._wall_clock", lambda: later)
        assert_error(await browser.get("/api/v1/me"), 401, "token_expired")
        assert_error(await browser.post("/api/v1/auth/refresh"), 403, "csrf_failed")
        response = await browser.post("/api/v1/auth/refresh", headers=echo(browser))
        assert response.status_code == 200, response.text


async def test_logout_clears_the_csrf_cookie(app: FastAPI, account: Account) -> None:
    async with new_browser(app) as browser:
        await sign_in(browser, account)
        response = await browser.post("/api/v1/auth/logout", headers=echo(browser))
        assert response.status_code == 204
        assert "kindred_csrf" not in browser.cookies
