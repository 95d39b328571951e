"""A real local SMTP server (aiosmtpd) that records what arrives and can be scripted to refuse or drop."""

from __future__ import annotations

import email
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from crm_activation.campaign.email_settings import EmailCredentials
from crm_activation.sdk.contact import Attributes, Consent, Contact
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.state.database import Database, open_database

COUPON_KEY = "test-coupon-key-0123456789abcdef"
UNSUB_KEY = "test-unsubscribe-key-0123456789ab"
NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Arrival:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    """aiosmtpd handler: stores envelopes; `script` maps a recipient to replies to give its RCPT first."""

    arrivals: list[Arrival] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)
    rcpt_attempts: dict[str, int] = field(default_factory=dict)
    script: dict[str, list[str]] = field(default_factory=dict)
    mail_script: list[str] = field(default_factory=list)
    data_script: list[str] = field(default_factory=list)  # "DROP": keep the message, hang up instead of replying
    on_data: Callable[[Arrival], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if not any(s is session for s in self.sessions):
            self.sessions.append(session)
        if self.mail_script:
            reply = self.mail_script.pop(0)
            if reply == "DROP":
                server.transport.close()
                return "421 dropped"
            return reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_attempts[address] = self.rcpt_attempts.get(address, 0) + 1
        replies = self.script.get(address)
        if replies:
            return replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        arrival = Arrival(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.lock:
            self.arrivals.append(arrival)
        if self.on_data is not None:
            self.on_data(arrival)
        if self.data_script and self.data_script.pop(0) == "DROP":
            server.transport.close()  # accepted, but the reply never leaves: the client cannot know
        return "250 Message accepted for delivery"

    def by_recipient(self, address: str) -> list[Arrival]:
        return [a for a in self.arrivals if address in a.rcpt_tos]


@dataclass
class SmtpServer:
    recorder: Recorder
    controller: Controller
    port: int

    def credentials(self, **changes: Any) -> EmailCredentials:
        values: dict[str, Any] = {
            "smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_starttls": False, "smtp_timeout": 10,
            "coupon_key": SecretStr(COUPON_KEY), "unsubscribe_key": SecretStr(UNSUB_KEY),
        }
        values.update(changes)
        return EmailCredentials(**values)


def _start(recorder: Recorder, **kwargs: Any) -> SmtpServer:
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    return SmtpServer(recorder, controller, port)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = _start(Recorder())
    yield server
    server.controller.stop()


def authenticator(user: bytes, password: bytes):
    def check(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login == user and auth_data.password == password
        return AuthResult(success=ok, handled=False)

    return check


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SmtpServer]]:
    """Start servers with options (auth, TLS); all are stopped after the test."""
    servers: list[SmtpServer] = []

    def start(**kwargs: Any) -> SmtpServer:
        server = _start(Recorder(), **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.controller.stop()


def make_contact(contact_id: str, stage: str = "awareness", **attributes: Any) -> Contact:
    identifiers = {IdentifierKind.EMAIL: f"{contact_id}@example.com", IdentifierKind.FIRST_NAME: "Ada",
                   IdentifierKind.LAST_NAME: "Lovelace", IdentifierKind.COUNTRY: "US"}
    identifiers.update(attributes.pop("identifiers", {}))
    attributes.setdefault("consent", Consent(email_marketing=True))
    return Contact(contact_id=contact_id, identifiers=identifiers,
                   attributes=Attributes(funnel_stage=stage, **attributes))


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Iterator[Database]:
    """A state database connection as the engine opens it, on each backend."""
    target = tmp_path / "state.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    conn = open_database(target)
    yield conn
    conn.close()


def kill_process(pid: int) -> Callable[[Arrival], None]:
    """An on_data hook that SIGKILLs the sending process when the message arrives (before the 250 reply)."""

    def kill(_: Arrival) -> None:
        os.kill(pid, signal.SIGKILL)

    return kill
