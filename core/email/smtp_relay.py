"""A local SMTP relay for `run --sandbox` and `crm-activation sandbox`.

A real SMTP server (aiosmtpd) that keeps what it receives, so a demo or a test can read what the campaign sent.
"""

from __future__ import annotations

import email
import threading
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class ReceivedMail:
    """One message as the relay accepted it."""

    mail_from: str
    recipients: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        """The parsed message."""
        parsed = email.message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class _Inbox:
    received: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.original_content))
        with self.lock:
            self.received.append(mail)
        return "250 Message accepted for delivery"


class SmtpSandbox:
    """A plain-SMTP relay on loopback that accepts every message and keeps it in memory."""

    platform = "email"

    def __init__(self, port: int = 0) -> None:
        self.inbox = _Inbox()
        self._controller = Controller(self.inbox, hostname="127.0.0.1", port=port or _free_port())
        self.host = "127.0.0.1"
        self.port = self._controller.port

    @property
    def received(self) -> list[ReceivedMail]:
        """Every message received so far."""
        with self.inbox.lock:
            return list(self.inbox.received)

    @property
    def url(self) -> str:
        """Where it listens, for people."""
        return f"smtp://{self.host}:{self.port}"

    def start(self) -> SmtpSandbox:
        """Start serving in a background thread."""
        self._controller.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._controller.stop()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
