"""Delivery through a real local SMTP server (aiosmtpd), parsed back with Python's email package."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from crm_activation.email.message import build_message
from crm_activation.email.rendering import RenderedMessage, TemplateRenderer
from crm_activation.email.samples import SAMPLE_CONTACTS, sample_config, sample_context
from crm_activation.email.smtp import SmtpTransport
from crm_activation.email.unsubscribe import links, message_id
from crm_activation.sdk.errors import ConfigError, FatalError

from .conftest import UNSUB_KEY, authenticator

KEY = SecretStr(UNSUB_KEY)
CONFIG = sample_config()
RENDERER = TemplateRenderer()


def message_for(recipient: str, sample: str = "hostile", step: int = 1):
    unsubscribe = links(KEY, "wb", recipient, CONFIG.unsubscribe_url, CONFIG.unsubscribe_mailbox)
    context = {**sample_context(SAMPLE_CONTACTS[sample], CONFIG), "unsubscribe_url": unsubscribe.https}
    rendered = RENDERER.render_message("we-miss-you", "warm", context)
    mid = message_id(KEY, "wb", recipient, "awareness", step, CONFIG.from_domain)
    msg = build_message(rendered, from_address=CONFIG.from_address, to_address=recipient, message_id=mid,
                        unsubscribe=unsubscribe, to_name='Ann "<b>" Lee', feedback_id="wb:awareness-1:warm:fh",
                        date=datetime(2026, 11, 2, 15, 0, tzinfo=UTC))
    return msg, unsubscribe, mid


def transport(server, sleeps: list[float] | None = None, **kwargs) -> SmtpTransport:
    record = sleeps if sleeps is not None else []
    return SmtpTransport(server.credentials(**kwargs.pop("credentials", {})), sleep=record.append,
                         initial_wait=0.01, max_wait=0.05, **kwargs)


def test_message_arrives_with_headers_parts_and_escaping(smtp_server):
    msg, unsubscribe, mid = message_for("ann@example.com")
    with transport(smtp_server) as smtp:
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "ann@example.com")
    assert (delivery.status, delivery.code, delivery.attempts) == ("sent", 250, 1)
    [arrival] = smtp_server.recorder.arrivals
    assert arrival.mail_from == "bounces@mail.example.com" and arrival.rcpt_tos == ["ann@example.com"]
    got = arrival.message
    assert got["Message-ID"] == mid and mid.endswith("@mail.example.com>")
    assert got["From"] == "Freelance Hub <winback@mail.example.com>"
    assert got["To"].addresses[0].addr_spec == "ann@example.com"
    assert got["To"].addresses[0].display_name == 'Ann "<b>" Lee'
    assert got["Date"] == "Mon, 02 Nov 2026 15:00:00 +0000"
    assert got["Subject"].startswith("<script>alert(1)</script>")  # literal text, it is a header
    assert got["List-Unsubscribe"] == (
        f"<https://mail.example.com/unsubscribe?t={unsubscribe.token}>, "
        f"<mailto:unsubscribe@mail.example.com?subject=unsubscribe-{unsubscribe.token}>"
    )
    assert got["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert got["Precedence"] == "bulk" and got["Auto-Submitted"] is None
    assert got["Feedback-ID"] == "wb:awareness-1:warm:fh"
    # one unfolded line, no encoded-words: exactly what DKIM signs and receivers parse
    raw_line = next(line for line in arrival.data.split(b"\r\n") if line.startswith(b"List-Unsubscribe:"))
    assert raw_line == b"List-Unsubscribe: " + got["List-Unsubscribe"].encode() and b"=?" not in raw_line
    assert got.get_content_type() == "multipart/alternative"
    parts = list(got.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" and p["MIME-Version"] is None for p in parts)
    text, html = parts[0].get_content(), parts[1].get_content()
    assert "<script>alert(1)</script>" in text and "{{ 7*7 }}" in text
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert unsubscribe.https in text and unsubscribe.https in html  # the visible link too
    assert max(len(line) for line in arrival.data.split(b"\r\n")) <= 998


def test_token_is_opaque():
    _, unsubscribe, mid = message_for("ann@example.com")
    for value in (unsubscribe.token, unsubscribe.https, unsubscribe.mailto, mid):
        assert "ann" not in value.lower() and "example.com>" not in value.replace("mail.example.com", "")


def test_connection_is_reused_across_messages(smtp_server):
    with transport(smtp_server) as smtp:
        for i in range(5):
            msg, _, _ = message_for(f"r{i}@example.com", "typical", step=i)
            assert smtp.send(msg, CONFIG.bounce_envelope, f"r{i}@example.com").status == "sent"
        assert smtp.connections == 1
    assert len(smtp_server.recorder.sessions) == 1 and len(smtp_server.recorder.arrivals) == 5


def test_transient_4xx_is_retried_with_backoff(smtp_server):
    smtp_server.recorder.script["grey@example.com"] = ["451 4.7.1 Greylisted, try again later"]
    sleeps: list[float] = []
    msg, _, _ = message_for("grey@example.com", "typical")
    with transport(smtp_server, sleeps) as smtp:
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "grey@example.com")
    assert (delivery.status, delivery.attempts) == ("sent", 2) and len(sleeps) == 1
    assert smtp_server.recorder.rcpt_attempts["grey@example.com"] == 2
    assert len(smtp_server.recorder.by_recipient("grey@example.com")) == 1


def test_transient_failures_that_persist_are_deferred_not_looped(smtp_server):
    smtp_server.recorder.script["busy@example.com"] = ["452 4.2.2 Mailbox full"] * 10
    sleeps: list[float] = []
    msg, _, _ = message_for("busy@example.com", "typical")
    with transport(smtp_server, sleeps, max_attempts=3) as smtp:
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "busy@example.com")
    assert (delivery.status, delivery.code, delivery.attempts) == ("deferred", 452, 3) and len(sleeps) == 2
    assert smtp_server.recorder.rcpt_attempts["busy@example.com"] == 3


def test_permanent_5xx_is_recorded_once_and_the_connection_goes_on(smtp_server):
    smtp_server.recorder.script["gone@example.com"] = ["550 5.1.1 <gone@example.com>: Recipient address rejected"]
    sleeps: list[float] = []
    with transport(smtp_server, sleeps) as smtp:
        msg, _, _ = message_for("gone@example.com", "typical")
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "gone@example.com")
        msg2, _, _ = message_for("next@example.com", "typical")
        assert smtp.send(msg2, CONFIG.bounce_envelope, "next@example.com").status == "sent"
        assert smtp.connections == 1
    assert (delivery.status, delivery.code, delivery.attempts) == ("failed_permanent", 550, 1) and sleeps == []
    assert "gone@example.com" not in delivery.detail and "Recipient address rejected" in delivery.detail
    assert smtp_server.recorder.rcpt_attempts["gone@example.com"] == 1


def test_dropped_connection_is_reopened(smtp_server):
    smtp_server.recorder.mail_script = ["DROP"]
    sleeps: list[float] = []
    msg, _, _ = message_for("drop@example.com", "typical")
    with transport(smtp_server, sleeps) as smtp:
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "drop@example.com")
        assert smtp.connections == 2
    assert delivery.status == "sent" and delivery.attempts == 2
    assert len(smtp_server.recorder.sessions) == 2 and len(smtp_server.recorder.arrivals) == 1


def test_a_drop_after_the_end_of_data_is_in_doubt_and_not_retried(smtp_server):
    """The relay kept the message and hung up before replying: a retry could deliver it twice."""
    smtp_server.recorder.data_script = ["DROP"]
    accepted: list[object] = []
    msg, _, _ = message_for("hangup@example.com", "typical")
    with transport(smtp_server, []) as smtp:
        delivery = smtp.send(msg, CONFIG.bounce_envelope, "hangup@example.com", accepted.append)
        assert (delivery.status, delivery.attempts, accepted) == ("in_doubt", 1, [])
        assert "no reply after the end of DATA" in delivery.detail
        assert smtp.send(msg, CONFIG.bounce_envelope, "hangup@example.com", accepted.append).status == "sent"
        assert smtp.connections == 2 and len(accepted) == 1  # the next message reconnects and is recorded
    assert len(smtp_server.recorder.arrivals) == 2


def test_421_closes_and_reconnects(smtp_server):
    smtp_server.recorder.mail_script = ["421 4.3.2 Service shutting down"]
    msg, _, _ = message_for("x@example.com", "typical")
    with transport(smtp_server) as smtp:
        assert smtp.send(msg, CONFIG.bounce_envelope, "x@example.com").status == "sent"
        assert smtp.connections == 2


def test_refused_bounce_address_stops_the_channel(smtp_server):
    smtp_server.recorder.mail_script = ["553 5.7.1 Sender address rejected"]
    msg, _, _ = message_for("x@example.com", "typical")
    with transport(smtp_server) as smtp, pytest.raises(FatalError, match="bounce address"):
        smtp.send(msg, CONFIG.bounce_envelope, "x@example.com")


def test_unreachable_relay_stops_the_channel_after_retries():
    from crm_activation.campaign.email_settings import EmailCredentials

    from .conftest import free_port

    creds = EmailCredentials(smtp_host="127.0.0.1", smtp_port=free_port(), smtp_starttls=False, smtp_timeout=2,
                             unsubscribe_key=KEY)
    sleeps: list[float] = []
    msg, _, _ = message_for("x@example.com", "typical")
    with (
        SmtpTransport(creds, sleep=sleeps.append, max_attempts=3, initial_wait=0.01) as smtp,
        pytest.raises(FatalError, match=r"unreachable.*ConnectionRefusedError"),
    ):
        smtp.send(msg, CONFIG.bounce_envelope, "x@example.com")
    assert len(sleeps) == 2  # retried, then gave up for the whole run rather than per recipient


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_auth_over_plain_connection(start_smtp):
    # aiosmtpd refuses AUTH before TLS unless told otherwise; this test checks the login itself, the STARTTLS
    # test below checks AUTH the way production uses it.
    server = start_smtp(authenticator=authenticator(b"mailer", b"s3cret-pass"), auth_required=True,
                        auth_require_tls=False)
    creds = {"smtp_username": SecretStr("mailer"), "smtp_password": SecretStr("s3cret-pass")}
    msg, _, _ = message_for("a@example.com", "typical")
    with transport(server, credentials=creds) as smtp:
        assert smtp.send(msg, CONFIG.bounce_envelope, "a@example.com").status == "sent"
    bad = {"smtp_username": SecretStr("mailer"), "smtp_password": SecretStr("wrong-password")}
    with transport(server, credentials=bad) as smtp, pytest.raises(ConfigError) as caught:
        smtp.send(msg, CONFIG.bounce_envelope, "a@example.com")
    assert "wrong-password" not in str(caught.value) and "refused the login" in str(caught.value)
    assert len(server.recorder.arrivals) == 1


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    openssl = shutil.which("openssl")
    if openssl is None:  # the `cryptography` package is not a dependency; Debian ships the openssl tool
        pytest.skip("openssl command not found: STARTTLS test needs it to make a throwaway certificate")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(folder / "key.pem"),
         "-out", str(folder / "cert.pem")],
        check=True, capture_output=True,
    )
    return folder / "cert.pem", folder / "key.pem"


def test_starttls_and_auth(start_smtp, self_signed):
    cert, key = self_signed
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = start_smtp(tls_context=server_ctx, require_starttls=True, auth_required=True,
                        authenticator=authenticator(b"mailer", b"s3cret-pass"))
    client_ctx = ssl.create_default_context(cafile=str(cert))  # verifies the certificate and the host name
    creds = {"smtp_username": SecretStr("mailer"), "smtp_password": SecretStr("s3cret-pass"), "smtp_starttls": True}
    msg, _, _ = message_for("tls@example.com", "typical")
    with transport(server, credentials=creds, ssl_context=client_ctx) as smtp:
        assert smtp.send(msg, CONFIG.bounce_envelope, "tls@example.com").status == "sent"
    assert len(server.recorder.arrivals) == 1
    untrusted = ssl.create_default_context()  # the system store does not know the throwaway certificate
    with (
        transport(server, credentials=creds, ssl_context=untrusted, max_attempts=1) as smtp,
        pytest.raises(FatalError, match="SSLCertVerificationError"),  # a relay we cannot trust is not used
    ):
        smtp.send(msg, CONFIG.bounce_envelope, "tls@example.com")


def test_message_builder_refuses_header_injection():
    rendered = RenderedMessage("Hi", "text", "<p>html</p>")
    unsubscribe = links(KEY, "wb", "c", CONFIG.unsubscribe_url, CONFIG.unsubscribe_mailbox)
    with pytest.raises(ValueError):
        build_message(rendered, from_address=CONFIG.from_address, to_address="not-an-address", message_id="<a@b>",
                      unsubscribe=unsubscribe)
    with pytest.raises(ValueError):
        build_message(rendered, from_address=CONFIG.from_address, to_address="a@b.example",
                      message_id="<a@b>\r\nBcc: x@y", unsubscribe=unsubscribe)
    msg = build_message(rendered, from_address=CONFIG.from_address, to_address="a@b.example", message_id="<a@b>",
                        unsubscribe=unsubscribe, to_name="Eve\r\nBcc: x@y.example")
    assert msg["Bcc"] is None and "\n" not in str(msg["To"])
