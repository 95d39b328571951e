"""Turning a contact into one platform's payload: normalize, hash, and decide whether it is reachable there.

Each connector declares an `IdentifierRule` per identifier kind; this module applies them. Values that
arrive already SHA-256 hashed pass through untouched when the platform wants a hash of the whole value; a rule
that needs the value in clear (an unhashed field, or a part of the value such as Meta's FI) cannot use them. A
contact with none of the platform's match keys is ineligible there, which is an outcome, not an error.

Country-dependent normalization (phone numbers, US states and ZIP codes) uses the contact's country or, when the
contact has none, the campaign's `default_country`; the member keeps the contact's own country, which alone
decides eligibility, consent regimes and the country fields sent. (A contact without a country is offered no
channel, so in a run the default shapes the payloads computed for every contact: the control group's, which keep
test contacts sharing their identifiers off a platform.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..sdk.contact import Contact
from ..sdk.errors import InvalidIdentifier
from ..sdk.identifier_kinds import PERSONAL_KINDS, IdentifierKind, is_sha256_hex
from ..sdk.normalization import sha256_hex
from ..sdk.types import IdentifierRule, Member


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
    """Applies one connector's identifier rules, with a cache shared by every platform's builder.

    The cache is keyed by (normalizer, raw value, country, hashed): Meta and LinkedIn sharing an e-mail rule hash
    an address once, and low-cardinality values (countries, states, cities) are hashed once per run, not once
    per contact. `NormalizationCache` bounds its size so memory stays flat however many contacts stream by.
    """

    def __init__(
        self,
        platform: str,
        rules: Sequence[IdentifierRule],
        match_keys: frozenset[IdentifierKind],
        default_country: str | None = None,
    ):
        self.platform = platform
        self.rules = tuple(rules)
        self.match_keys = match_keys
        #: the campaign's `default_country`: the region normalization assumes for a contact without a country
        self.default_country = default_country
        #: payload fields that identify a person on their own (used to detect people in both holdout groups)
        self.match_fields = frozenset(rule.key for rule in self.rules if rule.kind in match_keys)
        #: per rule, decided once: the rule, its kind, and whether it is a match key
        self._plan = tuple((rule, rule.kind, rule.kind in match_keys) for rule in self.rules)

    def build(self, contact: Contact, cache: NormalizationCache) -> PayloadOutcome:
        """The contact's member for this platform (normalized, hashed) or the reason it has none."""
        consent = contact.attributes.consent
        return self.build_values(
            contact.contact_id, contact.identifiers, contact.country,
            (consent.ad_user_data, consent.ad_personalization), cache,
        )

    def build_values(
        self,
        contact_id: str,
        identifiers: Mapping[IdentifierKind, str],
        country: str | None,
        ad_consent: tuple[bool | None, bool | None],
        cache: NormalizationCache,
    ) -> PayloadOutcome:
        """`build` from a contact's values: its raw identifiers, country and (ad user data, personalization)."""
        fields: dict[str, str] = {}
        problems: list[IdentifierProblem] = []
        matched = False
        region = country or self.default_country
        known = cache.values
        for rule, kind, matches in self._plan:
            raw = identifiers.get(kind)
            if not raw:
                continue
            # The cache first: it holds every value computed (a pre-hashed one is never put in, see `_value`).
            value = known.get((rule.normalize, raw, region, rule.hashed))
            if value is None:
                value = self._value(rule, raw, region, cache)
                if value is None:
                    continue
            if type(value) is not str:
                problems.append(IdentifierProblem(kind, str(value)))
                continue
            fields[rule.key] = value
            matched = matched or matches
        if not matched:
            keys = ", ".join(sorted(str(kind) for kind in self.match_keys))
            return PayloadOutcome(None, tuple(problems), f"no usable identifier among: {keys}")
        consent = {"ad_user_data": ad_consent[0], "ad_personalization": ad_consent[1]}
        return PayloadOutcome(Member(contact_id, fields, country, consent), tuple(problems))

    def _value(
        self, rule: IdentifierRule, raw: str, country: str | None, cache: NormalizationCache
    ) -> str | InvalidIdentifier | None:
        """The field's value, the reason the rule refused the raw value, or None when the field is left out."""
        if rule.kind in PERSONAL_KINDS and is_sha256_hex(raw):
            if rule.hashed and rule.whole_value:
                return raw.lower()  # the CRM hashed it already; hashing again would make it unmatchable
            if rule.hashed:
                return None  # a part of the value (Meta's FI, DOBY): nothing to take from a digest, nothing wrong
            # Never "not of the form local@domain.tld": the value is fine, this platform needs it in clear.
            return InvalidIdentifier(f"{rule.kind} is already SHA-256 hashed; {self.platform} needs it in clear")
        key = (rule.normalize, raw, country, rule.hashed)
        cached = cache.get(key)
        if cached is not None:
            return cached
        try:
            normalized = rule.normalize(raw, country)
            result: str | InvalidIdentifier = sha256_hex(normalized) if rule.hashed else normalized
        except InvalidIdentifier as problem:
            result = problem
        cache.put(key, result)
        return result


class NormalizationCache:
    """Normalized (and hashed) values by (normalizer, raw value, country, hashed); emptied when it grows too big.

    Emptying wholesale is cruder than LRU but costs nothing per lookup, and the values worth caching (a few
    hundred countries, states and cities, and a contact's e-mail hashed by several platforms' alike rules) are
    back in the cache within a handful of contacts. The limit bounds memory (about 350 bytes an entry) in every
    worker process: e-mails and phones are mostly distinct, so a larger cache would only hold more of them.
    """

    def __init__(self, limit: int = 50_000) -> None:
        self.limit = limit
        self.values: dict[tuple[object, str, str | None, bool], str | InvalidIdentifier] = {}

    def get(self, key: tuple[object, str, str | None, bool]) -> str | InvalidIdentifier | None:
        """The cached result, or None."""
        return self.values.get(key)

    def put(self, key: tuple[object, str, str | None, bool], value: str | InvalidIdentifier) -> None:
        """Remember a result."""
        if len(self.values) >= self.limit:
            self.values.clear()
        self.values[key] = value
