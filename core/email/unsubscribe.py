"""One-click unsubscribe (RFC 8058): opaque per-contact tokens, the two List-Unsubscribe URIs, the token ledger.

The token is 128 bits of HMAC-SHA256 over (campaign, contact id) with `CRM_ACTIVATION_EMAIL_UNSUBSCRIBE_KEY`,
base64url: it reveals neither the email address nor the contact id, cannot be forged for another contact, and
is the same on every run (a rerun's headers equal the first attempt's). Because an HMAC cannot be inverted,
each token is recorded in `email_unsubscribe_tokens` when its message is claimed; the unsubscribe endpoint
(outside this package: an https handler that accepts the receiver's POST `List-Unsubscribe=One-Click` without
login or redirect) calls `resolve_token` and `record_unsubscribe`, and `EmailSuppression` reads
`email_unsubscribes` on the next run — well inside the 2 days Gmail and Yahoo allow.

The mailto URI carries the token in the subject (`unsubscribe-<token>`), so the mailbox processor can do the
same without trusting the From address.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import SecretStr

from ..state.database import Database

SCHEMA = """
CREATE TABLE IF NOT EXISTS email_unsubscribe_tokens (
    token TEXT PRIMARY KEY, campaign TEXT NOT NULL, contact_id TEXT NOT NULL, issued_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS email_unsubscribes (
    contact_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, source TEXT NOT NULL, at REAL NOT NULL
) WITHOUT ROWID;
"""


def _mac(key: SecretStr, *parts: str) -> bytes:
    message = "\x1f".join(parts).encode("utf-8")
    return hmac.new(key.get_secret_value().encode("utf-8"), message, hashlib.sha256).digest()


def unsubscribe_token(key: SecretStr, campaign: str, contact_id: str) -> str:
    """The opaque token of a contact in a campaign (22 URL-safe characters)."""
    return base64.urlsafe_b64encode(_mac(key, "unsubscribe-v1", campaign, contact_id)[:16]).decode().rstrip("=")


def message_id(key: SecretStr, campaign: str, contact_id: str, stage: str, step: int, domain: str) -> str:
    """The deterministic Message-ID of one step to one contact: `<hex@domain>`.

    Deterministic so that a message re-sent after a crash carries the same id (receivers that deduplicate by
    Message-ID show it once); keyed so it reveals nothing about the contact.
    """
    digest = _mac(key, "message-id-v1", campaign, contact_id, stage, str(step))[:16].hex()
    return f"<{digest}@{domain}>"


@dataclass(frozen=True, slots=True)
class UnsubscribeLinks:
    """The contact's unsubscribe URIs; `header` is the List-Unsubscribe value (https first, then mailto)."""

    token: str
    https: str
    mailto: str

    @property
    def header(self) -> str:
        """`<https://…?t=token>, <mailto:…?subject=unsubscribe-token>`: one line, ASCII only."""
        return f"<{self.https}>, <{self.mailto}>"


def links(key: SecretStr, campaign: str, contact_id: str, url: str, mailbox: str) -> UnsubscribeLinks:
    """Build a contact's links from `EmailConfig.unsubscribe_url` and the bare `unsubscribe_mailbox`."""
    token = unsubscribe_token(key, campaign, contact_id)
    https = f"{url}?t={token}"
    mailto = f"mailto:{quote(mailbox, safe='@')}?subject={quote('unsubscribe-' + token, safe='-_')}"
    return UnsubscribeLinks(token, https, mailto)


class UnsubscribeLedger:
    """Tokens issued and unsubscribes received, in the state database."""

    def __init__(self, db: Database) -> None:
        """Create the tables when missing."""
        self.db = db
        db.apply_schema(SCHEMA)

    def record_token(self, token: str, campaign: str, contact_id: str) -> None:
        """Remember whom a token belongs to (idempotent)."""
        self.db.execute(
            "INSERT INTO email_unsubscribe_tokens VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (token, campaign, contact_id, time.time()),
        )

    def record_tokens(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """`record_token` for many (token, campaign, contact id) at once (the channel's batches)."""
        now = time.time()
        self.db.executemany(
            "INSERT INTO email_unsubscribe_tokens VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            [(token, campaign, cid, now) for token, campaign, cid in rows],
        )

    def unsubscribed(self, contact_ids: Sequence[str]) -> set[str]:
        """The contacts of `contact_ids` that `is_unsubscribed`, in one query per 500."""
        found: set[str] = set()
        for start in range(0, len(contact_ids), 500):
            chunk = contact_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT contact_id FROM email_unsubscribes WHERE contact_id IN ({marks})",
                                   list(chunk))
            found.update(row[0] for row in rows)
        return found

    def resolve_token(self, token: str) -> tuple[str, str] | None:
        """(campaign, contact id) of a token, or None for a token this database never issued."""
        row = self.db.execute(
            "SELECT campaign, contact_id FROM email_unsubscribe_tokens WHERE token=?", (token.strip(),)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def record_unsubscribe(self, token: str, source: str = "one-click") -> bool:
        """Unsubscribe the token's contact from email; False when the token is unknown."""
        owner = self.resolve_token(token)
        if owner is None:
            return False
        self.db.execute(
            "INSERT INTO email_unsubscribes VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
            (owner[1], owner[0], source, time.time()),
        )
        return True

    def is_unsubscribed(self, contact_id: str) -> bool:
        """Whether the contact unsubscribed through a link or the mailto address (from any campaign)."""
        row = self.db.execute("SELECT 1 FROM email_unsubscribes WHERE contact_id=?", (contact_id,)).fetchone()
        return row is not None
