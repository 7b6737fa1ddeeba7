"""docs/production-readiness.md: every checklist line is there, and every test it names exists.

A line that cites a test id which was renamed or removed fails here, so the checklist cannot drift
from the suite that proves it.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "production-readiness.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)::(\w+)(?:\[[^\]`]*\])?`")
ROW = re.compile(r"^\| \*\*(?P<item>[^*]+)\*\* \|(?P<rest>.*)$")

CHECKLIST = (
    "Environment validation", "Connection pooling", "Redis with fallback", "Rate limiting", "Monitoring",
    "Logging", "Backups", "HTTPS", "CORS", "Health checks", "Graceful shutdown", "Security headers", "CSRF",
    "Timeouts", "Input validation", "Authentication", "Compression", "CDN headers", "Caching",
)  # fmt: skip


@cache
def _functions(path: Path) -> frozenset[str]:
    tree = ast.parse(path.read_text())
    return frozenset(node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))


def _rows() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.match(line)
        if match:
            rows[match["item"].strip()] = match["rest"]
    return rows


def test_every_checklist_line_is_in_the_document() -> None:
    rows = _rows()
    missing = [item for item in CHECKLIST if item not in rows]
    assert not missing, f"checklist lines missing from {DOC.name}: {missing}"


def test_every_line_is_proven_by_a_test_or_marked_not_yet() -> None:
    for item, rest in _rows().items():
        assert TEST_ID.search(rest) or "not yet" in rest.lower(), f"{item}: no test id and not marked 'not yet'"


def test_every_named_test_exists() -> None:
    ids = TEST_ID.findall(DOC.read_text())
    assert len(ids) >= len(CHECKLIST)
    gone = [
        f"{path}::{name}" for path, name in ids if not (ROOT / path).is_file() or name not in _functions(ROOT / path)
    ]
    assert not gone, f"{DOC.name} names tests that do not exist: {gone}"
