"""Coupon codes: unguessable, unique per (campaign, contact), and recorded so redemptions can be matched.

A code is `PREFIX-XXXX-XXXX-XXXX`: 60 bits of HMAC-SHA256 over (campaign, contact id), keyed with
`CRM_ACTIVATION_EMAIL_COUPON_KEY`, in Crockford base32 (no I, L, O or U, so a code read over the phone or
typed from a screenshot survives; `normalize_code` folds the look-alikes back). Without the key nobody can
derive a contact's code or produce a valid one: guessing succeeds with probability issued / 2^60 per try
(about 1e-12 for a million codes), far below what a redemption endpoint's rate limit lets through.

Why HMAC rather than random codes: the code is a pure function of its inputs, so a rerun after a crash issues
the same code the crashed run may already have emailed. The `coupons` ledger is still the source of truth: the
first code issued to a contact is the one returned forever (even if the key is later rotated), `code` is
UNIQUE (a collision — about 4e-7 for a million codes — fails loudly instead of merging two contacts), and
`lookup(code)` gives the contact when a redemption comes back.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import SecretStr

from ..sdk.errors import ConfigError
from ..state.database import Database, IntegrityError

SCHEMA = """
CREATE TABLE IF NOT EXISTS coupons (
    campaign TEXT NOT NULL, contact_id TEXT NOT NULL, code TEXT NOT NULL UNIQUE, issued_at REAL NOT NULL,
    PRIMARY KEY (campaign, contact_id)
);
"""
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
GROUPS = 3
GROUP_SIZE = 4


@dataclass(frozen=True, slots=True)
class CouponRecord:
    """A code as the ledger holds it."""

    campaign: str
    contact_id: str
    code: str
    issued_at: float


def _encode(digest: bytes, chars: int) -> str:
    number = int.from_bytes(digest, "big")
    bits = len(digest) * 8
    return "".join(ALPHABET[(number >> (bits - 5 * (i + 1))) & 31] for i in range(chars))


def normalize_code(code: str) -> str:
    """Canonical form of a code as a customer typed it: `wb100 0abc-def1 234x` → `WB100-0ABC-DEF1-234X`.

    Upper case, look-alikes (O, I, L) folded into digits, dashes only between the groups.
    """
    compact = "".join(code.upper().split()).replace("-", "")
    split = len(compact) - GROUPS * GROUP_SIZE
    if split < 1:
        return compact
    prefix, body = compact[:split], compact[split:].translate(_LOOKALIKES)
    return "-".join([prefix] + [body[i : i + GROUP_SIZE] for i in range(0, len(body), GROUP_SIZE)])


def derive_code(key: bytes, campaign: str, contact_id: str, prefix: str) -> str:
    """`PREFIX-XXXX-XXXX-XXXX` from the first 60 bits of HMAC-SHA256(key, campaign, contact id)."""
    message = f"coupon-v1\x1f{campaign}\x1f{contact_id}".encode()
    body = _encode(hmac.new(key, message, hashlib.sha256).digest()[:8], GROUPS * GROUP_SIZE)
    return "-".join([prefix] + [body[i : i + GROUP_SIZE] for i in range(0, len(body), GROUP_SIZE)])


class CouponIssuer:
    """Issues and records the codes of one campaign in a state database connection."""

    def __init__(self, db: Database, campaign: str, prefix: str, key: SecretStr | None) -> None:
        """Create the ledger table when missing.

        Args:
            db: the state database connection (`StateStore.db`).
            campaign: the campaign id.
            prefix: the readable prefix (`CouponConfig.prefix`).
            key: the HMAC key from the environment.

        Raises:
            ConfigError: no key.
        """
        if key is None or not key.get_secret_value():
            raise ConfigError("coupons need CRM_ACTIVATION_EMAIL_COUPON_KEY (an HMAC key, 16+ characters)")
        self.db = db
        self.campaign = campaign
        self.prefix = prefix
        self._key = key.get_secret_value().encode("utf-8")
        db.apply_schema(SCHEMA)

    def code_for(self, contact_id: str) -> str:
        """The code HMAC derives for a contact (pure; `issue` is what records it)."""
        return derive_code(self._key, self.campaign, contact_id, self.prefix)

    def issue(self, contact_id: str) -> str:
        """The contact's code: the one recorded before, or a new one recorded now."""
        return self.issue_many([contact_id])[contact_id]

    def issue_many(self, contact_ids: Iterable[str]) -> dict[str, str]:
        """Codes for many contacts in one transaction (a daily run issues them in bulk)."""
        return {cid: code for cid, (code, _) in self.issue_records(contact_ids).items()}

    def issue_records(self, contact_ids: Iterable[str]) -> dict[str, tuple[str, float]]:
        """(code, issued_at) of many contacts in one transaction: recorded before, or issued and recorded now."""
        ids = list(dict.fromkeys(contact_ids))
        codes: dict[str, tuple[str, float]] = {}
        now = time.time()
        with self.db.transaction():
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.db.execute(
                    f"SELECT contact_id, code, issued_at FROM coupons WHERE campaign=? AND contact_id IN ({marks})",
                    [self.campaign, *chunk],
                )
                codes.update((cid, (code, issued)) for cid, code, issued in rows)
            new = [(self.campaign, cid, self.code_for(cid), now) for cid in ids if cid not in codes]
            try:
                self.db.executemany("INSERT INTO coupons VALUES (?, ?, ?, ?)", new)
            except IntegrityError as exc:  # two contacts, one code: never merge them silently
                raise ConfigError(f"coupon code collision in campaign {self.campaign}: {exc}") from None
            codes.update((cid, (code, issued)) for _, cid, code, issued in new)
        return codes

    def issued_at(self, contact_id: str) -> float | None:
        """When the contact's code was first issued (coupon expiry counts from there, stable across reruns)."""
        row = self.db.execute(
            "SELECT issued_at FROM coupons WHERE campaign=? AND contact_id=?", (self.campaign, contact_id)
        ).fetchone()
        return row[0] if row else None


def lookup(db: Database, code: str) -> CouponRecord | None:
    """Who a redeemed code was issued to (any campaign), or None for an unknown code."""
    if not db.has_table("coupons"):  # no coupon was ever issued in this database
        return None
    row = db.execute(
        "SELECT campaign, contact_id, code, issued_at FROM coupons WHERE code=?", (normalize_code(code),)
    ).fetchone()
    return CouponRecord(*row) if row else None
