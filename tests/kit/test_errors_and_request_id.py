"""Every error has the contract's shape, a request id, and never a stack trace."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from kindred.kit.errors import AppError
from tests.support.assertions import assert_error


async def test_every_response_carries_a_generated_request_id(client: httpx.AsyncClient) -> None:
    first = await client.get("/health")
    second = await client.get("/health")
    assert first.headers["x-request-id"] and first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_a_sane_client_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123_x.y"})
    assert response.headers["x-request-id"] == "abc-123_x.y"


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "new\\nline", "<script>", ""])
async def test_an_insane_client_request_id_is_replaced(client: httpx.AsyncClient, bad: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": bad})
    assert response.headers["x-request-id"] != bad
    assert 1 <= len(response.headers["x-request-id"]) <= 128


async def test_unknown_route_is_404_in_contract_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nope"), 404, "not_found")


async def test_wrong_method_is_405_in_contract_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/auth/login"), 405, "method_not_allowed")


async def test_malformed_json_is_400_malformed_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "malformed_request")


async def test_validation_errors_are_422_with_field_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "not-an-email", "password": "x"})
    body = assert_error(response, 422, "validation_error")
    locs = [field["loc"] for field in body["details"]["fields"]]
    assert ["body", "email"] in locs


async def test_unknown_fields_are_rejected(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": "a@example.com", "password": "x", "role": "admin"}
    )
    body = assert_error(response, 422, "validation_error")
    assert ["body", "role"] in [field["loc"] for field in body["details"]["fields"]]


async def test_missing_token_is_401_not_authenticated(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unexpected_exception_is_a_500_without_a_stack_trace(app: FastAPI) -> None:
    @app.get("/boom-for-test")
    async def boom() -> None:
        raise RuntimeError("secret internals: /etc/passwd line 42")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        response = await c.get("/boom-for-test")
    body = assert_error(response, 500, "internal_error")
    assert "Traceback" not in response.text and "secret internals" not in response.text
    assert body["details"] == {}


async def test_app_errors_render_their_code_status_and_headers(app: FastAPI, client: httpx.AsyncClient) -> None:
    class Teapot(AppError):
        status, code, message = 418, "teapot", "I am a teapot."

    @app.get("/teapot-for-test")
    async def teapot() -> None:
        raise Teapot(details={"why": "tests"}, headers={"Retry-After": "7"})

    response = await client.get("/teapot-for-test")
    body = assert_error(response, 418, "teapot")
    assert body["details"] == {"why": "tests"}
    assert response.headers["retry-after"] == "7"
