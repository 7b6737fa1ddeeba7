"""Access tokens: what a valid one carries, and every forged, altered or misused one answered 401."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from sqlalchemy import select

from kindred.kit.email import MemoryEmailBackend
from kindred.models import AuthSession
from kindred.settings import Settings
from tests.support.assertions import assert_error
from tests.support.factories import Account, verified_account

ME = "/api/v1/me"
JWKS = "/.well-known/jwks.json"
CLAIMS = {"sub", "iat", "exp", "jti", "iss", "aud", "typ", "sid"}


# ---------------------------------------------------------------------------------------------- helpers


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def app_private_key(settings: Settings) -> bytes:
    # Test settings carry no JWT_* keys, so the app signs with the pair it generated here.
    return (settings.keys_dir / "jwt_private.pem").read_bytes()


def app_public_key(settings: Settings) -> bytes:
    return (settings.keys_dir / "jwt_public.pem").read_bytes()


def resign(token: str, settings: Settings, **changes: Any) -> str:
    """The same claims signed with the app's own private key, with `changes` applied (None removes a claim)."""
    claims = unverified_claims(token)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.encode(claims, app_private_key(settings), algorithm="RS256", headers={"kid": kid})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(JWKS)
    assert response.status_code == 200, response.text
    return response.json()


# ---------------------------------------------------------------------------------------------- a valid token


async def test_access_token_is_rs256_with_the_kid_published_in_jwks(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    header = jwt.get_unverified_header(account.access_token)
    keys = (await jwks(client))["keys"]
    assert header["alg"] == "RS256"
    assert [key["kid"] for key in keys] == [header["kid"]]
    assert keys[0]["kty"] == "RSA"
    assert keys[0]["alg"] == "RS256"


async def test_jwks_publishes_no_private_key_material(client: httpx.AsyncClient) -> None:
    for key in (await jwks(client))["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(key)


async def test_access_token_carries_exactly_the_contract_claims(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    claims = unverified_claims(account.access_token)
    assert set(claims) == CLAIMS
    assert claims["sub"] == account.id
    assert claims["typ"] == "access"
    assert claims["iss"] == settings.jwt_issuer
    assert claims["aud"] == settings.jwt_audience
    assert claims["jti"]
    async with app.state.db.sessionmaker() as session:
        row = await session.scalar(select(AuthSession).where(AuthSession.id == uuid.UUID(claims["sid"])))
    assert row is not None and str(row.user_id) == account.id


async def test_access_token_lives_fifteen_minutes(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    claims = unverified_claims(account.access_token)
    assert claims["exp"] - claims["iat"] == 900
    assert abs(claims["iat"] - time.time()) < 60


async def test_each_access_token_has_its_own_jti(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    refreshed = await client.post("/api/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert refreshed.status_code == 200, refreshed.text
    assert unverified_claims(refreshed.json()["access_token"])["jti"] != unverified_claims(account.access_token)["jti"]


async def test_jwks_key_verifies_the_access_token(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    key = jwt.PyJWK((await jwks(client))["keys"][0])
    claims = jwt.decode(
        account.access_token, key, algorithms=["RS256"], audience=settings.jwt_audience, issuer=settings.jwt_issuer
    )
    assert claims["sub"] == account.id


async def test_access_token_opens_me(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    response = await client.get(ME, headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["id"] == account.id


async def test_a_token_resigned_with_the_app_key_is_accepted(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    """Control for the forgeries below: re-signing alone changes nothing, so each rejection is the change's."""
    account = await verified_account(client, mail)
    response = await client.get(ME, headers=bearer(resign(account.access_token, settings)))
    assert response.status_code == 200, response.text


# ---------------------------------------------------------------------------------------------- rejections


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_unsigned_alg_none_token_is_401(client: httpx.AsyncClient, mail: MemoryEmailBackend, alg: str) -> None:
    account = await verified_account(client, mail)
    header = {**jwt.get_unverified_header(account.access_token), "alg": alg}
    forged = f"{segment(header)}.{segment(unverified_claims(account.access_token))}."
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


async def test_hs256_token_keyed_with_the_public_key_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    """Key confusion: the public key is public, so an HMAC keyed with it proves nothing."""
    account = await verified_account(client, mail)
    header = {**jwt.get_unverified_header(account.access_token), "alg": "HS256"}
    signing_input = f"{segment(header)}.{segment(unverified_claims(account.access_token))}"
    signature = hmac.new(app_public_key(settings), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64url(signature)}"
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


async def test_token_with_altered_signature_is_401(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    head, payload, signature = account.access_token.split(".")
    middle = len(signature) // 2  # not the last character, whose low bits may be padding
    flipped = signature[:middle] + ("A" if signature[middle] != "A" else "B") + signature[middle + 1 :]
    assert_error(await client.get(ME, headers=bearer(f"{head}.{payload}.{flipped}")), 401, "not_authenticated")


async def test_token_with_payload_changed_to_another_user_keeping_signature_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    attacker = await verified_account(client, mail)
    victim = await verified_account(client, mail)
    head, _, signature = attacker.access_token.split(".")
    payload = segment({**unverified_claims(attacker.access_token), "sub": victim.id})
    assert_error(await client.get(ME, headers=bearer(f"{head}.{payload}.{signature}")), 401, "not_authenticated")


@pytest.mark.parametrize(("claim", "value"), [("iss", "someone-else"), ("aud", "another-api")])
async def test_token_for_wrong_issuer_or_audience_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings, claim: str, value: str
) -> None:
    account = await verified_account(client, mail)
    forged = resign(account.access_token, settings, **{claim: value})
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


async def test_expired_token_is_401_token_expired(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    now = int(time.time())
    expired = resign(account.access_token, settings, iat=now - 960, exp=now - 60)
    assert_error(await client.get(ME, headers=bearer(expired)), 401, "token_expired")


@pytest.mark.parametrize("typ", [None, "refresh"], ids=["typ_missing", "typ_refresh"])
async def test_token_without_typ_access_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings, typ: str | None
) -> None:
    account = await verified_account(client, mail)
    forged = resign(account.access_token, settings, typ=typ)
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


async def test_refresh_token_used_as_bearer_is_401(client: httpx.AsyncClient, mail: MemoryEmailBackend) -> None:
    account = await verified_account(client, mail)
    assert_error(await client.get(ME, headers=bearer(account.refresh_token)), 401, "not_authenticated")


async def test_token_signed_by_another_rsa_key_with_the_same_kid_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account = await verified_account(client, mail)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    forged = jwt.encode(unverified_claims(account.access_token), other_pem, algorithm="RS256", headers={"kid": kid})
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


async def test_token_with_unknown_kid_is_401(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, settings: Settings
) -> None:
    account = await verified_account(client, mail)
    forged = jwt.encode(
        unverified_claims(account.access_token), app_private_key(settings), algorithm="RS256", headers={"kid": "k2"}
    )
    assert_error(await client.get(ME, headers=bearer(forged)), 401, "not_authenticated")


@pytest.mark.parametrize(
    "token",
    ["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.", "....", "eyJ0eXAiOiJKV1QifQ.bm90IGpzb24.c2ln"],
    ids=["word", "three_dots", "empty_claims_no_signature", "only_dots", "payload_not_json"],
)
async def test_garbage_bearer_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert_error(await client.get(ME, headers=bearer(token)), 401, "not_authenticated")


async def test_request_without_authorization_is_401_not_authenticated(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(ME), 401, "not_authenticated")


async def test_non_bearer_authorization_scheme_is_401_not_authenticated(
    client: httpx.AsyncClient, mail: MemoryEmailBackend
) -> None:
    account: Account = await verified_account(client, mail)
    response = await client.get(ME, headers={"Authorization": f"Basic {account.access_token}"})
    assert_error(response, 401, "not_authenticated")


async def test_a_remembered_token_still_expires(
    client: httpx.AsyncClient, mail: MemoryEmailBackend, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verification results are cached per token; the cache must never outlive the token's `exp`."""
    account = await verified_account(client, mail)
    assert (await client.get("/api/v1/me", headers=account.headers)).status_code == 200  # now remembered
    later = time.time() + 15 * 60 + 10
    monkeypatch.setattr("kindred.kit.security._wall_clock", lambda: later)
    assert_error(await client.get("/api/v1/me", headers=account.headers), 401, "token_expired")
