"""Password hashing (argon2id, off the event loop), RS256 access tokens and opaque random tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kindred.kit.errors import NotAuthenticated, TokenExpired
from kindred.settings import ConfigError, Settings

# ----------------------------------------------------------------------------- passwords


class Passwords:
    """argon2id hashing in a worker thread, so a login never blocks the event loop."""

    def __init__(self, memory_kib: int = 19456, time_cost: int = 2, parallelism: int = 1) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # One hash per core at a time: more would only thrash the caches (each hash walks
        # `memory_kib` of RAM) and make every login slower. Created lazily, inside the event loop.
        self._slots = max(1, os.cpu_count() or 1)
        self._limiter: anyio.CapacityLimiter | None = None
        # Verified against for unknown e-mail addresses so both failures cost the same.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    def _capacity(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self._slots)
        return self._limiter

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self._hasher.hash, password, limiter=self._capacity())

    def _verify(self, hashed: str, password: str) -> bool:
        try:
            return self._hasher.verify(hashed, password)
        except (VerificationError, InvalidHashError):
            return False

    async def verify(self, hashed: str | None, password: str) -> bool:
        """Check `password`; with `hashed=None` burn the same time on a dummy hash and return False."""
        if hashed is None:
            await anyio.to_thread.run_sync(self._verify, self._dummy, password, limiter=self._capacity())
            return False
        return await anyio.to_thread.run_sync(self._verify, hashed, password, limiter=self._capacity())

    def needs_rehash(self, hashed: str) -> bool:
        return self._hasher.check_needs_rehash(hashed)


# ----------------------------------------------------------------------------- opaque tokens


def new_token() -> str:
    """A URL-safe random token with 256 bits of entropy (refresh tokens, emailed links)."""
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """Tokens are stored only as SHA-256: they are random, so no salt or slow hash is needed."""
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


# ----------------------------------------------------------------------------- RS256 keys


def generate_key_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def write_key_pair(directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = generate_key_pair()
    private_path, public_path = directory / "jwt_private.pem", directory / "jwt_public.pem"
    private_path.write_bytes(private)
    private_path.chmod(0o600)
    public_path.write_bytes(public)
    return private_path, public_path


def load_key_pair(settings: Settings) -> tuple[bytes, bytes]:
    """PEMs from env or files; in development and test a pair is generated under var/keys once."""
    private = settings.jwt_private_key.encode() if settings.jwt_private_key else None
    public = settings.jwt_public_key.encode() if settings.jwt_public_key else None
    if private is None and settings.jwt_private_key_file:
        private = settings.jwt_private_key_file.read_bytes()
    if public is None and settings.jwt_public_key_file:
        public = settings.jwt_public_key_file.read_bytes()
    if private is None or public is None:
        if settings.is_production:
            raise ConfigError(["JWT key pair is required in production"])
        private_path = settings.keys_dir / "jwt_private.pem"
        public_path = settings.keys_dir / "jwt_public.pem"
        if not (private_path.is_file() and public_path.is_file()):
            write_key_pair(settings.keys_dir)
        private, public = private_path.read_bytes(), public_path.read_bytes()
    return private, public


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ----------------------------------------------------------------------------- access tokens


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    expires_at: datetime


LEEWAY_SECONDS = 5
VERIFIED_CACHE_SIZE = 10_000
_wall_clock = time.time  # PyJWT checks `exp` against the wall clock; so does the cache (tests move it)


def _check_expiry(claims: AccessClaims) -> None:
    if claims.expires_at.timestamp() + LEEWAY_SECONDS < _wall_clock():
        raise TokenExpired()


class TokenSigner:
    """Issues and verifies RS256 access tokens; publishes the public key as a JWK with a `kid`."""

    def __init__(self, private_pem: bytes, public_pem: bytes, *, issuer: str, audience: str, ttl: timedelta):
        private = serialization.load_pem_private_key(private_pem, password=None)
        public = serialization.load_pem_public_key(public_pem)
        if not isinstance(private, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
            raise ConfigError(["JWT keys must be an RSA key pair"])
        if private.public_key().public_numbers() != public.public_numbers():
            raise ConfigError(["JWT_PUBLIC_KEY does not belong to JWT_PRIVATE_KEY"])
        self._private: rsa.RSAPrivateKey = private
        self._public: rsa.RSAPublicKey = public
        numbers = self._public.public_numbers()
        self._jwk_public = {"kty": "RSA", "n": _b64url_uint(numbers.n), "e": _b64url_uint(numbers.e)}
        # RFC 7638 thumbprint: a stable key id derived from the key itself.
        canonical = json.dumps(
            {"e": self._jwk_public["e"], "kty": "RSA", "n": self._jwk_public["n"]},
            separators=(",", ":"),
            sort_keys=True,
        )
        self.kid = base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()
        self.issuer, self.audience, self.ttl = issuer, audience, ttl
        self._verified: OrderedDict[str, AccessClaims] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenSigner:
        private, public = load_key_pair(settings)
        return cls(
            private, public, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl=settings.access_token_ttl
        )

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID, now: datetime | None = None) -> tuple[str, int]:
        now = now or datetime.now(UTC)
        expires = now + self.ttl
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "jti": uuid.uuid4().hex,
            "typ": "access",
            "iss": self.issuer,
            "aud": self.audience,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
        }
        token = jwt.encode(claims, self._private, algorithm="RS256", headers={"kid": self.kid})
        return token, int(self.ttl.total_seconds())

    def verify(self, token: str) -> AccessClaims:
        """Verify signature, algorithm (RS256 only), issuer, audience, expiry and `typ`.

        A token is immutable, so a successful verification is remembered (bounded LRU, keyed by the
        exact token string); only the expiry is re-checked. Session revocation is checked elsewhere on
        every request, so remembering a signature check never keeps a revoked session alive.
        """
        cached = self._verified.get(token)
        if cached is not None:
            _check_expiry(cached)
            self._verified.move_to_end(token)
            return cached
        claims = self._verify_uncached(token)
        _check_expiry(claims)  # on our clock too, the same one the remembered path uses
        self._verified[token] = claims
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return claims

    def session_of(self, token: str) -> uuid.UUID | None:
        """The session id of a token we signed, expired or not (CSRF binding); None if not ours or malformed."""
        try:
            return self.verify(token).session_id
        except TokenExpired:
            try:
                return self._verify_uncached(token, check_expiry=False).session_id
            except NotAuthenticated:
                return None
        except NotAuthenticated:
            return None

    def _verify_uncached(self, token: str, *, check_expiry: bool = True) -> AccessClaims:
        try:
            # One parse for header and claims; the header's kid must name our key (rotation-ready).
            decoded = jwt.decode_complete(
                token,
                self._public,
                algorithms=["RS256"],
                issuer=self.issuer,
                audience=self.audience,
                options={
                    "require": ["exp", "iat", "sub", "sid", "jti", "iss", "aud", "typ"],
                    "verify_exp": check_expiry,
                },
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired() from None
        except jwt.PyJWTError:
            raise NotAuthenticated("The access token is invalid.") from None
        claims: dict[str, Any] = decoded["payload"]
        if decoded["header"].get("kid") != self.kid or claims.get("typ") != "access":
            raise NotAuthenticated("The access token is invalid.")
        try:
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                session_id=uuid.UUID(claims["sid"]),
                jti=str(claims["jti"]),
                expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            )
        except (ValueError, TypeError):
            raise NotAuthenticated("The access token is invalid.") from None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [{**self._jwk_public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}
