"""Security headers on every response, the /docs CSP, and the production HTTPS policy."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from kindred.middleware.security import HSTS, HttpsPolicyMiddleware, SecurityHeadersMiddleware

COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in COMMON.items():
        assert response.headers.get(name) == value, (name, response.headers)
    assert "camera=()" in response.headers["permissions-policy"]
    assert "geolocation=()" in response.headers["permissions-policy"]
    assert response.headers["content-security-policy"]
    assert "server" not in response.headers


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/health"),
        ("GET", "/openapi.json"),
        ("GET", "/api/v1/me"),  # 401 in the error shape
        ("GET", "/api/v1/no-such-route"),  # 404
        ("POST", "/api/v1/auth/login"),  # 422
        ("GET", "/static/swagger/swagger-ui.css"),
    ],
)
async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient, method: str, path: str) -> None:
    response = await client.request(method, path, json={} if method == "POST" else None)
    assert_security_headers(response)
    if not path.startswith("/static"):
        assert response.headers["content-security-policy"].startswith("default-src 'none'")
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


async def test_no_hsts_over_plain_http(client: httpx.AsyncClient) -> None:
    assert "strict-transport-security" not in (await client.get("/health")).headers


async def test_hsts_over_https_for_a_year_with_subdomains_and_preload(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="https://kindred.test") as secure:
        response = await secure.get("/health")
    assert response.headers["strict-transport-security"] == HSTS.decode()
    assert "max-age=31536000" in response.headers["strict-transport-security"]


async def test_docs_csp_allows_only_its_own_assets_and_its_inline_script_by_hash(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    script_src = re.search(r"script-src ([^;]+)", policy)
    assert script_src is not None
    sources = script_src.group(1).split()
    assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
    assert not any(s.startswith("http") for s in policy.split()), "no CDN or other origin"
    # Every inline script of the page is allowed by its hash, and every external one is ours.
    for body in re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in sources
    for src in re.findall(r'<script src="([^"]+)"', response.text):
        assert src.startswith("/static/")
    assert_security_headers(response)


async def test_error_responses_have_the_strict_api_policy_not_the_docs_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert "script-src" not in response.headers["content-security-policy"]


# ------------------------------------------------------------------------------------------ HTTPS policy


async def _ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.method} {request.url.path}")


async def _ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.close()


def _policy_app(*, enabled: bool) -> Starlette:
    routes = [Route(p, _ok, methods=["GET", "HEAD", "POST", "DELETE"]) for p in ("/api/v1/me", "/health", "/ready",
              "/live", "/metrics", "/health/detailed", "/.well-known/jwks.json")]  # fmt: skip
    app = Starlette(routes=[*routes, WebSocketRoute("/api/v1/ws", _ws)])
    app.add_middleware(HttpsPolicyMiddleware, enabled=enabled)
    app.add_middleware(SecurityHeadersMiddleware)
    return app


@pytest.fixture
def production() -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=_policy_app(enabled=True)), base_url="http://api.test")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_production_redirects_plain_http_reads_to_https_preserving_the_url(
    production: httpx.AsyncClient, method: str
) -> None:
    response = await production.request(method, "/api/v1/me?x=1&y=%20z")
    assert response.status_code == 301
    assert response.headers["location"] == "https://api.test/api/v1/me?x=1&y=%20z"
    assert_security_headers(response)


async def test_jwks_is_redirected_like_any_other_read(production: httpx.AsyncClient) -> None:
    response = await production.get("/.well-known/jwks.json")
    assert response.status_code == 301
    assert response.headers["location"] == "https://api.test/.well-known/jwks.json"


@pytest.mark.parametrize("method", ["POST", "DELETE"])
async def test_production_refuses_other_plain_http_methods_instead_of_redirecting_credentials(
    production: httpx.AsyncClient, method: str
) -> None:
    response = await production.request(method, "/api/v1/me", headers={"Authorization": "Bearer secret"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "https_required"
    assert "location" not in response.headers


@pytest.mark.parametrize("path", ["/health", "/ready", "/live", "/metrics", "/health/detailed"])
async def test_probes_answer_over_plain_http(production: httpx.AsyncClient, path: str) -> None:
    response = await production.get(path)
    assert response.status_code == 200 and response.text == f"GET {path}"


async def test_https_requests_pass_through() -> None:
    transport = httpx.ASGITransport(app=_policy_app(enabled=True))
    async with httpx.AsyncClient(transport=transport, base_url="https://api.test") as secure:
        response = await secure.post("/api/v1/me")
    assert response.status_code == 200
    assert response.headers["strict-transport-security"] == HSTS.decode()


async def test_a_hostile_host_header_gets_no_redirect(production: httpx.AsyncClient) -> None:
    response = await production.get("/api/v1/me", headers={"Host": "evil.test/@x"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "https_required"


async def test_outside_production_plain_http_is_served() -> None:
    transport = httpx.ASGITransport(app=_policy_app(enabled=False))
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as plain:
        assert (await plain.post("/api/v1/me")).status_code == 200


async def _handshake(app: Starlette, scheme: str) -> list[dict[str, object]]:
    """Drive a WebSocket handshake straight through the ASGI app; returns what the app sent."""
    sent: list[dict[str, object]] = []
    inbox = [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]

    async def receive() -> dict[str, object]:
        return inbox.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "scheme": scheme, "path": "/api/v1/ws", "raw_path": b"/api/v1/ws",
             "query_string": b"", "headers": [(b"host", b"api.test")], "root_path": "", "subprotocols": []}  # fmt: skip
    await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


async def test_production_refuses_plain_websockets_at_the_handshake() -> None:
    app = _policy_app(enabled=True)
    refused = await _handshake(app, "ws")
    assert refused[0]["type"] == "websocket.close"  # before accept: the server answers HTTP 403
    accepted = await _handshake(app, "wss")
    assert accepted[0]["type"] == "websocket.accept"
