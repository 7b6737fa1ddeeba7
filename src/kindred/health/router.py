"""Probes and operator endpoints: /health, /live, /ready, /health/detailed, /metrics, JWKS."""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kindred.observability.logging import get_logger

router = APIRouter(tags=["health"])
log = get_logger(__name__)
POOL_WARNING_RATIO = 0.9


def _uptime(request: Request) -> float:
    return round(time.monotonic() - request.app.state.started_monotonic, 3)


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    return {
        "status": "ok",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "uptime": _uptime(request),
    }


@router.get("/live")
async def live(request: Request) -> dict[str, Any]:
    """Liveness never touches a dependency: a database outage must not get every pod restarted."""
    return {"alive": True, "uptime": _uptime(request)}


@router.get("/ready", responses={503: {"description": "starting, draining or database unreachable"}})
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    if getattr(state, "draining", False):
        return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
    if not getattr(state, "started", False):
        return JSONResponse({"ready": False, "reason": "starting"}, status_code=503)
    try:
        await state.db.ping()
    except Exception as exc:
        log.warning("ready.database_unreachable", error=type(exc).__name__)
        return JSONResponse({"ready": False, "reason": "database_unavailable"}, status_code=503)
    return JSONResponse({"ready": True})


def _internal_allowed(request: Request) -> bool:
    """Open in development; in production a METRICS_TOKEN bearer or X-API-Key, compared in constant time."""
    settings = request.app.state.settings
    if not settings.is_production:
        return True
    if settings.metrics_token:
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].encode(), settings.metrics_token.encode()):
            return True
    if settings.api_key:
        key = request.headers.get("x-api-key", "")
        if key and hmac.compare_digest(key.encode(), settings.api_key.encode()):
            return True
    return False


def _forbidden(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "error": {"code": "forbidden", "message": "Not allowed.", "details": {}},
            "request_id": request.scope.get("kindred", {}).get("request_id"),
        },
        status_code=403,
    )


async def _check_database(request: Request) -> dict[str, Any]:
    db = request.app.state.db
    started = time.perf_counter()
    try:
        await db.ping()
    except Exception as exc:
        return {
            "status": "error",
            "error": type(exc).__name__,
            "response_time_ms": round((time.perf_counter() - started) * 1000, 2),
            "pool": db.pool_stats(),
        }
    pool = db.pool_stats()
    status = "warning" if pool["utilisation"] >= POOL_WARNING_RATIO else "ok"
    return {
        "status": status,
        "dialect": db.dialect,
        "breaker": db.breaker.state,
        "response_time_ms": round((time.perf_counter() - started) * 1000, 2),
        "pool": pool,
    }


async def _check_cache(request: Request) -> dict[str, Any]:
    cache = request.app.state.cache
    configured = bool(request.app.state.settings.redis_url)
    started = time.perf_counter()
    try:
        await cache.ping()
        ok = True
    except Exception:
        ok = False
    stats = cache.stats()
    mode = cache.mode
    status = "ok" if (ok and (mode == "redis" or not configured)) else "degraded"
    return {
        "status": status,
        "mode": mode,
        "configured": "redis" if configured else "memory",
        "response_time_ms": round((time.perf_counter() - started) * 1000, 2),
        "hits": stats.get("hits", 0),
        "misses": stats.get("misses", 0),
    }


async def _check_storage(request: Request) -> dict[str, Any]:
    storage = request.app.state.storage
    started = time.perf_counter()
    body: dict[str, Any] = {"status": "ok", "backend": storage.name}
    try:
        async with asyncio.timeout(3):
            await storage.ping()
    except Exception as exc:
        body.update(status="error", error=type(exc).__name__)
    body["response_time_ms"] = round((time.perf_counter() - started) * 1000, 2)
    return body


@router.get(
    "/health/detailed", responses={503: {"description": "a required check failed"}, 403: {"description": "forbidden"}}
)
async def health_detailed(request: Request) -> JSONResponse:
    if not _internal_allowed(request):
        return _forbidden(request)
    database, cache, storage = await asyncio.gather(
        _check_database(request), _check_cache(request), _check_storage(request)
    )
    checks = {
        "database": database,
        "cache": cache,
        "storage": storage,
        "backup": {"status": "not_configured", "last_verified_at": None},
    }
    failed = database["status"] == "error"
    degraded = any(c["status"] in {"degraded", "warning", "error"} for c in checks.values())
    body = {
        "status": "error" if failed else ("degraded" if degraded else "ok"),
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "uptime": _uptime(request),
        "version": request.app.version,
        "checks": checks,
    }
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics", response_class=Response, responses={403: {"description": "forbidden"}})
async def metrics(request: Request) -> Response:
    if not _internal_allowed(request):
        return _forbidden(request)
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.signer.jwks(), headers={"Cache-Control": "public, max-age=300"})
