"""`kindred set-tier`: the new tier applies to the member's live sessions."""

from __future__ import annotations

import httpx
import jwt
from fastapi import FastAPI

from kindred.auth.session_state import PREFIX
from kindred.kit.email import MemoryEmailBackend
from kindred.ops.accounts import set_tier
from kindred.settings import Settings
from tests.support.factories import verified_account


async def test_a_signed_in_member_gets_premium_after_set_tier(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings, app: FastAPI
) -> None:
    account = await verified_account(client, mail)
    assert (await client.get("/api/v1/me", headers=account.headers)).json()["user"]["tier"] == "free"  # cached now
    assert await set_tier(settings, email=account.email, tier="premium")
    if settings.redis_url is None:
        # Embedded stack: the CLI cannot reach this server's in-process cache; the entry expires within
        # SESSION_CACHE_TTL. With Redis (the PostgreSQL + Redis pass) the CLI drops it and this is immediate.
        sid = jwt.decode(account.access_token, options={"verify_signature": False})["sid"]
        await app.state.cache.delete(PREFIX + sid)
    me = (await client.get("/api/v1/me", headers=account.headers)).json()
    assert me["user"]["tier"] == "premium" and me["entitlements"]["undo"] is True


async def test_set_tier_for_an_unknown_address_changes_nothing(settings: Settings, app: FastAPI) -> None:
    assert await set_tier(settings, email="nobody.at.all@example.com", tier="premium") is False
