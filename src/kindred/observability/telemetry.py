"""What error reports and traces share: the service's version, and the scrubber for free text."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_IPV4 = re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b")
_IPV6 = re.compile(r"\b(?:[0-9A-Fa-f]{1,4}:){2,7}[0-9A-Fa-f]{0,4}\b")
_SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*")  # SQLAlchemy appends the bound values to messages
_PG_DETAIL = re.compile(r"DETAIL: [^\n]*")  # PostgreSQL repeats offending values ("Key (email)=(...)")


def package_version() -> str:
    try:
        return version("kindred")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"


def scrub_text(text: str) -> str:
    """Exception messages and log text may quote values: addresses, tokens, bound SQL parameters."""
    text = _SQL_PARAMETERS.sub("[parameters: redacted]", text)
    text = _PG_DETAIL.sub("DETAIL: [redacted]", text)
    text = _JWT.sub("[token]", text)
    text = _EMAIL.sub("[email]", text)
    text = _IPV4.sub("[ip]", text)
    return _IPV6.sub("[ip]", text)
