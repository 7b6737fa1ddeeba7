"""LOG_FILE: JSON lines in a size-rotated file beside the console stream, whatever the console format."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from kindred.observability import logging as kindred_logging
from kindred.observability.logging import configure_logging


@pytest.fixture
def restore_suite_logging() -> Iterator[None]:
    yield
    from tests.conftest import _LOG_BUFFER

    configure_logging("info", "json", stream=_LOG_BUFFER)  # the suite's own capture, as conftest set it


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_log_file_gets_json_lines_while_the_console_keeps_its_format(
    tmp_path: Path, restore_suite_logging: None
) -> None:
    console = io.StringIO()
    path = tmp_path / "logs" / "kindred.log"  # the folder does not exist yet: created
    configure_logging("info", "console", log_file=str(path), stream=console)
    structlog.get_logger("kindred.test").info("file.check", user_id="u1", email="x@example.org")
    logging.getLogger("uvicorn.error").warning("stdlib line")

    records = _records(path)
    ours = next(r for r in records if r["event"] == "file.check")
    assert ours["user_id"] == "u1" and ours["level"] == "info" and ours["logger"] == "kindred.test"
    assert ours["email"] == "[redacted]"  # the same scrubbing as the console
    assert "timestamp" in ours
    assert any(r["event"] == "stdlib line" and r["level"] == "warning" for r in records)
    assert "file.check" in console.getvalue() and not console.getvalue().lstrip().startswith("{")


def test_log_level_applies_to_the_file_too(tmp_path: Path, restore_suite_logging: None) -> None:
    path = tmp_path / "kindred.log"
    configure_logging("warning", "json", log_file=str(path), stream=io.StringIO())
    log = structlog.get_logger("kindred.test")
    log.info("too.quiet")
    log.warning("loud.enough")
    assert [r["event"] for r in _records(path)] == ["loud.enough"]


def test_log_file_rotates_by_size_and_keeps_five_old_files(
    tmp_path: Path, restore_suite_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kindred_logging, "LOG_FILE_MAX_BYTES", 2_000)
    path = tmp_path / "kindred.log"
    configure_logging("info", "json", log_file=str(path), stream=io.StringIO())
    log = structlog.get_logger("kindred.test")
    for n in range(400):
        log.info("rotation.line", n=n, padding="x" * 40)

    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["kindred.log", *(f"kindred.log.{i}" for i in range(1, kindred_logging.LOG_FILE_BACKUPS + 1))]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2_000
        assert all(r["event"] == "rotation.line" for r in _records(tmp_path / name))  # whole JSON lines only
    # Newest in the current file, older ones in .1, .2...; the oldest lines are gone.
    newest = [r["n"] for r in _records(path)]
    assert newest[-1] == 399
    assert max(r["n"] for r in _records(tmp_path / "kindred.log.1")) < newest[0]
    kept = sum(len(_records(tmp_path / name)) for name in files)
    assert kept < 400


def test_configuring_again_replaces_the_file_handler_instead_of_stacking(
    tmp_path: Path, restore_suite_logging: None
) -> None:
    path = tmp_path / "kindred.log"
    for _ in range(3):
        configure_logging("info", "json", log_file=str(path), stream=io.StringIO())
    structlog.get_logger("kindred.test").info("once")
    assert [r["event"] for r in _records(path)].count("once") == 1


def test_a_logger_used_before_reconfiguration_follows_the_new_chain(restore_suite_logging: None) -> None:
    """Loggers are cached on first use; configuring again must still reach them (and structlog's
    capture_logs, which edits the configured chain in place)."""
    from structlog.testing import capture_logs

    early = structlog.get_logger("kindred.test.early")
    early.info("before")  # cached now, on the chain configured so far
    configure_logging("info", "json", stream=io.StringIO())
    with capture_logs() as captured:
        early.info("after", n=1)
    assert [(entry["event"], entry.get("n")) for entry in captured] == [("after", 1)]
