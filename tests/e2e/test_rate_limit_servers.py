"""Rate limits across real server processes: one budget shared through Redis, and client addresses
taken from X-Forwarded-For only when the peer is a trusted proxy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.test_server import ServerFactory, servers
from tests.support.redis_server import shared_or_private_redis

__all__ = ["servers"]
pytestmark = pytest.mark.e2e

CSRF = "/api/v1/auth/csrf"  # an anonymous /api read: counted against the client address


@pytest.fixture(scope="module")
def shared_redis() -> Iterator[str]:
    with shared_or_private_redis() as url:
        yield url


def test_two_server_processes_share_one_budget(servers: ServerFactory, shared_redis: str) -> None:
    prefix = f"ke2e:rl:{uuid.uuid4().hex[:8]}:"
    servers.prefixes.append(prefix)
    env = {"REDIS_URL": shared_redis, "CACHE_KEY_PREFIX": prefix, "RATE_LIMIT_ANONYMOUS": "4/minute"}
    first, second = servers.start("rl-a", **env), servers.start("rl-b", **env)
    statuses = []
    for n in range(6):
        target = first if n % 2 == 0 else second
        statuses.append(httpx.get(f"{target.base_url}{CSRF}", timeout=10).status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


@pytest.mark.parametrize(("trusted", "spoofable"), [("10.9.9.9", False), ("127.0.0.1", True)])
def test_x_forwarded_for_changes_the_key_only_behind_a_trusted_proxy(
    servers: ServerFactory, trusted: str, spoofable: bool
) -> None:
    server = servers.start(f"xff-{spoofable}", TRUSTED_PROXIES=trusted, RATE_LIMIT_ANONYMOUS="3/minute")
    statuses = [
        httpx.get(f"{server.base_url}{CSRF}", headers={"X-Forwarded-For": f"203.0.113.{n}"}, timeout=10).status_code
        for n in range(5)
    ]
    if spoofable:  # a trusted proxy's header names a different client each time: five budgets
        assert statuses == [200] * 5
    else:  # from an untrusted peer the header is ignored: one address, one budget of 3
        assert statuses == [200, 200, 200, 429, 429]
