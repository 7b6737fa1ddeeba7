"""POST /api/v1/admin/test-error: admins only; a deliberate 500 in the contract's shape."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from kindred.kit.email import MemoryEmailBackend
from tests.support.assertions import assert_error
from tests.support.factories import verified_account
from tests.support.staff import staff_account

TEST_ERROR = "/api/v1/admin/test-error"


async def test_an_admin_gets_a_500_in_the_contract_shape(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    admin = await staff_account(app, client, mail, "admin")
    response = await client.post(TEST_ERROR, headers=admin.headers)
    assert response.json() == {
        "error": {"code": "internal_error", "message": "Something went wrong on our side.", "details": {}},
        "request_id": response.headers["x-request-id"],
    }
    assert_error(response, 500, "internal_error")
    assert "Deliberate" not in response.text  # no exception text, no stack trace


async def test_an_ordinary_user_is_forbidden(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    user = await verified_account(client, mail)
    assert_error(await client.post(TEST_ERROR, headers=user.headers), 403, "forbidden")


async def test_a_moderator_is_forbidden(app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    moderator = await staff_account(app, client, mail, "moderator")
    assert_error(await client.post(TEST_ERROR, headers=moderator.headers), 403, "forbidden")


async def test_an_anonymous_caller_is_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(TEST_ERROR), 401, "not_authenticated")


async def test_only_post_is_allowed(app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    admin = await staff_account(app, client, mail, "admin")
    assert (await client.get(TEST_ERROR, headers=admin.headers)).status_code == 405
