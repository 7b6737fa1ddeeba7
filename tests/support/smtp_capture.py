"""A real SMTP server on 127.0.0.1 (aiosmtpd, own thread) that records what it receives, for tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.message
import email.policy
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

HOST = "127.0.0.1"
# Given explicitly: without it aiosmtpd asks socket.getfqdn(), a DNS lookup that can stall a test run.
SERVER_NAME = "smtp-capture.test"


@dataclass(frozen=True)
class CapturedEmail:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    login: str | None  # the AUTH user the client signed in as; None when it did not authenticate
    tls: bool  # whether the message travelled over TLS (implicit or after STARTTLS)

    @property
    def message(self) -> email.message.EmailMessage:
        parsed = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    def part(self, content_type: str) -> str:
        """The decoded body of the first part with that type (`text/plain`, `text/html`)."""
        for part in self.message.walk():
            if part.get_content_type() == content_type and not part.is_multipart():
                content = part.get_content()
                assert isinstance(content, str)
                return content
        raise LookupError(f"no {content_type} part in the captured message")


@dataclass
class SmtpCapture:
    """What the running server has received, and how to reach it."""

    host: str
    port: int
    messages: list[CapturedEmail] = field(default_factory=list)
    # (login, accepted) for every AUTH attempt; the password is not kept.
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def url(
        self,
        username: str | None = None,
        password: str | None = None,
        *,
        scheme: str = "smtp",
        query: str = "",
    ) -> str:
        """An SMTP_URL for this server, credentials percent-encoded as an operator would write them."""
        userinfo = ""
        if username is not None:
            userinfo = quote(username, safe="")
            if password is not None:
                userinfo += ":" + quote(password, safe="")
            userinfo += "@"
        return f"{scheme}://{userinfo}{self.host}:{self.port}" + (f"?{query}" if query else "")

    def snapshot(self) -> list[CapturedEmail]:
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.auth_attempts.clear()

    async def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[CapturedEmail]:
        """Wait (without blocking the event loop) until `count` messages arrived; for emails sent later.

        Polls with asyncio.sleep: the sender usually runs on the caller's own loop (a background task
        after a request), so a blocking wait here would stop the very send it waits for.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            received = self.snapshot()
            if len(received) >= count:
                return received
            if loop.time() >= deadline:
                raise TimeoutError(f"expected {count} email(s) within {timeout}s, got {len(received)}")
            await asyncio.sleep(0.01)

    def _record(self, captured: CapturedEmail) -> None:
        with self._lock:
            self.messages.append(captured)

    def _record_auth(self, login: str, accepted: bool) -> None:
        with self._lock:
            self.auth_attempts.append((login, accepted))


class _Handler:
    def __init__(self, capture: SmtpCapture) -> None:
        self._capture = capture

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        auth = session.auth_data if session.authenticated else None
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        transport = server.transport
        # decode_data is off, so the content is the raw bytes exactly as the client sent them.
        content = envelope.original_content or b""
        assert isinstance(content, bytes)
        self._capture._record(
            CapturedEmail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=content,
                login=login,
                tls=transport is not None and transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 Message accepted for delivery"


class _Authenticator:
    def __init__(self, capture: SmtpCapture, users: Mapping[str, str]) -> None:
        self._capture = capture
        self._users = dict(users)

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        accepted = self._users.get(login) == password
        self._capture._record_auth(login, accepted)
        return AuthResult(success=accepted, handled=False, auth_data=data if accepted else None)


class _EphemeralPortController(Controller):
    """Listens on port 0 and learns the port the OS picked.

    Asking for a free port first and binding it later races other tests (pytest-xdist); binding port 0
    cannot. aiosmtpd's start() connects to `self.port` once the server is up, so the real port is read
    from the bound socket just before that.
    """

    def _trigger_server(self) -> None:
        server = self.server
        assert isinstance(server, asyncio.Server) and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        super()._trigger_server()


@contextmanager
def smtp_capture(
    *,
    users: Mapping[str, str] | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    starttls: ssl.SSLContext | None = None,
) -> Iterator[SmtpCapture]:
    """Run a capturing SMTP server for the duration of the block.

    users:        accept AUTH PLAIN/LOGIN for these login → password pairs (allowed without TLS: tests).
    implicit_tls: server-side context for an `smtps://` server (TLS from the first byte).
    starttls:     server-side context offered through STARTTLS on a plain `smtp://` server.
    """
    capture = SmtpCapture(host=HOST, port=0)
    smtp_options: dict[str, Any] = {}
    if users is not None:
        smtp_options["authenticator"] = _Authenticator(capture, users)
        # aiosmtpd refuses AUTH over plain connections by default; the test server talks to localhost.
        smtp_options["auth_require_tls"] = False
    if starttls is not None:
        smtp_options["tls_context"] = starttls
    controller = _EphemeralPortController(
        _Handler(capture),
        hostname=HOST,
        port=0,
        ssl_context=implicit_tls,
        server_hostname=SERVER_NAME,
        **smtp_options,
    )
    controller.start()
    capture.port = controller.port
    try:
        yield capture
    finally:
        controller.stop()


@dataclass(frozen=True)
class SelfSignedTls:
    server: ssl.SSLContext  # for smtp_capture(implicit_tls=…) or smtp_capture(starttls=…)
    client: ssl.SSLContext  # trusts only the test certificate; hand it to the client under test


def self_signed_tls(host: str = HOST) -> SelfSignedTls:
    """A throwaway certificate for `host` (an IP address SAN), with matching server and client contexts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # load_cert_chain only reads files; they live just long enough to be loaded.
    with tempfile.TemporaryDirectory() as directory:
        cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
        cert_file.write_bytes(cert_pem)
        key_file.write_bytes(key_pem)
        server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cadata=cert_pem.decode())
    return SelfSignedTls(server=server, client=client)
