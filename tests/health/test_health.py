"""Probes and operator endpoints answer as API.md says, and internal ones are closed in production."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.security import write_key_pair
from kindred.settings import Environment, Settings
from tests.support.factories import verified_account


async def test_health_reports_ok_with_timestamp_and_uptime(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["timestamp"].endswith("Z")
    assert body["uptime"] >= 0


class _Unreachable:
    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"/live touched a dependency ({name})")


async def test_live_never_needs_a_dependency(client: httpx.AsyncClient, app: FastAPI) -> None:
    db, cache = app.state.db, app.state.cache
    app.state.db, app.state.cache = _Unreachable(), _Unreachable()
    try:
        response = await client.get("/live")
    finally:
        app.state.db, app.state.cache = db, cache
    assert response.status_code == 200
    assert response.json()["alive"] is True


async def test_ready_is_true_when_the_database_answers(client: httpx.AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"ready": True}


async def test_ready_is_503_while_draining(client: httpx.AsyncClient, app: FastAPI) -> None:
    app.state.draining = True
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json() == {"ready": False, "reason": "draining"}


async def test_ready_is_503_before_start_up_finished(client: httpx.AsyncClient, app: FastAPI) -> None:
    app.state.started = False
    response = await client.get("/ready")
    assert response.status_code == 503
    assert response.json()["reason"] == "starting"


async def test_detailed_health_reports_database_pool_cache_and_storage(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.get("/health/detailed")
    assert response.status_code == 200
    body = response.json()
    database = body["checks"]["database"]
    assert database["status"] == "ok"
    assert database["response_time_ms"] >= 0
    assert {"size", "in_use", "idle", "overflow", "utilisation"} <= database["pool"].keys()
    cache = body["checks"]["cache"]
    assert cache["mode"] == ("redis" if settings.redis_url else "memory")
    assert cache["status"] == "ok"
    assert body["checks"]["storage"]["status"] == "ok"
    assert body["status"] == "ok"


async def test_jwks_publishes_the_signing_key_that_verifies_tokens(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    assert len(keys) == 1 and keys[0]["alg"] == "RS256" and keys[0]["kty"] == "RSA"
    assert "d" not in keys[0]  # never the private exponent
    header = jwt.get_unverified_header(account.access_token)
    assert header["kid"] == keys[0]["kid"]
    key = jwt.PyJWK(keys[0])
    claims = jwt.decode(account.access_token, key.key, algorithms=["RS256"], audience="kindred-api")
    assert claims["sub"] == account.id


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "process_cpu_seconds_total" in response.text or "python_gc_objects_collected_total" in response.text


# ------------------------------------------------------------------------- production access control

METRICS_TOKEN = "m-" + "t" * 40
API_KEY = "k-" + "a" * 40


@pytest.fixture
async def prod_client(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    private, public = write_key_pair(tmp_path / "keys")
    prod = settings.model_copy(
        update={
            "environment": Environment.production,
            "jwt_private_key_file": private,
            "jwt_public_key_file": public,
            "metrics_token": METRICS_TOKEN,
            "api_key": API_KEY,
            "secret_key": "s" * 48,
            "media_url_secret": "u" * 48,
        }
    )
    app = create_app(prod, email_backend=MemoryEmailBackend())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


@pytest.mark.parametrize("path", ["/health/detailed", "/metrics"])
async def test_internal_endpoints_are_forbidden_in_production_without_credentials(
    prod_client: httpx.AsyncClient, path: str
) -> None:
    response = await prod_client.get(path)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("path", ["/health/detailed", "/metrics"])
@pytest.mark.parametrize(
    "headers",
    [{"Authorization": f"Bearer {METRICS_TOKEN}"}, {"X-API-Key": API_KEY}],
    ids=["metrics-token", "api-key"],
)
async def test_internal_endpoints_open_with_metrics_token_or_api_key(
    prod_client: httpx.AsyncClient, path: str, headers: dict[str, str]
) -> None:
    response = await prod_client.get(path, headers=headers)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer " + "x" * 42}, {"X-API-Key": API_KEY[:-1]}, {"X-API-Key": ""}],
    ids=["wrong-token", "wrong-key", "empty-key"],
)
async def test_wrong_internal_credentials_are_forbidden(
    prod_client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert (await prod_client.get("/health/detailed", headers=headers)).status_code == 403


async def test_public_probes_stay_open_in_production(prod_client: httpx.AsyncClient) -> None:
    for path in ("/health", "/live", "/ready"):
        assert (await prod_client.get(path)).status_code == 200, path
    # JWKS is no probe: over plain HTTP it is redirected like any other read (API.md), over HTTPS open.
    redirected = await prod_client.get("/.well-known/jwks.json")
    assert redirected.status_code == 301
    assert redirected.headers["location"].startswith("https://")
    secure = await prod_client.get(redirected.headers["location"])
    assert secure.status_code == 200 and secure.json()["keys"]
