"""Email: templates, masking, the console/memory/SMTP backends (against a real SMTP server) and Mailer."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from jinja2 import UndefinedError
from structlog.testing import capture_logs

from kindred.kit.email import (
    TEMPLATES,
    ConsoleEmailBackend,
    EmailBackend,
    EmailMessage,
    Mailer,
    MemoryEmailBackend,
    SmtpEmailBackend,
    create_email_backend,
    mask_email,
    parse_smtp_url,
    render,
)
from tests.support.smtp_capture import SmtpCapture, self_signed_tls, smtp_capture

SENDER = "Kindred <no-reply@kindred.test>"
TO = "jane.doe@example.com"
TOKEN = "tok_8dK2-x_Q9"
VERIFY_LINK = f"http://localhost:3000/verify-email?token={TOKEN}"
RESET_LINK = f"http://localhost:3000/reset-password?token={TOKEN}"
CONFIRM_LINK = f"http://localhost:3000/confirm-email?token={TOKEN}"

# The context each template is sent with by the app.
CONTEXTS: dict[str, dict[str, Any]] = {
    "verify_email": {"link": VERIFY_LINK},
    "reset_password": {"link": RESET_LINK, "minutes": 30},
    "signup_attempt": {"reset_link": RESET_LINK},
    "password_changed": {},
    "confirm_new_email": {"link": CONFIRM_LINK},
    "email_changed": {"new_email_hint": "j***@e***.com"},
}
LINKED = {
    "verify_email": VERIFY_LINK,
    "reset_password": RESET_LINK,
    "signup_attempt": RESET_LINK,
    "confirm_new_email": CONFIRM_LINK,
}


def message(template: str = "verify_email", to: str = TO, text: str = f"Open {VERIFY_LINK}\n") -> EmailMessage:
    return EmailMessage(to=to, subject="Subject", text=text, html="<p>html</p>", template=template)


@pytest.fixture
def smtp() -> Iterator[SmtpCapture]:
    with smtp_capture() as capture:
        yield capture


@pytest.fixture
def refused_port() -> Iterator[int]:
    # Bound but never listening: connecting is refused at once, and no other test can take the port.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


async def send_via_smtp(url: str, template: str = "verify_email", **backend_options: Any) -> bool:
    mailer = Mailer(SmtpEmailBackend(url, SENDER, **backend_options))
    try:
        return await mailer.send(TO, template, **CONTEXTS[template])
    finally:
        await mailer.close()


# --- templates --------------------------------------------------------------------------------------


def test_every_template_the_app_uses_has_a_context_here() -> None:
    assert set(CONTEXTS) == set(TEMPLATES)


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_renders_a_subject_a_text_and_an_html_part_naming_the_app(template: str) -> None:
    subject, text, html = render(template, **CONTEXTS[template])
    assert subject.strip()
    assert "Kindred" in text
    assert "Kindred" in html
    assert html.lstrip().startswith("<!DOCTYPE html>")


@pytest.mark.parametrize("template", TEMPLATES)
def test_subject_is_one_header_line(template: str) -> None:
    subject, _, _ = render(template, **CONTEXTS[template])
    assert "\n" not in subject
    assert subject == subject.strip()


@pytest.mark.parametrize("template", sorted(LINKED))
def test_linked_templates_carry_the_link_in_text_and_html(template: str) -> None:
    _, text, html = render(template, **CONTEXTS[template])
    assert LINKED[template] in text
    assert f'href="{LINKED[template]}"' in html


def test_html_part_escapes_a_script_in_the_display_name() -> None:
    _, _, html = render("verify_email", link=VERIFY_LINK, display_name="<script>alert(1)</script>")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_text_part_shows_the_display_name_verbatim() -> None:
    _, text, _ = render("verify_email", link=VERIFY_LINK, display_name="Zoë <3 & co")
    assert "Hi Zoë <3 & co," in text


def test_html_part_escapes_an_attribute_breaking_link() -> None:
    _, _, html = render("verify_email", link='http://x/?token=a"onclick="evil()')
    assert 'onclick="evil()' not in html


def test_reset_password_says_the_link_lasts_30_minutes() -> None:
    _, text, html = render("reset_password", link=RESET_LINK)
    assert "30 minutes" in text
    assert "30 minutes" in html


def test_signup_attempt_tells_the_owner_to_sign_in_and_offers_a_reset() -> None:
    _, text, _ = render("signup_attempt", reset_link=RESET_LINK)
    assert "already have an account" in text
    assert "sign in" in text
    assert RESET_LINK in text


def test_signup_attempt_links_the_sign_in_page_when_given_one() -> None:
    login_link = "http://localhost:3000/login"
    _, text, html = render("signup_attempt", reset_link=RESET_LINK, login_link=login_link)
    assert login_link in text
    assert f'href="{login_link}"' in html


def test_password_changed_says_what_to_do_if_it_was_not_them() -> None:
    _, text, html = render("password_changed")
    for part in (text, html):
        assert "wasn't you" in part
        assert "reset your password" in part
        assert "support" in part


def test_email_changed_shows_the_masked_hint_and_never_the_new_address() -> None:
    new_address = "jordan.lee@example.org"
    _, text, html = render("email_changed", new_email_hint=mask_email(new_address))
    assert "j***@e***.org" in text
    assert "j***@e***.org" in html
    assert new_address not in text + html
    assert "jordan" not in text + html


def test_render_refuses_a_missing_link_instead_of_sending_an_empty_one() -> None:
    with pytest.raises(UndefinedError):
        render("verify_email")


def test_render_refuses_an_unknown_template() -> None:
    with pytest.raises(ValueError, match="unknown email template"):
        render("../../settings")


def test_app_name_is_always_in_the_context() -> None:
    subject, _, _ = render("reset_password", link=RESET_LINK)
    assert subject == "Reset your Kindred password"


# --- mask_email -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        ("jane@example.com", "j***@e***.com"),
        ("Jordan.Lee@Mail.Example.co.uk", "J***@M***.uk"),
        ("x@localhost", "x***@l***"),
        ("  a@b.io ", "a***@b***.io"),
        ("not-an-address", "***"),
        ("@example.com", "***"),
        ("", "***"),
    ],
)
def test_mask_email_keeps_only_first_letters_and_the_top_level_domain(address: str, masked: str) -> None:
    assert mask_email(address) == masked


# --- console backend --------------------------------------------------------------------------------


async def test_console_backend_prints_recipient_subject_and_text_to_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    backend = ConsoleEmailBackend()
    await backend.send(message())
    captured = capsys.readouterr()
    assert f"To: {TO}" in captured.err
    assert "Subject: Subject" in captured.err
    assert VERIFY_LINK in captured.err
    assert captured.out == ""


async def test_console_backend_writes_to_the_stream_it_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    stream = io.StringIO()
    await ConsoleEmailBackend(stream=stream).send(message())
    assert VERIFY_LINK in stream.getvalue()
    assert capsys.readouterr().err == ""


# --- memory backend ---------------------------------------------------------------------------------


async def test_memory_backend_sent_to_returns_only_that_addresses_messages() -> None:
    backend = MemoryEmailBackend()
    await backend.send(message(to=TO))
    await backend.send(message(to="someone.else@example.com"))
    await backend.send(message(to="JANE.DOE@example.com", template="reset_password"))
    assert [m.template for m in backend.sent_to(TO)] == ["verify_email", "reset_password"]


async def test_memory_backend_last_returns_the_newest_message_of_a_template() -> None:
    backend = MemoryEmailBackend()
    await backend.send(message(text="first token=one"))
    await backend.send(message(template="reset_password", text="reset token=two"))
    await backend.send(message(text="second token=three"))
    assert backend.last(TO).text == "second token=three"
    assert backend.last(TO, "reset_password").text == "reset token=two"


async def test_memory_backend_last_raises_when_nothing_matches() -> None:
    backend = MemoryEmailBackend()
    await backend.send(message())
    with pytest.raises(LookupError):
        backend.last(TO, "reset_password")
    with pytest.raises(LookupError):
        backend.last("nobody@example.com")


async def test_memory_backend_clear_empties_the_outbox() -> None:
    backend = MemoryEmailBackend()
    await backend.send(message())
    backend.clear()
    assert backend.outbox == []


async def test_token_from_extracts_the_token_of_the_rendered_link() -> None:
    backend = MemoryEmailBackend()
    assert await Mailer(backend).send(TO, "reset_password", link=RESET_LINK)
    assert backend.token_from(backend.last(TO, "reset_password")) == TOKEN


def test_token_from_decodes_a_percent_encoded_token() -> None:
    assert MemoryEmailBackend.token_from(message(text="http://x/verify-email?a=1&token=a%2Bb%3D&b=2")) == "a+b="


def test_token_from_raises_when_the_message_has_no_link() -> None:
    _, text, _ = render("password_changed")
    with pytest.raises(LookupError):
        MemoryEmailBackend.token_from(message(template="password_changed", text=text))


# --- SMTP backend against a real server -------------------------------------------------------------


async def test_smtp_delivers_to_the_recipient_from_the_sender_address(smtp: SmtpCapture) -> None:
    assert await send_via_smtp(smtp.url())
    [received] = smtp.messages
    assert received.rcpt_tos == (TO,)
    assert received.mail_from == "no-reply@kindred.test"


async def test_smtp_message_is_multipart_alternative_with_text_then_html(smtp: SmtpCapture) -> None:
    await send_via_smtp(smtp.url())
    mime = smtp.messages[0].message
    assert mime.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mime.iter_parts()] == ["text/plain", "text/html"]


async def test_smtp_message_carries_the_link_in_both_parts(smtp: SmtpCapture) -> None:
    await send_via_smtp(smtp.url())
    received = smtp.messages[0]
    assert VERIFY_LINK in received.part("text/plain")
    assert f'href="{VERIFY_LINK}"' in received.part("text/html")


async def test_smtp_message_has_from_to_subject_date_and_message_id_headers(smtp: SmtpCapture) -> None:
    await send_via_smtp(smtp.url())
    mime = smtp.messages[0].message
    assert mime["From"] == SENDER
    assert mime["To"] == TO
    assert mime["Subject"] == "Confirm your email for Kindred"
    assert mime["Date"].datetime is not None
    assert mime["Message-ID"].startswith("<") and mime["Message-ID"].endswith("@kindred.test>")


async def test_each_smtp_message_gets_its_own_message_id(smtp: SmtpCapture) -> None:
    await send_via_smtp(smtp.url())
    await send_via_smtp(smtp.url())
    first, second = (captured.message["Message-ID"] for captured in smtp.messages)
    assert first != second


async def test_smtp_signs_in_with_the_url_decoded_credentials_from_the_url() -> None:
    user, password = "mailer@kindred.test", "p@ss:w/rd%?"
    with smtp_capture(users={user: password}) as server:
        assert await send_via_smtp(server.url(user, password))
        assert server.auth_attempts == [(user, True)]
        assert server.messages[0].login == user


async def test_smtp_without_credentials_does_not_authenticate(smtp: SmtpCapture) -> None:
    await send_via_smtp(smtp.url())
    assert smtp.messages[0].login is None


async def test_smtp_with_wrong_credentials_is_a_failed_send_not_an_exception() -> None:
    with smtp_capture(users={"mailer": "right"}) as server:
        assert await send_via_smtp(server.url("mailer", "wrong")) is False
        # The client may try more than one mechanism; every attempt used the URL's (wrong) password.
        assert server.auth_attempts
        assert set(server.auth_attempts) == {("mailer", False)}
        assert server.messages == []


async def test_plain_smtp_url_does_not_upgrade_even_when_the_server_offers_starttls() -> None:
    tls = self_signed_tls()
    with smtp_capture(starttls=tls.server) as server:
        assert await send_via_smtp(server.url(), tls_context=tls.client)
        assert server.messages[0].tls is False


async def test_starttls_flag_upgrades_the_connection_before_sending() -> None:
    tls = self_signed_tls()
    with smtp_capture(starttls=tls.server, users={"mailer": "secret"}) as server:
        assert await send_via_smtp(server.url("mailer", "secret", query="starttls=1"), tls_context=tls.client)
        assert server.messages[0].tls is True
        assert server.messages[0].login == "mailer"


async def test_starttls_flag_fails_against_a_server_without_starttls(smtp: SmtpCapture) -> None:
    assert await send_via_smtp(smtp.url(query="starttls=1")) is False
    assert smtp.messages == []


async def test_smtps_url_delivers_over_implicit_tls() -> None:
    tls = self_signed_tls()
    with smtp_capture(implicit_tls=tls.server) as server:
        assert await send_via_smtp(server.url(scheme="smtps"), tls_context=tls.client)
        assert server.messages[0].tls is True


async def test_smtps_refuses_a_server_certificate_it_does_not_trust() -> None:
    tls = self_signed_tls()
    with smtp_capture(implicit_tls=tls.server) as server:
        # No tls_context: the system trust store does not know the test certificate.
        assert await send_via_smtp(server.url(scheme="smtps")) is False
        assert server.messages == []


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://relay.example.com", ("relay.example.com", 25, None, None, False, False)),
        ("smtp://relay.example.com:2525?starttls=1", ("relay.example.com", 2525, None, None, False, True)),
        ("smtp://relay.example.com?starttls=1", ("relay.example.com", 587, None, None, False, True)),
        ("smtps://u%40x:p%3Aw%40d@mail.example.com", ("mail.example.com", 465, "u@x", "p:w@d", True, False)),
        ("smtp://user:@relay.example.com:25", ("relay.example.com", 25, "user", "", False, False)),
    ],
)
def test_parse_smtp_url_reads_host_port_decoded_credentials_and_tls_mode(url: str, expected: tuple[Any, ...]) -> None:
    config = parse_smtp_url(url)
    assert (
        config.hostname,
        config.port,
        config.username,
        config.password,
        config.use_tls,
        config.start_tls,
    ) == expected


@pytest.mark.parametrize("url", ["http://relay.example.com", "smtp://", "relay.example.com:25"])
def test_smtp_backend_refuses_a_malformed_url_at_construction(url: str) -> None:
    with pytest.raises(ValueError):
        SmtpEmailBackend(url, SENDER)


# --- Mailer -----------------------------------------------------------------------------------------


async def test_mailer_renders_and_hands_the_message_to_the_backend() -> None:
    backend = MemoryEmailBackend()
    assert await Mailer(backend).send(TO, "confirm_new_email", link=CONFIRM_LINK) is True
    sent = backend.last(TO, "confirm_new_email")
    assert sent.subject == "Confirm your new email address"
    assert CONFIRM_LINK in sent.text
    assert CONFIRM_LINK in sent.html


async def test_mailer_logs_email_sent_with_only_the_template() -> None:
    with capture_logs() as logs:
        await Mailer(MemoryEmailBackend()).send(TO, "verify_email", link=VERIFY_LINK)
    assert logs == [{"event": "email.sent", "template": "verify_email", "log_level": "info"}]


async def test_mailer_returns_false_when_the_smtp_server_is_unreachable(refused_port: int) -> None:
    assert await send_via_smtp(f"smtp://127.0.0.1:{refused_port}") is False


async def test_mailer_logs_email_failed_with_template_and_error_type(refused_port: int) -> None:
    with capture_logs() as logs:
        await send_via_smtp(f"smtp://127.0.0.1:{refused_port}", "reset_password")
    assert logs == [
        {
            "event": "email.failed",
            "template": "reset_password",
            "error": "SMTPConnectError",
            "log_level": "error",
        }
    ]


async def test_mailer_failure_log_holds_no_address_link_or_token(refused_port: int) -> None:
    with capture_logs() as logs:
        await send_via_smtp(f"smtp://127.0.0.1:{refused_port}", "reset_password")
    logged = repr(logs)
    assert logs
    for secret in (TO, "jane", RESET_LINK, TOKEN):
        assert secret not in logged


async def test_mailer_gives_up_on_a_server_that_never_answers_within_the_timeout() -> None:
    # Listening (the kernel completes the handshake) but never accepting, so no greeting ever comes.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"smtp://127.0.0.1:{silent.getsockname()[1]}"
        with capture_logs() as logs:
            sent = await asyncio.wait_for(send_via_smtp(url, timeout=0.3), timeout=5)
    assert sent is False
    assert logs[0]["event"] == "email.failed"
    assert logs[0]["error"].endswith("TimeoutError")


async def test_mailer_returns_false_and_logs_when_the_template_context_is_incomplete() -> None:
    backend = MemoryEmailBackend()
    with capture_logs() as logs:
        assert await Mailer(backend).send(TO, "verify_email") is False
    assert backend.outbox == []
    assert logs == [
        {"event": "email.failed", "template": "verify_email", "error": "UndefinedError", "log_level": "error"}
    ]


async def test_mailer_refuses_a_recipient_that_would_inject_headers(smtp: SmtpCapture) -> None:
    mailer = Mailer(SmtpEmailBackend(smtp.url(), SENDER))
    assert await mailer.send(f"{TO}\r\nBcc: attacker@example.com", "verify_email", link=VERIFY_LINK) is False
    assert smtp.messages == []


class _RecordingBackend:
    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.closed = False

    async def send(self, message: EmailMessage) -> None:
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        self.closed = True


async def test_mailer_does_not_swallow_cancellation() -> None:
    with pytest.raises(asyncio.CancelledError):
        await Mailer(_RecordingBackend(asyncio.CancelledError())).send(TO, "password_changed")


async def test_mailer_close_closes_its_backend() -> None:
    backend = _RecordingBackend()
    await Mailer(backend).close()
    assert backend.closed is True


# --- create_email_backend ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "backend_type"),
    [("console", ConsoleEmailBackend), ("memory", MemoryEmailBackend), ("smtp", SmtpEmailBackend)],
)
def test_create_email_backend_builds_the_named_backend(kind: str, backend_type: type) -> None:
    backend = create_email_backend(kind, smtp_url="smtp://relay.example.com:25", sender=SENDER)
    assert isinstance(backend, backend_type)
    assert isinstance(backend, EmailBackend)


def test_create_email_backend_accepts_the_settings_enum() -> None:
    from kindred.settings import EmailBackend as EmailBackendSetting

    backend = create_email_backend(EmailBackendSetting.memory, smtp_url=None, sender=SENDER)
    assert isinstance(backend, MemoryEmailBackend)


def test_create_email_backend_requires_an_smtp_url_for_smtp() -> None:
    with pytest.raises(ValueError, match="SMTP_URL"):
        create_email_backend("smtp", smtp_url=None, sender=SENDER)


def test_create_email_backend_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown email backend"):
        create_email_backend("carrier-pigeon", smtp_url=None, sender=SENDER)
