"""Which browser origins may open a socket: FRONTEND_URL, CORS_ORIGIN, CORS_ORIGIN_REGEX (+ localhost in dev)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from kindred.settings import Environment, Settings

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def normalise(origin: str) -> str | None:
    """`scheme://host[:port]`, lower-case, default port dropped; None for anything that is not an origin
    (`null`, a path, credentials, another scheme)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host or parts.username is not None or parts.password is not None:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}" if port in (None, _DEFAULT_PORTS[scheme]) else f"{scheme}://{shown}:{port}"


def _origin_of(url: str) -> str | None:
    """The origin part of a URL that may carry a path (FRONTEND_URL=https://example.com/app)."""
    parts = urlsplit(url.strip())
    return normalise(f"{parts.scheme}://{parts.netloc}") if parts.scheme and parts.netloc else None


class OriginPolicy:
    """Exact origins from FRONTEND_URL and CORS_ORIGIN, the CORS_ORIGIN_REGEX pattern (matched against the
    whole Origin header), and in development any http(s) origin on localhost, 127.0.0.1 or [::1]."""

    def __init__(self, settings: Settings) -> None:
        exact = [_origin_of(settings.frontend_url)] if settings.frontend_url else []
        exact += [normalise(origin) for origin in settings.cors_origin]
        self._exact = frozenset(origin for origin in exact if origin)
        self._pattern = re.compile(settings.cors_origin_regex) if settings.cors_origin_regex else None
        self._localhost = settings.environment is Environment.development

    def allows(self, origin: str) -> bool:
        normal = normalise(origin)
        if normal is None:  # `null`, paths, credentials, other schemes: never, whatever the pattern says
            return False
        if normal in self._exact or (self._pattern is not None and self._pattern.fullmatch(origin)):
            return True
        return self._localhost and (urlsplit(normal).hostname or "") in _LOCAL_HOSTS
