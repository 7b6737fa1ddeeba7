"""The happy path end to end through the ASGI app: register → verify → me → refresh → logout."""

from __future__ import annotations

import httpx

from kindred.kit.email import MemoryEmailBackend
from tests.support.factories import login, verified_account


async def test_register_verify_login_refresh_logout(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    me = await client.get("/api/v1/me", headers=account.headers)
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == account.email
    assert me.json()["user"]["email_verified"] is True

    response = await login(client, account)
    assert response.status_code == 200, response.text
    pair = response.json()
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    new_access = refreshed.json()["access_token"]
    out = await client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {new_access}"})
    assert out.status_code == 204
    after = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {new_access}"})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "session_revoked"
