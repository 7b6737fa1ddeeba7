"""Logs carry request ids and event names, never personal data — and the leak detector itself works."""

from __future__ import annotations

import io
import json
import logging

import httpx
import pytest
import structlog

from kindred.kit.email import MemoryEmailBackend
from tests.support import leaks
from tests.support.factories import login, verified_account


@pytest.fixture
def json_log() -> io.StringIO:
    """A second JSON stream beside the suite's own, for asserting on structure."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    from kindred.observability.logging import formatter

    handler.setFormatter(formatter("json"))
    logging.getLogger().addHandler(handler)
    yield stream
    logging.getLogger().removeHandler(handler)


def _lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def test_access_log_has_request_id_route_template_status_and_duration(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, json_log: io.StringIO
) -> None:
    account = await verified_account(client, mail)
    response = await client.get("/api/v1/me", headers=account.headers)
    access = [
        line for line in _lines(json_log) if line.get("event") == "http.request" and line["route"] == "/api/v1/me"
    ]
    assert access, _lines(json_log)
    line = access[-1]
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["user_id"] == account.id
    assert isinstance(line["duration_ms"], float)


async def test_a_full_auth_flow_logs_no_email_password_or_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, json_log: io.StringIO
) -> None:
    account = await verified_account(client, mail)
    bad = await client.post("/api/v1/auth/login", json={"email": account.email, "password": "wrong password!!"})
    assert bad.status_code == 401
    assert (await login(client, account)).status_code == 200
    await client.post("/api/v1/auth/forgot-password", json={"email": account.email})
    text = json_log.getvalue()
    assert "auth.signin_failed" in text  # the events are there...
    assert leaks.scan(text) == []  # ...the personal data is not
    assert account.password not in text and account.refresh_token not in text


def test_sensitive_keys_are_redacted_even_if_code_passes_them(json_log: io.StringIO) -> None:
    # Through the configured pipeline, not a reconfigured one: reconfiguring structlog mid-suite would
    # leave loggers cached earlier on the old processor list (and structlog's capture_logs blind to them).
    structlog.get_logger("t").info("oops", email="x@example.org", password="hunter22", lat=52.1, user_id="u1")
    line = _lines(json_log)[-1]
    assert line["email"] == line["password"] == line["lat"] == "[redacted]"
    assert line["user_id"] == "u1"


@pytest.mark.leaks_expected
def test_the_leak_detector_finds_emails_jwts_and_canaries() -> None:
    leaks.canary("hunter2-canary-secret")
    text = (
        '{"event": "x", "note": "mail bob.smith+tag@example.co.uk now"}\n'
        '{"t": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl"}\n'
        '{"m": "pw hunter2-canary-secret"}\n'
    )
    found = leaks.scan(text)
    assert any(f.startswith("email:") for f in found)
    assert any(f.startswith("jwt:") for f in found)
    assert any(f.startswith("canary:") for f in found)
    assert leaks.scan('{"event": "http.request", "status": 200}') == []


def test_the_exposure_walker_finds_coordinates_birthdates_and_foreign_emails() -> None:
    from tests.support import exposure

    exposure.reset()
    exposure.inspect("GET", "/x", {"user": {"email": "own@example.com"}, "items": [{"lat": 1, "birthdate": "x"}]})
    exposure.inspect("GET", "/y", {"items": [{"email": "other@example.com"}]})
    assert exposure.found() == ["GET /x: items.[].lat", "GET /x: items.[].birthdate", "GET /y: items.[].email"]
    exposure.reset()
