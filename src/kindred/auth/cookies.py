"""Cookie names of cookie mode (API.md): `__Host-` prefixed and Secure in production, plain over http."""

from __future__ import annotations

from kindred.settings import Settings

# Readable by the page's JavaScript on purpose: its value is echoed in X-CSRF-Token (middleware/csrf.py).
CSRF_COOKIE = "kindred_csrf"


def cookie_names(settings: Settings) -> tuple[str, str, str]:
    """(access, refresh, pre-session) cookie names."""
    prefix = "__Host-" if settings.cookie_secure else ""
    return f"{prefix}kindred_access", f"{prefix}kindred_refresh", f"{prefix}kindred_presession"
