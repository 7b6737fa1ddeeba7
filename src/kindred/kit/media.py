"""Signed media URLs: `/media/{key}?exp=&sig=`, valid 24 h, expiry on the hour so URLs are cacheable."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kindred.settings import Settings

URL_LIFETIME = 24 * 3600
# Key in `AsyncSession.info` under which the app's lifespan puts its signer.
MEDIA_SIGNER = "media_signer"
_HOUR = 3600
# A URL we issued never expires further out than this; anything later was not signed by this code.
_MAX_AHEAD = URL_LIFETIME + _HOUR


def expiry(now: datetime) -> int:
    """now + 24 h, rounded up to the next full hour (Unix seconds): one URL per photo per hour."""
    target = int(now.timestamp()) + URL_LIFETIME
    return -(-target // _HOUR) * _HOUR


def cache_control(exp: int, now: datetime) -> str:
    """Caches may keep the bytes until the URL expires, never longer."""
    max_age = max(exp - int(now.timestamp()), 0)
    return f"public, max-age={max_age}, immutable"


class MediaSigner:
    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    @classmethod
    def from_settings(cls, settings: Settings) -> MediaSigner:
        return cls(settings.effective_media_url_secret)

    def signature(self, key: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{key}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, key: str, now: datetime) -> str:
        exp = expiry(now)
        return f"/media/{key}?exp={exp}&sig={self.signature(key, exp)}"

    def verify(self, key: str, exp: int | str | None, sig: str | None, now: datetime) -> int | None:
        """The expiry when `sig` is ours for `key` and `exp` and the URL is still valid, else None."""
        if exp is None or sig is None:
            return None
        try:
            exp_value = int(exp)
        except (TypeError, ValueError):
            return None
        expected = self.signature(key, exp_value)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            return None
        now_ts = int(now.timestamp())
        if exp_value <= now_ts or exp_value > now_ts + _MAX_AHEAD:
            return None
        return exp_value
