"""Sentry: real envelopes received by a local server standing in for sentry.io.

Unexpected errors and 5xx answers are reported with the user's id, environment, release and request id;
expected 4xx never are; no e-mail address, IP, cookie, header, query string or body leaves the process.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sentry_sdk
from fastapi import FastAPI

from kindred.admin.router import DeliberateTestError
from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.errors import DatabaseUnavailable, Forbidden, NotFound
from kindred.observability.sentry import before_send, flush_sentry, init_sentry, shutdown_sentry
from kindred.settings import Settings
from tests.support import leaks
from tests.support.assertions import assert_error
from tests.support.factories import registration, verified_account
from tests.support.staff import staff_account
from tests.support.telemetry_capture import SentryCapture, sentry_capture

TEST_ERROR = "/api/v1/admin/test-error"
RELEASE = "kindred@1.2.3-test"
CLIENT_IP = "203.0.113.77"  # sent as X-Forwarded-For by the trusted proxy the test client poses as
CANARIES = ("cookie-canary-4711", "agent-canary-4712", "query-canary-4713", "body-canary-4714", CLIENT_IP)


@pytest.fixture
def sentry() -> Iterator[SentryCapture]:
    with sentry_capture() as capture:
        yield capture
        shutdown_sentry()  # the next test in this process starts without Sentry


@pytest.fixture
def settings_overrides(sentry: SentryCapture, request: pytest.FixtureRequest) -> dict[str, object]:
    extra: dict[str, object] = getattr(request, "param", {})  # indirect parametrisation adds settings
    return {"sentry_dsn": sentry.dsn, "release": RELEASE, **extra}


async def _raise_test_error(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    """The deliberate error, sent with everything that must not reach Sentry."""
    return await client.post(
        TEST_ERROR,
        params={"q": CANARIES[2]},
        headers={
            **headers,
            "Cookie": f"theme={CANARIES[0]}",
            "User-Agent": CANARIES[1],
            "X-Forwarded-For": CLIENT_IP,
            "Content-Type": "application/json",
        },
        content=f'{{"note": "{CANARIES[3]}"}}',
    )


def _assert_nothing_personal(sentry: SentryCapture, *secrets: str) -> None:
    text = sentry.text()
    assert leaks.scan(text) == []  # no e-mail address, no JWT, no registered password or token
    for secret in (*CANARIES, *secrets):
        assert secret not in text


async def test_the_admin_test_error_reaches_sentry_with_the_user_id_and_nothing_personal(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sentry: SentryCapture, settings: Settings
) -> None:
    admin = await staff_account(app, client, mail, "admin")
    response = await _raise_test_error(client, admin.headers)
    assert_error(response, 500, "internal_error")
    await flush_sentry()

    events = sentry.wait_for_events(1)
    assert len(events) == 1, events
    event = events[0]
    exception = event["exception"]["values"][-1]
    assert exception["type"] == "DeliberateTestError"
    assert exception["module"] == "kindred.admin.router"
    assert exception["mechanism"]["handled"] is False  # only the last-resort 500 caught it
    assert event["user"] == {"id": admin.id}
    assert (event["environment"], event["release"]) == ("test", RELEASE)
    assert event["tags"]["request_id"] == response.headers["x-request-id"]
    assert event["transaction"] == TEST_ERROR
    request = event["request"]
    assert request["method"] == "POST" and request["url"].endswith(TEST_ERROR)
    assert set(request) <= {"method", "url", "headers"}  # no cookies, data, query_string, env
    assert {name.lower() for name in request.get("headers", {})} <= {
        "accept",
        "content-length",
        "content-type",
        "x-request-id",
    }
    frames = exception["stacktrace"]["frames"]
    assert frames and not any("vars" in frame for frame in frames)  # local variables hold personal data
    _assert_nothing_personal(sentry, admin.email, admin.access_token, "127.0.0.1:50000")


async def test_expected_client_errors_are_not_reported(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sentry: SentryCapture
) -> None:
    user = await verified_account(client, mail)
    moderator = await staff_account(app, client, mail, "moderator")
    assert_error(await client.get("/api/v1/no-such-route"), 404, "not_found")
    assert_error(await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=user.headers), 404, "user_not_found")
    bad = registration(birthdate="not a date")
    assert_error(await client.post("/api/v1/auth/register", json=bad), 422, "validation_error")
    assert_error(await _raise_test_error(client, {}), 401, "not_authenticated")
    assert_error(await _raise_test_error(client, user.headers), 403, "forbidden")
    assert_error(await _raise_test_error(client, moderator.headers), 403, "forbidden")
    await flush_sentry()
    assert sentry.events() == []
    # The pipe was open all along: the next unexpected error is the only event.
    admin = await staff_account(app, client, mail, "admin")
    await _raise_test_error(client, admin.headers)
    await flush_sentry()
    assert [e["exception"]["values"][-1]["type"] for e in sentry.wait_for_events(1)] == ["DeliberateTestError"]
    _assert_nothing_personal(sentry, user.email, moderator.email, admin.email, bad["email"])


async def test_a_handled_5xx_is_reported(app: FastAPI, client: httpx.AsyncClient, sentry: SentryCapture) -> None:
    async def unavailable() -> None:
        raise DatabaseUnavailable()

    app.add_api_route("/api/v1/test-only/unavailable", unavailable)
    assert_error(await client.get("/api/v1/test-only/unavailable"), 503, "database_unavailable")
    await flush_sentry()
    (event,) = sentry.wait_for_events(1)
    assert event["exception"]["values"][-1]["type"] == "DatabaseUnavailable"
    assert "user" not in event  # anonymous: no user at all, certainly not an IP


@pytest.mark.parametrize("settings_overrides", [{"request_timeout": 0.3}], indirect=True)
async def test_a_route_timeout_is_reported_once_as_handled(
    app: FastAPI, client: httpx.AsyncClient, sentry: SentryCapture
) -> None:
    async def slow(thing_id: str) -> None:
        await asyncio.sleep(5)

    app.add_api_route("/api/v1/test-only/slow/{thing_id}", slow)
    response = await client.get(f"/api/v1/test-only/slow/{uuid.uuid4()}")
    assert_error(response, 503, "timeout")
    await flush_sentry()
    (event,) = sentry.wait_for_events(1)
    (exception,) = event["exception"]["values"]
    assert (exception["type"], exception["mechanism"]["handled"]) == ("RequestTimeout", True)
    assert event["transaction"] == "/api/v1/test-only/slow/{thing_id}"  # the route, never the raw path
    assert event["tags"]["request_id"] == response.headers["x-request-id"]


def test_before_send_drops_expected_errors_and_keeps_unexpected_ones() -> None:
    def hint(exc: BaseException) -> dict[str, Any]:
        return {"exc_info": (type(exc), exc, None)}

    assert before_send({}, hint(NotFound())) is None
    assert before_send({}, hint(Forbidden())) is None
    assert before_send({}, hint(DatabaseUnavailable())) is not None
    assert before_send({}, hint(DeliberateTestError())) is not None
    assert before_send({"message": "no exception"}, {}) is not None


def test_before_send_scrubs_request_user_messages_and_breadcrumbs() -> None:
    event = {
        "request": {
            "method": "POST",
            "url": "https://api.example.org/api/v1/auth/login?email=a@example.com",
            "query_string": "email=a@example.com",
            "cookies": {"session": "x"},
            "data": {"password": "hunter22"},
            "env": {"REMOTE_ADDR": "198.51.100.1"},
            "headers": {"Authorization": "Bearer x", "Content-Type": "application/json", "X-Forwarded-For": "1.2.3.4"},
        },
        "user": {"id": "u-1", "email": "a@example.com", "ip_address": "198.51.100.1"},
        "exception": {
            "values": [
                {
                    "type": "IntegrityError",
                    "value": "duplicate key\nDETAIL:  Key (email)=(a@example.com) exists.\n"
                    "[parameters: ('a@example.com', 'hash')]",
                    "stacktrace": {"frames": [{"function": "f", "vars": {"password": "hunter22"}}]},
                }
            ]
        },
        "breadcrumbs": {"values": [{"category": "httplib", "message": "from 198.51.100.1", "data": {"url": "x?t=1"}}]},
        "extra": {"sys.argv": ["kindred", "create-admin", "--password", "hunter22"]},
    }
    scrubbed = before_send(event, {})
    assert scrubbed is not None
    assert scrubbed["request"] == {
        "method": "POST",
        "url": "https://api.example.org/api/v1/auth/login",
        "headers": {"Content-Type": "application/json"},
    }
    assert scrubbed["user"] == {"id": "u-1"}
    text = repr(scrubbed)
    for secret in ("a@example.com", "hunter22", "198.51.100.1", "1.2.3.4", "Bearer", "hash"):
        assert secret not in text
    assert scrubbed["breadcrumbs"]["values"] == [{"category": "httplib", "message": "from [ip]"}]


@asynccontextmanager
async def _running(settings: Settings, mail: MemoryEmailBackend) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings, email_backend=mail)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def test_events_queued_at_shutdown_are_delivered_before_the_lifespan_ends(
    app: FastAPI, client: httpx.AsyncClient, mail: MemoryEmailBackend, sentry: SentryCapture, settings: Settings
) -> None:
    admin = await staff_account(app, client, mail, "admin")
    sentry.recorder.delay = 0.5  # a slow Sentry: the event is still in flight when the request returns
    async with _running(settings, mail) as second:
        assert (await _raise_test_error(second, admin.headers)).status_code == 500
        assert sentry.events() == []  # still in flight
    # The lifespan flushed on its way out: the event arrived before it returned.
    assert [e["exception"]["values"][-1]["type"] for e in sentry.events()] == ["DeliberateTestError"]


async def test_performance_transactions_are_named_by_route_and_scrubbed_too(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, sentry: SentryCapture, settings: Settings
) -> None:
    user = await verified_account(client, mail)
    traced = settings.model_copy(update={"sentry_traces_sample_rate": 1.0})
    async with _running(traced, mail) as second:
        headers = {**user.headers, "User-Agent": CANARIES[1], "X-Forwarded-For": CLIENT_IP}
        response = await second.get(f"/api/v1/users/{uuid.uuid4()}", params={"q": CANARIES[2]}, headers=headers)
        assert_error(response, 404, "user_not_found")
    assert sentry.recorder.wait_for(lambda: bool(sentry.transactions()), 5)
    (transaction,) = [t for t in sentry.transactions() if t["transaction"] == "/api/v1/users/{user_id}"]
    assert transaction["user"] == {"id": user.id}
    assert sentry.events() == []  # the 404 itself is not an error event
    _assert_nothing_personal(sentry, user.email, user.access_token)


def test_sentry_is_initialised_once_per_process(
    settings: Settings, sentry: SentryCapture, mail: MemoryEmailBackend
) -> None:
    create_app(settings, email_backend=mail)
    client = sentry_sdk.get_client()
    assert client.is_active() and client.options["dsn"] == sentry.dsn
    create_app(settings, email_backend=mail)  # tests and workers build many apps in one process
    assert init_sentry(settings) is True
    assert sentry_sdk.get_client() is client  # same configuration: the live client is kept


def test_nothing_is_initialised_without_a_dsn_or_an_endpoint(tmp_path: Path) -> None:
    shutdown_sentry()
    settings = Settings(environment="test", KINDRED_VAR_DIR=tmp_path)  # type: ignore[call-arg]
    assert settings.sentry_dsn is None and settings.otel_exporter_otlp_endpoint is None
    application = create_app(settings)
    assert not sentry_sdk.is_initialized()
    assert flush_sentry not in application.state.flush_on_shutdown
    assert application.state.tracer_provider is None
    assert not getattr(application, "_is_instrumented_by_opentelemetry", False)
