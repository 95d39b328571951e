"""Who must not get an email, on top of what the engine already decides.

The engine keeps control-group contacts away from every channel and, for the `email` channel,
drops contacts flagged `email_unsubscribed` or with `consent_email: no`, and those on the
campaign's suppression list (`eligibility.ContactGate`). `EmailSuppression.reason` repeats the per-contact
checks (a connector must be safe on its own) and adds what only the email channel knows:

- no sendable address: none, a SHA-256 digest (pre-hashed export), or not `local@domain`;
- no recorded consent when the campaign sets `require_consent` (EU-style opt-in);
- hard bounces: the campaign's `bounces` file (contact_id and/or email, like the suppression list) and the
  `email_bounces` table (`record_bounce`, and every 550/551/553 the relay gave this channel);
- one-click and mailto unsubscribes received since the CRM export (`email_unsubscribes`).

It returns a reason string (counted as "suppressed") or None, the shape of the `eligibility_veto` hook, so the
lead can plug it in as that hook for the email platform or call it from the connector.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from ..pipeline.suppression import SuppressionList, email_key
from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind, is_sha256_hex
from ..state.database import Database
from .ledger import chunks
from .unsubscribe import UnsubscribeLedger

SCHEMA = """
CREATE TABLE IF NOT EXISTS email_bounces (
    email_sha256 TEXT PRIMARY KEY, contact_id TEXT, code INTEGER, detail TEXT, at REAL NOT NULL
) WITHOUT ROWID;
"""
#: Reply codes that say the mailbox does not exist or cannot take mail: suppress the address from now on.
HARD_BOUNCE_CODES = frozenset({550, 551, 553})
_SENDABLE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def sendable_address(contact: Contact) -> str | None:
    """The contact's email address if one can be sent to (trimmed), else None."""
    email = (contact.identifiers.get(IdentifierKind.EMAIL) or "").strip()
    if not email or is_sha256_hex(email) or not _SENDABLE.match(email):
        return None
    return email


def is_hard_bounce(code: int | None, detail: str) -> bool:
    """A refusal that says the address is bad (550/551/553), not a policy block (enhanced status 5.7.x)."""
    return code in HARD_BOUNCE_CODES and "5.7." not in detail


def record_bounce(db: Database, email: str, contact_id: str | None, code: int | None, detail: str) -> None:
    """Remember a hard bounce (from a DSN processor, or the relay's 5xx); the address is stored hashed."""
    db.apply_schema(SCHEMA)
    db.execute(
        "INSERT INTO email_bounces VALUES (?, ?, ?, ?, ?) ON CONFLICT (email_sha256) DO UPDATE SET "
        "contact_id=excluded.contact_id, code=excluded.code, detail=excluded.detail, at=excluded.at",
        (email_key(email), contact_id, code, detail[:300], time.time()),
    )


class EmailSuppression:
    """Per-contact email suppression for one campaign run."""

    def __init__(
        self, db: Database, bounce_list: SuppressionList | None = None, require_consent: bool = False
    ) -> None:
        """Build it once per run.

        Args:
            db: the state database connection (reads `email_bounces` and `email_unsubscribes`).
            bounce_list: the campaign's `bounces` file, loaded with `SuppressionList.load(config.bounces, base)`.
            require_consent: treat "consent not recorded" as no consent.
        """
        self.db = db
        db.apply_schema(SCHEMA)
        self.unsubscribes = UnsubscribeLedger(db)
        self.bounce_list = bounce_list
        self.require_consent = require_consent

    def reason(self, contact: Contact) -> str | None:
        """Why this contact gets no email, or None."""
        return self.reasons([contact])[contact.contact_id]

    def reasons(self, contacts: Sequence[Contact]) -> dict[str, str | None]:
        """`reason` for many contacts, with one query per table and `CHUNK` contacts (the channel's batches)."""
        static = {c.contact_id: self._static_reason(c) for c in contacts}
        ask = [c for c in contacts if static[c.contact_id] is None]
        unsubscribed = self.unsubscribes.unsubscribed([c.contact_id for c in ask])
        keys = {c.contact_id: email_key(sendable_address(c) or "") for c in ask}
        bounces = self._bounces(sorted(set(keys.values())))
        for contact in ask:
            cid = contact.contact_id
            if cid in unsubscribed:
                static[cid] = "unsubscribed (one-click or mailto)"
            elif self.bounce_list is not None and self.bounce_list.reason_for(contact) is not None:
                static[cid] = "bounced (bounce list)"
            elif keys[cid] in bounces:
                code = bounces[keys[cid]]
                static[cid] = f"bounced ({code})" if code else "bounced"
        return static

    def _static_reason(self, contact: Contact) -> str | None:
        """The reasons the contact itself gives (no database)."""
        attributes = contact.attributes
        if attributes.email_unsubscribed:
            return "unsubscribed from email"
        consent = attributes.consent.email_marketing
        if consent is False or (consent is None and self.require_consent):
            return "no email marketing consent"
        if sendable_address(contact) is None:
            return "no sendable email address"
        return None

    def _bounces(self, keys: Sequence[str]) -> dict[str, int | None]:
        found: dict[str, int | None] = {}
        for chunk in chunks(keys):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT email_sha256, code FROM email_bounces WHERE email_sha256 IN ({marks})",
                                   list(chunk))
            found.update(rows)
        return found
