"""CORS: one allow-list, credentials, explicit lists, cached preflights, rejected origins logged."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from kindred.middleware.cors import ALLOWED_HEADERS, ALLOWED_METHODS, PREFLIGHT_MAX_AGE
from kindred.realtime.origins import OriginPolicy
from kindred.settings import Environment, Settings

APP = "https://app.example.com"
PREVIEW = "https://pr-42.preview.example.com"
EVIL = "https://evil.example.net"
API_KEY = "k" * 40  # a server-to-server key for the internal endpoints


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "frontend_url": "https://www.example.com/app",
        "cors_origin": [APP],
        "cors_origin_regex": r"https://[a-z0-9-]+\.preview\.example\.com",
        "api_key": API_KEY,
    }


def _preflight(origin: str, method: str = "POST", headers: str = "authorization,content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


@pytest.mark.parametrize("origin", [APP, PREVIEW, "https://www.example.com"])
async def test_a_preflight_from_an_allowed_origin_is_answered_explicitly_and_cached_for_a_day(
    client: httpx.AsyncClient, origin: str
) -> None:
    response = await client.options("/api/v1/auth/login", headers=_preflight(origin))
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin  # never "*"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.headers["access-control-max-age"] == str(PREFLIGHT_MAX_AGE) == "86400"
    assert set(response.headers["access-control-allow-methods"].split(", ")) == set(ALLOWED_METHODS)
    allowed_headers = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {h.lower() for h in ALLOWED_HEADERS} <= allowed_headers
    assert "*" not in response.headers["access-control-allow-methods"]


async def test_a_preflight_from_another_origin_is_refused_and_logged(
    client: httpx.AsyncClient, log_output: Callable[[], str]
) -> None:
    response = await client.options("/api/v1/auth/login", headers=_preflight(EVIL))
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    events = [json.loads(line) for line in log_output().splitlines() if "cors.origin_rejected" in line]
    assert events and events[0]["origin"] == EVIL


async def test_a_preflight_asking_for_an_unlisted_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.options("/api/v1/auth/login", headers=_preflight(APP, headers="x-forwarded-for"))
    assert response.status_code == 400


async def test_simple_requests_get_the_origin_echoed_only_when_allowed(client: httpx.AsyncClient) -> None:
    allowed = await client.get("/health", headers={"Origin": APP})
    assert allowed.headers["access-control-allow-origin"] == APP
    assert "Origin" in allowed.headers["vary"]
    assert "x-request-id" in allowed.headers["access-control-expose-headers"].lower()
    refused = await client.get("/health", headers={"Origin": EVIL})
    assert refused.status_code == 200  # the browser, not the server, withholds the body
    assert "access-control-allow-origin" not in refused.headers


@pytest.mark.parametrize(
    "origin",
    ["null", "https://app.example.com.evil.net", "http://app.example.com", "https://x.preview.example.com.evil.net"],
)
async def test_lookalike_and_null_origins_are_refused(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.options("/api/v1/auth/login", headers=_preflight(origin))
    assert "access-control-allow-origin" not in response.headers


async def test_health_and_metrics_need_no_origin(client: httpx.AsyncClient) -> None:
    for path in ("/health", "/metrics"):
        response = await client.get(path)
        assert response.status_code == 200
        assert "access-control-allow-origin" not in response.headers


async def test_an_api_key_is_no_cors_bypass(client: httpx.AsyncClient) -> None:
    """`X-API-Key` opens the internal endpoints to servers; it never makes a foreign origin allowed."""
    for path in ("/health/detailed", "/metrics", "/api/v1/plans"):
        response = await client.get(path, headers={"Origin": EVIL, "X-API-Key": API_KEY})
        assert response.status_code == 200, path
        assert "access-control-allow-origin" not in response.headers, path
    preflight = await client.options(
        "/health/detailed", headers={**_preflight(EVIL, "GET", "x-api-key"), "X-API-Key": API_KEY}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_localhost_is_allowed_in_development_only(settings: Settings) -> None:
    development = settings.model_copy(update={"environment": Environment.development})
    assert OriginPolicy(development).allows("http://localhost:5173")
    assert OriginPolicy(development).allows("http://127.0.0.1:3000")
    assert not OriginPolicy(settings).allows("http://localhost:5173")  # the test environment is not development
