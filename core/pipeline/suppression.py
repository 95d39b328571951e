"""The suppression list: contacts a campaign must never reach, whatever their segment or consent says.

Rows carry a `contact_id` and/or an `email`, and optionally a `reason`. Emails are matched after trimming and
lower-casing and are kept only as the SHA-256 hex of that form, so the list held in memory is no more
sensitive than a hashed audience; an email that already is a SHA-256 hex digest (a pre-hashed export) is
used as it is. A contact is suppressed when its id or its email matches.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..campaign.schema import SourceConfig
from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind, is_sha256_hex
from .sources import SourceRow, open_rows

_MAX_REASON = 120


def email_key(email: str) -> str:
    """The SHA-256 hex of a trimmed, lower-cased email (or the digest itself, lower-cased, if already hashed)."""
    text = email.strip().lower()
    return text if is_sha256_hex(text) else hashlib.sha256(text.encode("utf-8")).hexdigest()


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


@dataclass
class SuppressionStats:
    """What the list held: rows read, ids and emails listed, rows that had neither (or were malformed)."""

    rows: int = 0
    contact_ids: int = 0
    emails: int = 0
    skipped: int = 0


class SuppressionList:
    """Contact ids and hashed emails never to reach; build it with `SuppressionList.load`."""

    def __init__(self, by_id: dict[str, str], by_email: dict[str, str], stats: SuppressionStats | None = None) -> None:
        self._by_id = by_id
        self._by_email = by_email
        self.stats = stats or SuppressionStats(contact_ids=len(by_id), emails=len(by_email))

    @classmethod
    def from_rows(cls, rows: Iterable[SourceRow]) -> SuppressionList:
        """Build the list from source rows with `contact_id`, `email` and optional `reason` columns."""
        by_id: dict[str, str] = {}
        by_email: dict[str, str] = {}
        reasons: dict[str, str] = {}  # one string object per distinct reason, however many rows share it
        stats = SuppressionStats()
        for row in rows:
            stats.rows += 1
            if row.error is not None:
                stats.skipped += 1
                continue
            contact_id = _text(row.fields.get("contact_id"))
            email = _text(row.fields.get("email"))
            if not contact_id and not email:
                stats.skipped += 1
                continue
            reason = _text(row.fields.get("reason"))[:_MAX_REASON] or "listed"
            reason = reasons.setdefault(reason, f"suppression list: {reason}")
            if contact_id:
                by_id.setdefault(contact_id, reason)
            if email:
                by_email.setdefault(email_key(email), reason)
        stats.contact_ids, stats.emails = len(by_id), len(by_email)
        return cls(by_id, by_email, stats)

    @classmethod
    def load(cls, config: SourceConfig, base_dir: Path) -> SuppressionList:
        """Read the list from its source (CSV, JSON Lines or SQL)."""
        return cls.from_rows(open_rows(config, base_dir))

    def __len__(self) -> int:
        return len(self._by_id) + len(self._by_email)

    def reason_for(self, contact: Contact) -> str | None:
        """`"suppression list: <reason>"` when the contact's id or email is listed, else None."""
        return self.reason_for_values(contact.contact_id, contact.identifiers.get(IdentifierKind.EMAIL))

    def reason_for_values(self, contact_id: str, email: str | None) -> str | None:
        """`reason_for` from a contact's id and raw e-mail address."""
        reason = self._by_id.get(contact_id)
        if reason is None and self._by_email and email:
            reason = self._by_email.get(email_key(email))
        return reason
