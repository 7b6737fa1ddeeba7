"""Fixtures for kit tests: a Redis to test against, per-test key prefixes, a fault-injecting proxy."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from tests.support.redis_server import shared_or_private_redis
from tests.support.tcpproxy import TcpProxy


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """TEST_REDIS_URL when set (shared: tests touch only keys under their own prefix), else a private server."""
    with shared_or_private_redis() as url:
        yield url


async def delete_prefixed(redis_url: str, prefix: str) -> None:
    """Delete this test's keys, and only those: TEST_REDIS_URL may be a shared server."""
    client = Redis.from_url(redis_url, decode_responses=True)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def key_prefix(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A prefix unique to this test (keys and channels); its Redis keys are deleted afterwards."""
    prefix = f"kindred-test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    # Fixtures that ask for redis_url dynamically (the parametrized cache) clean up themselves.
    if "redis_url" in request.fixturenames:
        await delete_prefixed(request.getfixturevalue("redis_url"), prefix)


@pytest.fixture
async def redis_direct(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client on the test Redis, to check what really reached it."""
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(redis_url)
    async with TcpProxy(target.hostname or "127.0.0.1", target.port or 6379) as tcp_proxy:
        yield tcp_proxy


@pytest.fixture
def proxy_url(redis_url: str, proxy: TcpProxy) -> str:
    """redis_url with its host and port swapped for the proxy's (db and credentials kept)."""
    parts = urlsplit(redis_url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{proxy.port}" if credentials else f"127.0.0.1:{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))
