"""Turning a contact into one platform's payload: normalize, hash, and decide whether it is reachable there.

Each connector declares an `IdentifierRule` per identifier kind; this module applies them. Values that
arrive already SHA-256 hashed pass through untouched when the platform wants a hash. A contact with none of
the platform's match keys is ineligible there, which is an outcome, not an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .connector import IdentifierRule, Member
from .errors import InvalidIdentifier
from .identifiers import PERSONAL_KINDS, IdentifierKind, is_sha256_hex
from .models import Contact
from .normalization import sha256_hex


@dataclass(frozen=True, slots=True)
class IdentifierProblem:
    """An identifier value a platform's rule refused (the reason never contains the value)."""

    kind: IdentifierKind
    reason: str


@dataclass(frozen=True, slots=True)
class PayloadOutcome:
    """The member to push, or None with the reason the contact is unreachable on the platform."""

    member: Member | None
    problems: tuple[IdentifierProblem, ...]
    ineligible_reason: str | None = None


class PayloadBuilder:
    """Applies one connector's identifier rules; caches normalizations shared with other platforms per contact.

    The cache is keyed by (normalizer, raw value) and cleared per contact, so Meta and LinkedIn sharing an e-mail
    rule hash the address once, and memory stays flat however many contacts stream through.
    """

    def __init__(self, platform: str, rules: Sequence[IdentifierRule], match_keys: frozenset[IdentifierKind]):
        self.platform = platform
        self.rules = tuple(rules)
        self.match_keys = match_keys
        #: payload fields that identify a person on their own (used to detect people in both holdout groups)
        self.match_fields = frozenset(rule.key for rule in self.rules if rule.kind in match_keys)

    def build(self, contact: Contact, cache: dict[tuple[object, str, bool], str | InvalidIdentifier]) -> PayloadOutcome:
        """The contact's member for this platform (normalized, hashed) or the reason it has none."""
        fields: dict[str, str] = {}
        problems: list[IdentifierProblem] = []
        matched = False
        country = contact.country
        for rule in self.rules:
            raw = contact.identifiers.get(rule.kind)
            if not raw:
                continue
            value = self._value(rule, raw, country, cache)
            if isinstance(value, InvalidIdentifier):
                problems.append(IdentifierProblem(rule.kind, str(value)))
                continue
            fields[rule.key] = value
            matched = matched or rule.kind in self.match_keys
        if not matched:
            keys = ", ".join(sorted(str(kind) for kind in self.match_keys))
            return PayloadOutcome(None, tuple(problems), f"no usable identifier among: {keys}")
        consent = {
            "ad_user_data": contact.attributes.consent.ad_user_data,
            "ad_personalization": contact.attributes.consent.ad_personalization,
        }
        return PayloadOutcome(Member(contact.contact_id, fields, country, consent), tuple(problems))

    @staticmethod
    def _value(
        rule: IdentifierRule,
        raw: str,
        country: str | None,
        cache: dict[tuple[object, str, bool], str | InvalidIdentifier],
    ) -> str | InvalidIdentifier:
        if rule.hashed and rule.kind in PERSONAL_KINDS and is_sha256_hex(raw):
            return raw.lower()  # the CRM hashed it already; hashing again would make it unmatchable
        key = (rule.normalize, raw, rule.hashed)
        cached = cache.get(key)
        if cached is not None:
            return cached
        try:
            normalized = rule.normalize(raw, country)
            result: str | InvalidIdentifier = sha256_hex(normalized) if rule.hashed else normalized
        except InvalidIdentifier as problem:
            result = problem
        cache[key] = result
        return result
