"""Structured logging: structlog over stdlib, JSON in production, with personal data scrubbed."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

# Keys that must never reach a log line, whoever passes them. Defence in depth: code should not log
# them in the first place (a test greps the whole suite's log output for canaries).
_REDACTED_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "cookie",
        "set-cookie",
        "email",
        "new_email",
        "birthdate",
        "lat",
        "lng",
        "latitude",
        "longitude",
        "body",
        "secret",
        "api_key",
    }
)


def _redact(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    for key in event_dict.keys() & _REDACTED_KEYS:
        event_dict[key] = "[redacted]"
    return event_dict


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _redact,
]


_HANDLER_NAME = "kindred"
# LOG_FILE rotation: by size, the current file plus LOG_FILE_BACKUPS older ones (LOG_FILE.1 newest).
LOG_FILE_MAX_BYTES = 50 * 2**20
LOG_FILE_BACKUPS = 5


def formatter(fmt: str) -> logging.Formatter:
    renderer: Any = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )


def configure_logging(
    level: str = "info", fmt: str = "console", log_file: str | None = None, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging through one formatter; safe to call more than once.

    Logs go to `stream` (stdout) in `fmt`; with `log_file` also to a size-rotated file, always as JSON
    lines (a file is read by machines: shippers, grep, jq), whatever `fmt` the console gets. One process
    per file: RotatingFileHandler does not coordinate rotation between processes.
    """
    # filter_by_level first: events below LOG_LEVEL cost one level check, not the whole chain.
    chain = [structlog.stdlib.filter_by_level, *_SHARED, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    if structlog.is_configured():
        # Loggers cached on first use hold the configured list itself: change it in place, so a second
        # call reaches them too (structlog.configure would swap in a new list they never see).
        processors = structlog.get_config()["processors"]
        processors[:] = chain
    else:
        processors = chain
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:  # ours from an earlier call: replace, don't stack
            root.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(stream or sys.stdout)
    console.setFormatter(formatter(fmt))
    handlers: list[logging.Handler] = [console]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=LOG_FILE_MAX_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8"
        )
        rotating.setFormatter(formatter("json"))
        handlers.append(rotating)
    for handler in handlers:
        handler.set_name(_HANDLER_NAME)
        root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn's own access log would duplicate ours (and log query strings); its error log is useful.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
