"""Building the MIME message of one email as current bulk-sender requirements expect.

- `multipart/alternative`: text/plain first, text/html last (the preferred part), UTF-8, quoted-printable so the
  message is 7-bit clean for any relay and no line exceeds 78 characters.
- `Message-ID` (deterministic, see `unsubscribe.message_id`), `Date`, `From` (aligned with the DKIM d= domain by
  configuration), `To`, `Subject`, optional `Reply-To`.
- RFC 8058 one-click unsubscribe: `List-Unsubscribe: <https://…?t=token>, <mailto:…?subject=unsubscribe-token>`
  and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`. The List-Unsubscribe value is written verbatim on
  one line: Python's default folding turns a long mailto URI into RFC 2047 encoded-words, which receivers do
  not decode inside angle brackets (the same class of bug broke DKIM at a relay for nodemailer). The relay's
  DKIM signature must cover both headers (configure its h= list); this package does not sign.
- `Precedence: bulk`: keeps vacation responders and auto-replies from answering a campaign (RFC 3834 §2).
  Deliberately no `Auto-Submitted`: RFC 3834 defines it for automatic responses and notifications, and some
  systems refuse to forward or act on mail carrying it; marketing mail is bulk, not auto-submitted.
- `Feedback-ID` when configured: Gmail Postmaster Tools' feedback loop aggregates complaints per campaign and
  step with it (`campaign:stage-step:variant:sender`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

from .rendering import RenderedMessage
from .unsubscribe import UnsubscribeLinks

#: SMTP line endings; headers set with `set_raw` are never refolded (List-Unsubscribe), the others fold at 78.
SMTP_POLICY = policy.SMTP.clone(refold_source="none")
_RAW_SAFE = re.compile(r"^[\x21-\x7e ]{1,900}$")


def _raw(message: EmailMessage, name: str, value: str) -> None:
    if not _RAW_SAFE.match(value):  # set_raw bypasses the policy's checks: only printable ASCII on one line
        raise ValueError(f"{name} must be printable ASCII on one line")
    message.set_raw(name, value)


def recipient_header(address: str, name: str = "") -> str:
    """`"Display Name" <address>` with the name quoted as needed and stripped of line breaks."""
    display = " ".join(name.split())[:80]
    local, _, domain = parseaddr(address)[1].rpartition("@")
    if not local or not domain:
        raise ValueError("not an email address")
    return str(Address(display_name=display, username=local, domain=domain))


def build_message(
    rendered: RenderedMessage,
    *,
    from_address: str,
    to_address: str,
    message_id: str,
    unsubscribe: UnsubscribeLinks,
    to_name: str = "",
    reply_to: str | None = None,
    feedback_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """The MIME message for one recipient.

    Raises:
        ValueError: an address or header value cannot be written (the caller records it per recipient).
    """
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = from_address
    message["To"] = recipient_header(to_address, to_name)
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date or datetime.now(UTC))
    _raw(message, "Message-ID", message_id)
    _raw(message, "List-Unsubscribe", unsubscribe.header)
    _raw(message, "List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
    _raw(message, "Precedence", "bulk")
    if feedback_id:
        _raw(message, "Feedback-ID", feedback_id)
    message.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # add_alternative copies it into the part; it belongs to the top level only
    return message


def envelope_bytes(message: EmailMessage) -> bytes:
    """The message as the DATA command sends it (CRLF line endings)."""
    return message.as_bytes(policy=SMTP_POLICY)
