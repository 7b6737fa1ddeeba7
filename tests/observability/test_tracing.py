"""OpenTelemetry: real OTLP/HTTP exports received by a local collector stand-in, decoded with
opentelemetry-proto. A request is one trace: a server span named by its route template, with children for
every SQL statement (and Redis command on the Redis stack) — and not one piece of personal data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.settings import Settings
from tests.support import leaks
from tests.support.factories import login, verified_account
from tests.support.stack import Stack, truncate_all
from tests.support.telemetry_capture import OtlpCapture, Span, otlp_capture

CLIENT_IP = "203.0.113.78"
CANARIES = ("agent-canary-5711", "query-canary-5712", CLIENT_IP)
SERVER, CLIENT = ProtoSpan.SPAN_KIND_SERVER, ProtoSpan.SPAN_KIND_CLIENT


@pytest.fixture
def otlp() -> Iterator[OtlpCapture]:
    with otlp_capture() as capture:
        yield capture


@pytest.fixture
def settings_overrides(otlp: OtlpCapture) -> dict[str, object]:
    return {"otel_exporter_otlp_endpoint": otlp.endpoint, "otel_service_name": "kindred-test", "release": "9.9.9"}


@pytest.fixture(autouse=True)
async def _clean_stack(stack: Stack) -> AsyncIterator[None]:
    """These tests run apps of their own instead of the `app` fixture, so they clean up like it does."""
    yield
    await truncate_all(stack.database_url)


@asynccontextmanager
async def running(settings: Settings, mail: MemoryEmailBackend) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own, so the test sees what its lifespan flushes on the way out."""
    application = create_app(settings, email_backend=mail)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            client.event_hooks["response"] = [leaks.register_response_tokens]
            yield client
        redis_client = getattr(application.state.cache, "redis_client", None)
        if redis_client is not None:  # counters and cached sessions must not reach the next test
            async for key in redis_client.scan_iter(match=settings.cache_key_prefix + "*", count=500):
                await redis_client.delete(key)


def _headers(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"User-Agent": CANARIES[0], "X-Forwarded-For": CLIENT_IP, **(extra or {})}


def _server_span(spans: list[Span], name: str) -> Span:
    found = [span for span in spans if span.kind == SERVER and span.name == name]
    assert len(found) == 1, sorted({span.name for span in spans})
    return found[0]


def _children(spans: list[Span], parent: Span) -> list[Span]:
    return [span for span in spans if span.parent_span_id == parent.span_id and span.trace_id == parent.trace_id]


async def test_a_request_is_a_server_span_named_by_its_route_with_database_children(
    settings: Settings, mail: MemoryEmailBackend, otlp: OtlpCapture
) -> None:
    async with running(settings, mail) as client:
        account = await verified_account(client, mail)
        assert (await login(client, account)).status_code == 200
        missing = uuid.uuid4()
        response = await client.get(
            f"/api/v1/users/{missing}", params={"q": CANARIES[1]}, headers=_headers(account.headers)
        )
        assert response.status_code == 404
        assert otlp.all_spans() == []  # batched: nothing is sent before the lifespan flushes
    spans = otlp.all_spans()  # the shutdown flushed them: no waiting here

    card = _server_span(spans, "GET /api/v1/users/{user_id}")
    assert card.attributes["http.route"] == "/api/v1/users/{user_id}"
    assert card.attributes["http.status_code"] == 404
    assert str(missing) not in card.name
    assert card.resource["service.name"] == "kindred-test"
    assert card.resource["service.version"] == "9.9.9"
    assert card.resource["deployment.environment"] == "test"

    sign_in = _server_span(spans, "POST /api/v1/auth/login")
    backends = [span for span in _children(spans, sign_in) if "db.system" in span.attributes]
    assert all(span.kind == CLIENT for span in backends)
    assert {span.attributes["db.system"] for span in backends} <= {"sqlite", "postgresql", "redis"}
    statements = [span for span in backends if span.attributes["db.system"] != "redis"]
    assert statements, "no database spans under the sign-in request"
    lookup = [span for span in statements if "FROM users" in span.attributes.get("db.statement", "")]
    assert lookup and all(
        ("?" in s.attributes["db.statement"]) or ("$1" in s.attributes["db.statement"]) for s in lookup
    )

    if settings.redis_url:  # the session state is cached in Redis: GET on the way in
        commands = [span for span in _children(spans, card) if span.attributes.get("db.system") == "redis"]
        assert commands, "no Redis spans under the card request"
        for span in commands:
            statement = span.attributes["db.statement"]
            assert set(statement.split()[1:]) <= {"?"}, statement  # `GET ?`: no keys, no values
        # The rate limiter's own client (limits' Lua script, over the cache's pool) is traced too.
        assert [span for span in commands if span.attributes["db.statement"].startswith("EVALSHA")], [
            span.attributes["db.statement"] for span in commands
        ]

    for span in spans:
        assert not {"net.peer.ip", "client.address", "http.client_ip", "http.user_agent", "user_agent.original"} & set(
            span.attributes
        ), span.attributes
    text = otlp.text()
    assert leaks.scan(text) == []  # no e-mail address, JWT, password or refresh token anywhere
    for secret in (*CANARIES, account.email, account.password, "127.0.0.1:50000"):
        assert secret not in text


async def test_probes_and_metrics_are_not_traced(
    settings: Settings, mail: MemoryEmailBackend, otlp: OtlpCapture
) -> None:
    async with running(settings, mail) as client:
        for path in ("/health", "/live", "/ready", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        # /ready pings the database: without a request span that call must not start a trace of its own.
    assert otlp.all_spans() == []


async def test_a_callers_traceparent_continues_its_trace(
    settings: Settings, mail: MemoryEmailBackend, otlp: OtlpCapture
) -> None:
    trace_id = uuid.uuid4().hex
    async with running(settings, mail) as client:
        traceparent = f"00-{trace_id}-{'1' * 16}-01"
        assert (await client.get("/api/v1/me", headers={"traceparent": traceparent})).status_code == 401
    (span,) = [span for span in otlp.all_spans() if span.kind == SERVER]
    assert (span.name, span.trace_id, span.parent_span_id) == ("GET /api/v1/me", trace_id, "1" * 16)
