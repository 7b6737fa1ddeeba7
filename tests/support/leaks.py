"""Find personal data and secrets in log output: any email address, any JWT, and registered canaries."""

from __future__ import annotations

import json
import re

import httpx

from tests.support import exposure

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_canaries: set[str] = set()


def canary(value: str) -> str:
    """Register a secret (password, refresh token, emailed token) that must never be logged."""
    if len(value) >= 6:
        _canaries.add(value)
    return value


def reset() -> None:
    _canaries.clear()


def scan(text: str) -> list[str]:
    found = [f"email:{m}" for m in _EMAIL.findall(text)]
    found += [f"jwt:{m[:16]}…" for m in _JWT.findall(text)]
    found += [f"canary:{c[:4]}…" for c in _canaries if c in text]
    return found


async def register_response_tokens(response: httpx.Response) -> None:
    """httpx response hook: every token the API hands out becomes a canary the log scan looks for, and
    every body is checked for data nobody may be shown (tests/support/exposure.py)."""
    if response.headers.get("content-type", "").startswith("application/json"):
        await response.aread()
        try:
            body = response.json()
        except json.JSONDecodeError:
            return
        exposure.inspect(response.request.method, response.request.url.path, body)
        if isinstance(body, dict):
            for key in ("access_token", "refresh_token"):
                if isinstance(body.get(key), str):
                    canary(body[key])
