"""Transactional email: Jinja2 templates, console/SMTP/memory backends and a Mailer that never raises."""

from __future__ import annotations

import email.message
import email.utils
import re
import ssl
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol, TextIO, runtime_checkable
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

APP_NAME = "Kindred"
TEMPLATE_DIR = Path(__file__).parent / "templates"
# The identifiers the app passes to `Mailer.send`; every one has a subject, text and html file.
TEMPLATES = (
    "verify_email",
    "reset_password",
    "signup_attempt",
    "password_changed",
    "confirm_new_email",
    "email_changed",
)


@dataclass(frozen=True)
class EmailMessage:
    to: str
    subject: str
    text: str
    html: str
    # Kept on the message so tests (and the memory outbox) can tell emails apart without parsing bodies.
    template: str


@runtime_checkable
class EmailBackend(Protocol):
    async def send(self, message: EmailMessage) -> None: ...

    async def close(self) -> None: ...


# --- rendering ---------------------------------------------------------------------------------------


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATE_DIR),
        # Only the html part is markup; escaping the text part would show "&lt;" to readers.
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False, default=False),
        # A missing link must fail the render, not send an email with an empty link in it.
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> tuple[str, str, str]:
    """Render `template` into (subject, text, html); `app_name` is always in the context."""
    if template not in TEMPLATES:
        # Also keeps a caller-supplied name from reaching the loader as a path.
        raise ValueError(f"unknown email template {template!r}")
    context.setdefault("app_name", APP_NAME)
    env = _environment()
    subject = env.get_template(f"{template}.subject.txt").render(context)
    text = env.get_template(f"{template}.txt").render(context)
    html = env.get_template(f"{template}.html").render(context)
    # A subject is one header line: folding whitespace from the template must not become a newline.
    return " ".join(subject.split()), text, html


def mask_email(address: str) -> str:
    """`jane@example.com` → `j***@e***.com`: recognisable to its owner, useless to anyone else."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        return "***"
    name, dot, tld = domain.rpartition(".")
    masked_domain = f"{name[0]}***.{tld}" if dot and name else f"{domain[0]}***"
    return f"{local[0]}***@{masked_domain}"


# --- backends ----------------------------------------------------------------------------------------


class ConsoleEmailBackend:
    """Development only: prints each email to stderr, deliberately outside the structured log.

    The log must never hold addresses or links; a developer still needs to click the link, so the
    email goes to the terminal as plain text instead.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream

    async def send(self, message: EmailMessage) -> None:
        # Resolved per send so a redirected sys.stderr (pytest's capsys, a supervisor) is honoured.
        stream = self._stream if self._stream is not None else sys.stderr
        rule = "=" * 72
        stream.write(
            f"\n{rule}\n"
            f"EMAIL (console backend, development only) · template: {message.template}\n"
            f"To: {message.to}\n"
            f"Subject: {message.subject}\n"
            f"{'-' * 72}\n"
            f"{message.text.rstrip()}\n"
            f"{rule}\n\n"
        )
        stream.flush()

    async def close(self) -> None:
        return None


@dataclass(frozen=True)
class SmtpConfig:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool


def parse_smtp_url(smtp_url: str) -> SmtpConfig:
    """`smtp://user:pass@host:port[?starttls=1]` or `smtps://…` (implicit TLS); credentials URL-decoded."""
    parts = urlsplit(smtp_url)
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError("SMTP_URL must start with smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("SMTP_URL has no host")
    use_tls = parts.scheme == "smtps"
    flag = parse_qs(parts.query).get("starttls", ["0"])[-1].lower()
    # Explicit rather than aiosmtplib's "upgrade if offered": a plain relay (a local MTA, a test server)
    # must not be talked into TLS, and a URL that asks for STARTTLS must fail if the server lacks it.
    start_tls = not use_tls and flag in {"1", "true", "yes"}
    return SmtpConfig(
        hostname=parts.hostname,
        port=parts.port or (465 if use_tls else 587 if start_tls else 25),
        # urlsplit leaves percent-escapes in place; a password may well contain "@" or ":".
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        use_tls=use_tls,
        start_tls=start_tls,
    )


_MESSAGE_ID_DOMAIN_FALLBACK = "kindred.invalid"


class SmtpEmailBackend:
    """Real delivery through an SMTP relay, one connection per message.

    Transactional volume is low and a fresh connection cannot go stale between emails, so there is no
    pool to keep healthy (and nothing to close).
    """

    def __init__(
        self,
        smtp_url: str,
        sender: str,
        timeout: float = 10,
        *,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        # Parsed here so a malformed SMTP_URL fails at start-up, not on the first password reset.
        self._config = parse_smtp_url(smtp_url)
        self._sender = sender
        self._envelope_from = email.utils.parseaddr(sender)[1] or sender
        # Message-ID's right-hand side from our own domain: make_msgid's default does a DNS lookup.
        self._msgid_domain = self._envelope_from.rpartition("@")[2] or _MESSAGE_ID_DOMAIN_FALLBACK
        self._timeout = timeout
        # For a relay signed by a private CA (and the test suite's self-signed server).
        self._tls_context = tls_context

    def build(self, message: EmailMessage) -> email.message.EmailMessage:
        mime = email.message.EmailMessage()
        mime["From"] = self._sender
        mime["To"] = message.to
        mime["Subject"] = message.subject
        mime["Date"] = email.utils.formatdate(usegmt=True)
        mime["Message-ID"] = email.utils.make_msgid(domain=self._msgid_domain)
        # Text first, html last: clients show the last alternative they can render.
        mime.set_content(message.text)
        mime.add_alternative(message.html, subtype="html")
        return mime

    async def send(self, message: EmailMessage) -> None:
        config = self._config
        await aiosmtplib.send(
            self.build(message),
            sender=self._envelope_from,
            recipients=[message.to],
            hostname=config.hostname,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.use_tls,
            start_tls=config.start_tls,
            timeout=self._timeout,
            tls_context=self._tls_context,
        )

    async def close(self) -> None:
        return None


_TOKEN_IN_LINK = re.compile(r"[?&]token=([^&#\s\"'<>]+)")


@dataclass
class MemoryEmailBackend:
    """Test backend: keeps every message so a test can read the link a user would click."""

    outbox: list[EmailMessage] = field(default_factory=list)

    async def send(self, message: EmailMessage) -> None:
        self.outbox.append(message)

    async def close(self) -> None:
        return None

    def sent_to(self, address: str) -> list[EmailMessage]:
        # Case-insensitive, as mail systems treat addresses in practice.
        wanted = address.casefold()
        return [message for message in self.outbox if message.to.casefold() == wanted]

    def last(self, address: str, template: str | None = None) -> EmailMessage:
        matching = [m for m in self.sent_to(address) if template is None or m.template == template]
        if not matching:
            sent = [m.template for m in self.sent_to(address)]
            raise LookupError(f"no {template or 'email'} sent to that address (templates sent to it: {sent})")
        return matching[-1]

    def clear(self) -> None:
        self.outbox.clear()

    @staticmethod
    def token_from(message: EmailMessage) -> str:
        match = _TOKEN_IN_LINK.search(message.text)
        if match is None:
            raise LookupError(f"no token= link in the {message.template} email")
        return unquote(match.group(1))


def create_email_backend(kind: str, *, smtp_url: str | None, sender: str) -> EmailBackend:
    """The backend named by EMAIL_BACKEND: console, smtp or memory."""
    kind = str(kind)
    if kind == "console":
        return ConsoleEmailBackend()
    if kind == "memory":
        return MemoryEmailBackend()
    if kind == "smtp":
        if not smtp_url:
            raise ValueError("EMAIL_BACKEND=smtp needs SMTP_URL")
        return SmtpEmailBackend(smtp_url, sender)
    raise ValueError(f"unknown email backend {kind!r} (expected console, smtp or memory)")


# --- mailer ------------------------------------------------------------------------------------------


def _logger() -> Any:
    # Looked up per call: logging is configured with cache_logger_on_first_use, and a module-level
    # logger cached once would ignore later configuration (and structlog.testing.capture_logs).
    return structlog.get_logger(__name__)


class Mailer:
    """Renders and sends; a failed email is logged and reported as False, never raised into a request."""

    def __init__(self, backend: EmailBackend) -> None:
        self.backend = backend

    async def send(self, to: str, template: str, **context: Any) -> bool:
        try:
            subject, text, html = render(template, **context)
            await self.backend.send(EmailMessage(to=to, subject=subject, text=text, html=html, template=template))
        except Exception as exc:  # CancelledError (a BaseException) still propagates, as it must.
            # Only the exception's type: SMTP replies and render errors can quote the address or link.
            _logger().error("email.failed", template=template, error=type(exc).__name__)
            return False
        # The address, link and token stay out of the log; the template says what was sent.
        _logger().info("email.sent", template=template)
        return True

    async def close(self) -> None:
        await self.backend.close()
