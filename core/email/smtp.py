"""The SMTP transport: one reused connection, STARTTLS or implicit TLS, AUTH, retries for transient failures.

Reply classes decide everything (RFC 5321 §4.2.1):

- 250 after DATA: `sent`.
- 4xx (greylisting 451, 421 service closing, 452 storage) and dropped connections: transient. Retried with
  exponential backoff and full jitter (tenacity; `sleep` is injectable so tests take milliseconds), on a new
  connection when the old one dropped. When the retries run out the result is `deferred`: nothing was
  accepted, and the next run sends the message again.
- 5xx to RCPT or DATA (550 no such user, 554 rejected): `failed_permanent` for that recipient, at once, never
  retried. The connection stays open for the next recipient (smtplib sends RSET).
- 5xx to MAIL FROM refuses the bounce address itself, a configuration problem for every message: `FatalError`
  stops the channel instead of burning each contact's step. 535 on AUTH and a missing STARTTLS are
  `ConfigError`.

- A connection dropped (or a reply timed out) after the final "." went out, before the server's reply, is
  ambiguous in SMTP itself: the server may have accepted the message (RFC 5321 §6.1 accepts duplicates over
  loss). That is `in_doubt`, never retried here: the caller keeps the step in doubt, so "at most once" holds
  for drops too. A drop anywhere before the final "." is transient, as above: nothing can have been accepted.
Server replies are stored in the ledger with email addresses masked (replies often quote the recipient).

A run may open several connections (one `SmtpTransport` each, see `parallel.py`). Relays and ESPs cap
connections per client, typically answering 421 at the greeting or refusing the TCP connection; a `spare`
transport therefore does not retry a connection it cannot open but raises `ConnectionUnavailable` at once,
before anything of the message was sent, so that the message goes over another connection instead.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import TYPE_CHECKING, Literal

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from ..campaign.email_settings import EmailCredentials
from ..sdk.errors import ConfigError, CrmActivationError, FatalError
from ..sdk.redaction import remember_secrets
from .message import envelope_bytes

if TYPE_CHECKING:  # annotations only: smtplib's stub types `send` with it (collections.abc has it from 3.12)
    from typing_extensions import Buffer

_ADDRESS = re.compile(r"[^\s<>\"'@,;:]+@[^\s<>\"',;:]+")


def mask_addresses(text: str) -> str:
    """Server replies quote recipients; the ledger and logs must not carry raw addresses."""
    return _ADDRESS.sub("<address>", text)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one message to one recipient."""

    status: Literal["sent", "failed_permanent", "deferred", "in_doubt"]
    code: int | None
    detail: str
    attempts: int


class ConnectionUnavailable(CrmActivationError):
    """A spare connection cannot be opened (the relay limits connections, or refuses them now); nothing was sent."""


class _Transient(Exception):
    def __init__(self, code: int | None, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class _Unreachable(_Transient):
    """The relay cannot be reached at all (connection refused, DNS, TLS handshake)."""


class _TrackedSMTP(smtplib.SMTP):
    """`smtplib.SMTP` that notes when the end of DATA (the final ".") has been handed to the socket."""

    dot_sent = False

    def send(self, s: Buffer | str) -> None:
        """Send, then note the end of the payload: after it, a lost reply means "maybe accepted"."""
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):  # `data()` sends the whole payload in one call
            self.dot_sent = True


class _TrackedSMTPSSL(smtplib.SMTP_SSL):
    """`_TrackedSMTP` over implicit TLS."""

    dot_sent = False

    def send(self, s: Buffer | str) -> None:
        """See `_TrackedSMTP.send`."""
        super().send(s)
        if isinstance(s, bytes) and s.endswith(b"\r\n.\r\n"):
            self.dot_sent = True


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return mask_addresses(" ".join(text.split()))[:300]


class SmtpTransport:
    """Sends messages over one SMTP connection, reconnecting when it drops; use as a context manager."""

    def __init__(
        self,
        credentials: EmailCredentials,
        *,
        max_attempts: int = 4,
        initial_wait: float = 1.0,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        ssl_context: ssl.SSLContext | None = None,
        max_messages_per_connection: int = 500,
        local_hostname: str | None = None,
        spare: bool = False,
    ) -> None:
        """Configure the transport (it connects on the first message).

        Args:
            credentials: relay host, port, TLS mode and login from the environment.
            max_attempts: tries per message for transient failures.
            initial_wait: seconds scale of the exponential backoff.
            max_wait: cap of one wait.
            sleep: how to wait (tests pass a recorder).
            ssl_context: for STARTTLS / implicit TLS; default verifies certificates against the system store.
            max_messages_per_connection: reconnect after this many messages (relays cap messages per session).
            local_hostname: the EHLO name (default: the machine's FQDN).
            spare: one of several connections: when it cannot be opened, raise `ConnectionUnavailable` at once.
        """
        self.credentials = credentials
        self.ssl_context = ssl_context or ssl.create_default_context()
        self.max_messages = max_messages_per_connection
        self.local_hostname = local_hostname
        self.sleep = sleep
        self.spare = spare
        self._retry = dict(
            stop=stop_after_attempt(max_attempts),
            wait=wait_random_exponential(multiplier=initial_wait, max=max_wait),
            retry=retry_if_exception_type(_Transient),
            sleep=sleep,
            reraise=True,
        )
        self._conn: _TrackedSMTP | _TrackedSMTPSSL | None = None
        self._sent_on_conn = 0
        self.connections = 0  # opened so far (reuse is observable)
        remember_secrets(credentials.secret_values())

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection -------------------------------------------------------------------------------------
    def _connect(self) -> _TrackedSMTP | _TrackedSMTPSSL:
        c = self.credentials
        try:
            if c.smtp_ssl:
                conn: _TrackedSMTP | _TrackedSMTPSSL = _TrackedSMTPSSL(
                    c.smtp_host, c.smtp_port, self.local_hostname, timeout=c.smtp_timeout, context=self.ssl_context
                )
            else:
                conn = _TrackedSMTP(c.smtp_host, c.smtp_port, self.local_hostname, timeout=c.smtp_timeout)
            conn.ehlo()
            if c.smtp_starttls:
                conn.starttls(context=self.ssl_context)
                conn.ehlo()
            if c.smtp_username is not None and c.smtp_password is not None:
                conn.login(c.smtp_username.get_secret_value(), c.smtp_password.get_secret_value())
        except smtplib.SMTPAuthenticationError as exc:
            raise ConfigError(f"SMTP relay {c.smtp_host}:{c.smtp_port} refused the login ({exc.smtp_code})") from None
        except smtplib.SMTPNotSupportedError as exc:
            raise ConfigError(f"SMTP relay {c.smtp_host}:{c.smtp_port}: {exc} (STARTTLS or AUTH not offered)") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise _Transient(exc.smtp_code, f"connect: {_text(exc.smtp_error)}") from None
            raise FatalError(f"SMTP relay {c.smtp_host}:{c.smtp_port} refused the session ({exc.smtp_code})") from None
        except (OSError, smtplib.SMTPException) as exc:  # refused, reset, timeout, TLS handshake
            raise _Unreachable(None, f"connect: {type(exc).__name__}: {_text(str(exc))}") from None
        self.connections += 1
        self._sent_on_conn = 0
        return conn

    def connect(self) -> None:
        """Open the connection now unless one is open (`send` opens it on demand).

        Raises:
            ConnectionUnavailable: a spare transport could not connect.
            ConfigError, FatalError: as `send`.
        """
        if self._conn is None or self._conn.sock is None:
            self._drop()
            self._conn = self._open()

    def _open(self) -> _TrackedSMTP | _TrackedSMTPSSL:
        try:
            return self._connect()
        except _Transient as exc:
            if self.spare:
                raise ConnectionUnavailable(f"spare SMTP connection not opened ({exc.detail})") from None
            raise

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """QUIT politely and close."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.quit()
            except (OSError, smtplib.SMTPException):
                conn.close()

    # -- sending ----------------------------------------------------------------------------------------
    def send(
        self,
        message: EmailMessage | bytes,
        envelope_from: str,
        recipient: str,
        on_accepted: Callable[[Delivery], None] | None = None,
    ) -> Delivery:
        """Send one message to one recipient; every outcome but a configuration error is a `Delivery`.

        `on_accepted` is called with the `sent` delivery the moment the relay's 250 to the end of DATA arrives,
        before anything else (the retry loop unwinding, counters, the next message): the caller commits it
        there, which keeps a crash between acceptance and record as unlikely as it can be. An exception it
        raises propagates (the message was accepted but not recorded: the caller's row stays in doubt).

        Raises:
            ConfigError: the relay refused the login or lacks STARTTLS.
            FatalError: the relay refused the bounce address (MAIL FROM 5xx) or the whole session.
        """
        data = message if isinstance(message, bytes) else envelope_bytes(message)
        attempts = 0
        try:
            for attempt in Retrying(**self._retry):  # type: ignore[arg-type]
                with attempt:
                    attempts += 1
                    return self._attempt(data, envelope_from, recipient, attempts, on_accepted)
        except _Unreachable as exc:
            # Not this recipient's problem: every later message would wait through the same retries.
            c = self.credentials
            raise FatalError(f"SMTP relay {c.smtp_host}:{c.smtp_port} unreachable ({exc.detail})") from None
        except _Transient as exc:
            return Delivery("deferred", exc.code, exc.detail, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self,
        data: bytes,
        envelope_from: str,
        recipient: str,
        attempts: int,
        on_accepted: Callable[[Delivery], None] | None,
    ) -> Delivery:
        if self._conn is not None and (self._conn.sock is None or self._sent_on_conn >= self.max_messages):
            self.close() if self._conn.sock is not None else self._drop()
        if self._conn is None:
            self._conn = self._open()
        conn = self._conn
        conn.dot_sent = False
        try:
            conn.sendmail(envelope_from, [recipient], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            return self._refused(code, f"RCPT: {_text(reply)}", attempts)
        except smtplib.SMTPSenderRefused as exc:
            if 400 <= exc.smtp_code < 500:
                self._after_4xx(exc.smtp_code)
                raise _Transient(exc.smtp_code, f"MAIL FROM: {_text(exc.smtp_error)}") from None
            detail = f"{exc.smtp_code} {_text(exc.smtp_error)}"
            raise FatalError(f"the SMTP relay refused the bounce address ({detail})") from None
        except smtplib.SMTPDataError as exc:
            return self._refused(exc.smtp_code, f"DATA: {_text(exc.smtp_error)}", attempts)
        except smtplib.SMTPResponseException as exc:
            return self._refused(exc.smtp_code, _text(exc.smtp_error), attempts)
        except (OSError, smtplib.SMTPException) as exc:  # disconnects, resets, timeouts
            self._drop()
            detail = f"connection: {type(exc).__name__}: {_text(str(exc))}"
            if conn.dot_sent:  # the whole message went out and no reply came: maybe accepted, never retried
                return Delivery("in_doubt", None, f"no reply after the end of DATA ({detail})", attempts)
            raise _Transient(None, detail) from None
        delivery = Delivery("sent", 250, "accepted", attempts)
        if on_accepted is not None:  # first thing after the 250 (see `send`)
            on_accepted(delivery)
        self._sent_on_conn += 1
        return delivery

    def _refused(self, code: int, detail: str, attempts: int) -> Delivery:
        if 400 <= code < 500:
            self._after_4xx(code)
            raise _Transient(code, detail)
        return Delivery("failed_permanent", code, detail, attempts)

    def _after_4xx(self, code: int) -> None:
        if code == 421:  # the server is closing the session; smtplib already closed the socket
            self._drop()
