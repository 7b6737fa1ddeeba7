"""Factories: make users through the real API, the way a client would."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx

from kindred.kit.email import MemoryEmailBackend
from tests.support import leaks

_seq = itertools.count(1)
PASSWORD = "correct horse battery staple"


def new_email() -> str:
    return leaks.canary(f"user{next(_seq)}.{uuid.uuid4().hex[:8]}@example.com")


def registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "email": new_email(),
        "password": leaks.canary(PASSWORD),
        "birthdate": "1995-06-15",
        "display_name": "Alex",
        "accepted_terms_version": "2026-01",
    }
    body.update(overrides)
    return body


@dataclass
class Account:
    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def emailed_token(mail: MemoryEmailBackend, address: str, template: str) -> str:
    return leaks.canary(mail.token_from(mail.last(address, template)))


async def register(client: httpx.AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = registration(**overrides)
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 202, response.text
    return body


async def verified_account(client: httpx.AsyncClient, mail: MemoryEmailBackend, **overrides: Any) -> Account:
    body = await register(client, **overrides)
    token = emailed_token(mail, body["email"], "verify_email")
    response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 200, response.text
    pair = response.json()
    return Account(
        id=pair["user"]["id"],
        email=body["email"],
        password=body["password"],
        access_token=pair["access_token"],
        refresh_token=pair["refresh_token"],
    )


async def login(client: httpx.AsyncClient, account: Account, **extra: Any) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": account.email, "password": account.password, **extra})


def birthdate_years_ago(years: int, today: date) -> str:
    try:
        return today.replace(year=today.year - years).isoformat()
    except ValueError:  # 29 February
        return today.replace(year=today.year - years, day=28).isoformat()
