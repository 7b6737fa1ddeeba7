"""Walks every JSON response of the suite: nobody is ever shown coordinates, birthdates or others' emails."""

from __future__ import annotations

from typing import Any

FORBIDDEN_KEYS = frozenset(
    {"lat", "lng", "latitude", "longitude", "cell_lat", "cell_lng", "birthdate", "password_hash"}
)
# Where an email address may appear: the caller's own User object (token responses, GET /me).
EMAIL_ALLOWED_PATHS = frozenset({("user", "email")})

_found: list[str] = []


def reset() -> None:
    _found.clear()


def found() -> list[str]:
    return list(_found)


# The API's own schema names fields (`email`, `lat`) but holds nobody's data.
SCHEMA_PATHS = frozenset({"/openapi.json"})


def inspect(method: str, path: str, body: Any) -> None:
    if path in SCHEMA_PATHS:
        return
    for location in _violations(body, ()):
        _found.append(f"{method} {path}: {location}")


def _violations(value: Any, where: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            here = (*where, str(key))
            if key in FORBIDDEN_KEYS or (key == "email" and here not in EMAIL_ALLOWED_PATHS):
                out.append(".".join(here))
            out.extend(_violations(item, here))
    elif isinstance(value, list):
        for item in value:
            out.extend(_violations(item, (*where, "[]")))
    return out
