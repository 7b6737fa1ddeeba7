"""create_app(): middleware, routers and the lifespan that owns the database, cache, mailer and keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

import swagger_ui_bundle
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from starlette_compress import CompressMiddleware

from kindred.admin.router import router as admin_router
from kindred.auth.router import router as auth_router
from kindred.billing.plans import PlanCatalogue
from kindred.billing.router import router as billing_router
from kindred.chat.router import router as chat_router
from kindred.discovery.router import router as discovery_router
from kindred.health.router import router as health_router
from kindred.kit.cache import CACHE_INFO_KEY, create_cache
from kindred.kit.db import Database
from kindred.kit.email import EmailBackend, Mailer, create_email_backend
from kindred.kit.handlers import COMMON_ERROR_RESPONSES, install_error_handlers
from kindred.kit.media import MEDIA_SIGNER, MediaSigner
from kindred.kit.ratelimit import Limiter
from kindred.kit.security import Passwords, TokenSigner
from kindred.kit.storage import create_storage
from kindred.matches.router import router as matches_router
from kindred.middleware.cors import KindredCORSMiddleware
from kindred.middleware.csrf import CsrfMiddleware, CsrfTokens
from kindred.middleware.idempotency import IdempotencyMiddleware, IdempotentReplay, replay_handler
from kindred.middleware.limits import BodyLimitMiddleware, TimeoutMiddleware, route_timeout
from kindred.middleware.metrics import MetricsMiddleware
from kindred.middleware.rate_limit import RateLimitMiddleware, RateLimitPolicy
from kindred.middleware.request_context import RequestContextMiddleware
from kindred.middleware.security import HttpsPolicyMiddleware, SecurityHeadersMiddleware, docs_csp
from kindred.observability.logging import get_logger
from kindred.observability.metrics import APP_METRICS, Metrics
from kindred.observability.sentry import flush_sentry, init_sentry
from kindred.observability.tracing import init_tracing, instrument_backends
from kindred.photos.router import media_router
from kindred.photos.router import router as photos_router
from kindred.realtime.events import EVENT_BUS
from kindred.realtime.hub import Realtime
from kindred.realtime.ws import router as realtime_router
from kindred.safety.router import router as safety_router
from kindred.settings import Settings, load_settings
from kindred.swipes.router import router as swipes_router
from kindred.users.router import router as me_router

log = get_logger(__name__)

try:
    VERSION = version("kindred")
except PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.0.0"

API_PREFIX = "/api/v1"
COMPRESS_MIN_BYTES = 1024


def create_app(settings: Settings | None = None, *, email_backend: EmailBackend | None = None) -> FastAPI:
    settings = settings or load_settings()
    signer = TokenSigner.from_settings(settings)
    passwords = Passwords(settings.argon2_memory_kib, settings.argon2_time_cost, settings.argon2_parallelism)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = app.state
        state.db = Database(settings)
        state.cache = create_cache(
            settings.redis_url, socket_timeout=settings.redis_socket_timeout, key_prefix=settings.cache_key_prefix
        )
        await state.cache.ping()  # settles the mode (redis or memory fallback) before the first request
        # Rate-limit counters share the cache's Redis connection pool; in memory without Redis.
        redis_client = getattr(state.cache, "redis_client", None)
        state.limiter = Limiter(
            redis_pool=redis_client.connection_pool if redis_client is not None else None,
            key_prefix=f"{settings.cache_key_prefix}rl",
        )
        backend = email_backend or create_email_backend(
            settings.email_backend.value, smtp_url=settings.smtp_url, sender=settings.email_from
        )
        state.mailer = Mailer(backend)
        if settings.storage_backend == "local" and settings.storage_path is not None:
            settings.storage_path.mkdir(parents=True, exist_ok=True)
        state.storage = create_storage(settings)
        state.media_signer = MediaSigner.from_settings(settings)
        # Sessions carry the signer so photos_for(session, ...) can sign URLs from any domain (Me, Cards).
        # ... and the event bus, so a domain can emit(session, ...) events that go out after commit.
        # ... and the app's metrics, so business events are counted after commit (count_after_commit).
        state.db.sessionmaker.configure(
            info={
                MEDIA_SIGNER: state.media_signer,
                EVENT_BUS: state.cache,
                APP_METRICS: state.metrics,
                CACHE_INFO_KEY: state.cache,
            }
        )
        state.realtime = Realtime(settings, state.db, state.cache)
        instrument_backends(app)  # SQL and Redis spans when tracing is on
        await state.metrics.start(state)  # event-loop lag sampling, DogStatsD when DD_AGENT_HOST is set
        state.started = True
        log.info(
            "app.started", environment=settings.environment.value, database=state.db.dialect, cache=state.cache.mode
        )
        try:
            yield
        finally:
            state.draining = True
            await state.realtime.close()  # sockets get 1001 while the cache and database still work
            await state.storage.close()
            await state.cache.close()
            await state.mailer.close()
            await state.db.dispose()
            for flush in app.state.flush_on_shutdown:  # error tracking, metrics, traces: last words out
                try:
                    await flush()
                except Exception as exc:  # one exporter failing must not keep the others from flushing
                    log.warning("app.flush_failed", error=type(exc).__name__)
            log.info("app.stopped")

    app = FastAPI(
        title="Kindred API",
        version=VERSION,
        description="Dating-app backend: accounts, profiles, discovery, matches, chat and safety.",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    registry = CollectorRegistry(auto_describe=True)
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    app.state.settings = settings
    app.state.signer = signer
    app.state.passwords = passwords
    app.state.rate_limits = RateLimitPolicy(settings)
    app.state.plans = PlanCatalogue(settings)
    # Observability integrations append `async () -> None` callables: run last at shutdown.
    app.state.flush_on_shutdown = []
    if init_sentry(settings):  # once per process; before the routes are built (the integration wraps them)
        app.state.flush_on_shutdown.append(flush_sentry)
    init_tracing(app, settings)  # OpenTelemetry when OTEL_EXPORTER_OTLP_ENDPOINT is set
    app.state.csrf_tokens = CsrfTokens(settings.effective_secret_key)
    app.state.metrics_registry = registry
    app.state.metrics = metrics = Metrics(registry, settings)
    app.state.flush_on_shutdown.append(metrics.close)
    app.state.started = False
    app.state.draining = False
    app.state.started_monotonic = time.monotonic()

    install_error_handlers(app)
    # Not an error: an `Idempotency-Key` retry answered with the first response (middleware/idempotency.py).
    app.add_exception_handler(IdempotentReplay, replay_handler)
    app.add_middleware(IdempotencyMiddleware)  # inside the request id: stores rendered responses

    api = APIRouter(prefix=API_PREFIX, responses=COMMON_ERROR_RESPONSES)
    api.include_router(auth_router)
    api.include_router(me_router)
    api.include_router(photos_router)
    api.include_router(discovery_router)
    api.include_router(safety_router)
    api.include_router(swipes_router)
    api.include_router(billing_router)
    api.include_router(matches_router)
    api.include_router(chat_router)
    api.include_router(realtime_router)
    api.include_router(admin_router)
    app.include_router(api)
    app.include_router(media_router)
    app.include_router(health_router)
    docs_policy = _mount_docs(app)
    # Outermost last: request id → security headers → HTTPS policy → ... (ARCHITECTURE.md, request path).
    app.add_middleware(CsrfMiddleware)
    app.add_middleware(TimeoutMiddleware, timeout_for=route_timeout(settings.request_timeout))
    app.add_middleware(RateLimitMiddleware)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(KindredCORSMiddleware, settings=settings)
    app.add_middleware(HttpsPolicyMiddleware, enabled=settings.is_production)
    # zstd, brotli or gzip by Accept-Encoding, for compressible types (JSON, HTML, CSS, JS; never images)
    # of at least 1 KiB: tokens and other short secrets are never compressed (BREACH needs both).
    app.add_middleware(CompressMiddleware, minimum_size=COMPRESS_MIN_BYTES)
    app.add_middleware(SecurityHeadersMiddleware, docs_policy=docs_policy)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # just inside the request id: sees every answer
    app.add_middleware(RequestContextMiddleware)
    return app


def _mount_docs(app: FastAPI) -> bytes:
    """Swagger UI from the app's own assets: no CDN, so /docs works offline and the CSP stays 'self'.

    Returns the page's Content-Security-Policy: its inline script allowed by hash, nothing else inline.
    """
    app.mount("/static/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    page = get_swagger_ui_html(
        openapi_url=app.openapi_url or "/openapi.json",
        title="Kindred API",
        swagger_js_url="/static/swagger/swagger-ui-bundle.js",
        swagger_css_url="/static/swagger/swagger-ui.css",
        swagger_favicon_url="/static/swagger/favicon-32x32.png",
    )
    html = bytes(page.body).decode()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(html)

    return docs_csp(html)
