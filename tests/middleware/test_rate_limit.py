"""Rate limits: general budgets by caller, stricter route limits, headers, exemptions, fallback, sharing.

Accounts are set up under the suite's unreachable budgets; each test then installs the limits it is
about (`limit(...)`). `limits` keys counters by the limit itself, so the new limits start from zero.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import ConnectionPool
from sqlalchemy import update

from kindred.app import create_app
from kindred.kit.email import MemoryEmailBackend
from kindred.kit.ratelimit import Limiter, rate
from kindred.middleware.rate_limit import RateLimitPolicy
from kindred.models import User
from kindred.settings import Settings
from tests.chat.helpers import matched_pair, send
from tests.discovery.conftest import MakePerson, person
from tests.photos.images import webp
from tests.support.assertions import assert_error
from tests.support.factories import Account, registration, verified_account
from tests.support.redis_server import shared_or_private_redis

__all__ = ["person"]

ME = "/api/v1/me"


def limit(app: FastAPI, settings: Settings, **values: str) -> None:
    app.state.rate_limits = RateLimitPolicy(settings.model_copy(update=values))


def from_ip(app: FastAPI, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 40000)), base_url="http://testserver")


def assert_rate_limited(response: httpx.Response, limit_amount: int) -> None:
    assert_error(response, 429, "rate_limited")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-limit"] == str(limit_amount)
    assert response.headers["ratelimit-remaining"] == "0"
    assert int(response.headers["ratelimit-reset"]) >= 1


async def test_anonymous_callers_share_a_budget_per_client_ip(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_anonymous="3/minute")
    async with from_ip(app, "10.1.0.1") as one, from_ip(app, "10.1.0.2") as other:
        remaining = []
        for _ in range(3):
            response = await one.get("/api/v1/plans-or-anything")
            remaining.append(response.headers["ratelimit-remaining"])
            assert response.headers["ratelimit-limit"] == "3"
        assert remaining == ["2", "1", "0"]
        assert_rate_limited(await one.get("/api/v1/auth/csrf"), 3)
        assert (await other.get("/api/v1/plans-or-anything")).status_code == 404  # its own budget


async def test_an_authenticated_user_is_counted_by_id_on_any_address(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    alice = await verified_account(client, mail)
    bob = await verified_account(client, mail)
    limit(app, settings, rate_limit_free="2/minute", rate_limit_anonymous="100/minute")
    async with from_ip(app, "10.2.0.1") as home, from_ip(app, "10.2.0.2") as work:
        assert (await home.get(ME, headers=alice.headers)).status_code == 200
        assert (await work.get(ME, headers=alice.headers)).status_code == 200
        assert_rate_limited(await home.get(ME, headers=alice.headers), 2)
        assert (await home.get(ME, headers=bob.headers)).status_code == 200  # bob has his own budget
        assert (await home.get("/api/v1/nothing-here")).status_code == 404  # and the address is not used up


@pytest.mark.parametrize(
    ("field", "value", "budget"), [("tier", "premium", 4), ("role", "moderator", 5), ("role", "admin", 5)]
)
async def test_premium_and_staff_get_bigger_budgets(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, mail: MemoryEmailBackend,
    field: str, value: str, budget: int,
) -> None:  # fmt: skip
    account = await verified_account(client, mail)
    async with app.state.db.sessionmaker() as session, session.begin():
        await session.execute(update(User).where(User.id == uuid.UUID(account.id)).values({field: value}))
    await app.state.cache.delete(f"session:{_session_id(app, account)}")
    limit(app, settings, rate_limit_free="2/minute", rate_limit_premium="4/minute", rate_limit_staff="5/minute")
    statuses = [(await client.get(ME, headers=account.headers)).status_code for _ in range(budget + 1)]
    assert statuses == [200] * budget + [429]


def _session_id(app: FastAPI, account: Account) -> str:
    return str(app.state.signer.verify(account.access_token).session_id)


async def test_an_invalid_token_is_counted_against_the_address(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_anonymous="2/minute")
    async with from_ip(app, "10.3.0.1") as caller:
        for _ in range(2):
            assert_error(
                await caller.get(ME, headers={"Authorization": "Bearer not.a.token"}), 401, "not_authenticated"
            )
        assert_rate_limited(await caller.get(ME, headers={"Authorization": "Bearer not.a.token"}), 2)


async def test_login_is_limited_per_client_ip(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_login_ip="2/minute")
    body = {"email": "nobody@example.com", "password": "wrong password 1"}
    async with from_ip(app, "10.4.0.1") as attacker, from_ip(app, "10.4.0.2") as someone:
        for n in range(2):
            assert (
                await attacker.post("/api/v1/auth/login", json={**body, "email": f"x{n}@example.com"})
            ).status_code == 401
        assert_rate_limited(await attacker.post("/api/v1/auth/login", json=body), 2)
        assert (await someone.post("/api/v1/auth/login", json=body)).status_code == 401


async def test_login_is_limited_per_account_across_addresses(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    victim = await verified_account(client, mail)
    limit(app, settings, rate_limit_login_account="2/hour")
    for n in range(2):
        async with from_ip(app, f"10.5.0.{n}") as botnet:
            wrong = {"email": victim.email, "password": "not the password"}
            assert (await botnet.post("/api/v1/auth/login", json=wrong)).status_code == 401
    async with from_ip(app, "10.5.0.9") as owner:
        right = {"email": victim.email.upper(), "password": victim.password}  # same address, other spelling
        assert_rate_limited(await owner.post("/api/v1/auth/login", json=right), 2)
        other = await verified_account(client, mail)
        assert (
            await owner.post("/api/v1/auth/login", json={"email": other.email, "password": other.password})
        ).status_code == 200


async def test_register_is_limited_per_client_ip(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_register_ip="2/30minutes")
    async with from_ip(app, "10.6.0.1") as caller:
        for _ in range(2):
            assert (await caller.post("/api/v1/auth/register", json=registration())).status_code == 202
        assert_rate_limited(await caller.post("/api/v1/auth/register", json=registration()), 2)


@pytest.mark.parametrize("route", ["/api/v1/auth/forgot-password", "/api/v1/auth/resend-verification"])
async def test_emails_are_limited_per_address(app: FastAPI, settings: Settings, route: str) -> None:
    limit(app, settings, rate_limit_email_address="2/30minutes")
    for n in range(2):
        async with from_ip(app, f"10.7.0.{n}") as caller:
            assert (await caller.post(route, json={"email": "target@example.com"})).status_code == 202
    async with from_ip(app, "10.7.0.9") as caller:
        assert_rate_limited(await caller.post(route, json={"email": "Target@Example.com"}), 2)
        assert (await caller.post(route, json={"email": "someone.else@example.com"})).status_code == 202


async def test_messages_are_limited_per_user(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, person: MakePerson
) -> None:
    man, woman, match = await matched_pair(app, person)
    limit(app, settings, rate_limit_messages="2/minute")
    for n in range(2):
        assert (await send(client, man, match.id, f"hello {n}")).status_code == 201
    assert_rate_limited(await send(client, man, match.id, "one too many"), 2)
    assert (await send(client, woman, match.id, "hi!")).status_code == 201


async def test_photo_uploads_are_limited_per_user(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    limit(app, settings, rate_limit_uploads="1/hour")
    files = {"file": ("a.webp", webp(), "image/webp")}
    assert (await client.post("/api/v1/me/photos", headers=account.headers, files=files)).status_code == 201
    assert_rate_limited(await client.post("/api/v1/me/photos", headers=account.headers, files=files), 1)


async def test_health_metrics_and_jwks_are_never_limited(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_anonymous="1/minute")
    async with from_ip(app, "10.8.0.1") as probe:
        for _ in range(5):
            for path in ("/health", "/live", "/ready", "/metrics", "/.well-known/jwks.json"):
                response = await probe.get(path)
                assert response.status_code == 200, path
                assert "ratelimit-limit" not in response.headers


async def test_without_redis_the_limiter_decides_in_memory() -> None:
    """A Redis that does not answer: decisions come from memory, never an error, never a free pass."""
    pool = ConnectionPool.from_url("redis://127.0.0.1:1/0", socket_timeout=0.1, socket_connect_timeout=0.1)
    limiter = Limiter(redis_pool=pool, key_prefix="kt:rl-down")
    item = rate("2/minute")
    decisions = [await limiter.hit(item, "someone") for _ in range(3)]
    assert [d.allowed for d in decisions] == [True, True, False]
    assert limiter.mode == "memory"
    await pool.disconnect()


@pytest.fixture
async def shared_redis_url() -> AsyncIterator[str]:
    with shared_or_private_redis() as url:
        yield url


async def test_two_instances_share_one_budget_through_redis(
    settings: Settings, shared_redis_url: str, client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    prefix = f"kt:rl-shared:{uuid.uuid4().hex[:8]}:"
    shared = settings.model_copy(
        update={"redis_url": shared_redis_url, "cache_key_prefix": prefix, "rate_limit_free": "4/minute"}
    )
    first, second = create_app(shared, email_backend=mail), create_app(shared, email_backend=mail)
    async with first.router.lifespan_context(first), second.router.lifespan_context(second):
        assert first.state.limiter.mode == "redis"
        statuses = []
        for n in range(6):
            target = first if n % 2 == 0 else second
            async with from_ip(target, "10.9.0.1") as caller:
                statuses.append((await caller.get(ME, headers=account.headers)).status_code)
        assert statuses == [200, 200, 200, 200, 429, 429]
        client_ = first.state.cache.redis_client
        async for key in client_.scan_iter(match=prefix + "*"):
            await client_.delete(key)
    await asyncio.sleep(0)


async def test_the_101st_anonymous_request_in_15_minutes_is_refused(app: FastAPI, settings: Settings) -> None:
    limit(app, settings, rate_limit_anonymous=Settings.model_fields["rate_limit_anonymous"].default)
    assert app.state.rate_limits.anonymous.amount == 100  # the shipped default, per 15 minutes
    async with from_ip(app, "10.10.0.1") as caller:
        statuses = [(await caller.get("/api/v1/auth/csrf")).status_code for _ in range(101)]
    assert statuses[:100] == [200] * 100
    assert statuses[100] == 429
