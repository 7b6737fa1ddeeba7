"""Skip a test for a missing external tool — or fail it, when CI demands everything run."""

from __future__ import annotations

import os
import shutil

import pytest


def require_all() -> bool:
    return os.environ.get("KINDRED_REQUIRE_ALL", "") not in {"", "0", "false", "no"}


def missing(reason: str) -> None:
    """Skip with `reason`, or fail under KINDRED_REQUIRE_ALL=1 (CI runs every test)."""
    if require_all():
        pytest.fail(f"required but unavailable (KINDRED_REQUIRE_ALL=1): {reason}", pytrace=False)
    pytest.skip(reason)


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path is None:
        missing(f"{name} is not installed")
    assert path is not None
    return path
