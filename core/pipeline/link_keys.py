"""The keys that say two CRM records are one person: every strong identifier in each spelling a platform matches.

Identity clustering (`clusters.py`) links two records when they share any of these keys. A key is the
identifier kind's prefix and a canonical value, so an external id "42" never meets a contact id "42":

- `c:` the CRM contact id (a duplicate row of one id is the same person, even when it is rejected);
- `e:` the SHA-256 of the address in every form a platform hashes it (trimmed and lower-cased as Meta and LinkedIn
  do; Amazon's `a-z0-9.@-` form; Google's form without Gmail dots and tags) and of its mailbox
  (`email_mailbox`: `+tag` and Gmail dots gone). A pre-hashed address is its own key, so it meets the clear
  address whose hash it is, whichever of those forms the CRM hashed;
- `p:` the SHA-256 of the phone in E.164 with and without the `+` (Google hashes the first, Meta and Amazon
  the second), parsed once with the contact's country or the campaign's `default_country`; a pre-hashed
  phone is its own key;
- `m:` the mobile ad id as 32 lower-case hex digits (hyphens and case are spelling, not identity);
- `x:`, `u:`, `r:`, `a:` the external id, UID2, RampID and Xandr id, trimmed; a placeholder (`N/A`, `null`,
  `unknown`, `0`, `-`: a word CRMs write for "none", or only zeros and punctuation) is no key, since every record
  carrying it would otherwise become one person with one holdout draw.

Names, addresses and countries are not keys: many people share them. A value a rule refuses (an invalid
phone) simply adds no key; the record still links through its other identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping

from ..sdk.errors import InvalidIdentifier
from ..sdk.identifier_kinds import IdentifierKind, is_sha256_hex
from ..sdk.normalization import (
    email_amazon,
    email_google,
    email_mailbox,
    email_trimmed_lower,
    phone_e164,
    sha256_hex,
)

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
#: What CRMs write in an id field for "no value" (compared case-folded), besides zeros and punctuation alone.
PLACEHOLDERS = frozenset({"n/a", "na", "none", "null", "nil", "unknown", "undefined", "nan", "missing", "tbd"})
_ZEROS_OR_PUNCTUATION = re.compile(r"[\W0_]*")


def is_placeholder(value: str) -> bool:
    """Whether a trimmed id value stands for "no value" (`N/A`, `null`, `0`, `000-000`, `-`) rather than an id."""
    return value.casefold() in PLACEHOLDERS or _ZEROS_OR_PUNCTUATION.fullmatch(value) is not None

#: Every spelling of an address some platform hashes, plus its mailbox (see the module docstring).
EMAIL_FORMS: tuple[Callable[[str, str | None], str], ...] = (
    email_trimmed_lower,
    email_amazon,
    email_google,
    email_mailbox,
)
_VERBATIM_PREFIX = {
    IdentifierKind.EXTERNAL_ID: "x:",
    IdentifierKind.UID2: "u:",
    IdentifierKind.RAMPID: "r:",
    IdentifierKind.XANDR_UID: "a:",
}


def maid_key(value: str) -> str | None:
    """A mobile ad id as 32 lower-case hex digits, or None when it is not one (or is the all-zero opt-out id)."""
    digits = value.strip().lower().replace("-", "")
    if not _HEX32.match(digits) or digits == "0" * 32:
        return None
    return digits


_NOT_PLAIN = re.compile(r"[^a-z0-9.@-]")
_GOOGLE_MAIL = ("@gmail.com", "@googlemail.com")


def _plain_address(value: str) -> str | None:
    """The address trimmed and lower-cased, when each of `EMAIL_FORMS` spells it so; else None.

    That is the case of most addresses: only `a-z 0-9 . @ -` (Amazon's form keeps nothing else), so no `+tag`
    (the mailbox form drops it), and not at gmail.com or googlemail.com (whose dots Google's and the mailbox
    form drop). Checking this costs one regex, against four normalizations and shape checks.
    """
    try:
        address = email_trimmed_lower(value, None)
    except InvalidIdentifier:
        return None
    if _NOT_PLAIN.search(address) or address.endswith(_GOOGLE_MAIL):
        return None
    return address


class LinkKeys:
    """Computes a record's link keys; one per run (the campaign's default country fills in missing countries)."""

    def __init__(self, default_country: str | None = None) -> None:
        self.default_country = default_country

    def keys(self, contact_id: str | None, identifiers: Mapping[IdentifierKind, str]) -> Iterator[str]:
        """Every link key of one record (may repeat a key; the caller links them all to the record)."""
        if contact_id:
            yield "c:" + contact_id
        email = identifiers.get(IdentifierKind.EMAIL)
        if email:
            yield from self._hashed_forms("e:", email, EMAIL_FORMS, None)
        phone = identifiers.get(IdentifierKind.PHONE)
        if phone:
            country = identifiers.get(IdentifierKind.COUNTRY) or self.default_country
            yield from self._phone_keys(phone, country)
        maid = identifiers.get(IdentifierKind.MAID)
        if maid:
            digits = maid_key(maid)
            if digits is not None:
                yield "m:" + digits
        for kind, prefix in _VERBATIM_PREFIX.items():
            value = identifiers.get(kind)
            if value and not is_placeholder(value := value.strip()):
                yield prefix + value

    @staticmethod
    def _hashed_forms(
        prefix: str, value: str, forms: tuple[Callable[[str, str | None], str], ...], country: str | None
    ) -> Iterator[str]:
        if is_sha256_hex(value.strip()):
            yield prefix + value.strip().lower()
            return
        if forms is EMAIL_FORMS:
            plain = _plain_address(value)
            if plain is not None:  # every form of it is this one spelling
                yield prefix + sha256_hex(plain)
                return
        spelled = set()  # the forms mostly coincide (a plain address is its own mailbox): hash each once
        for form in forms:
            try:
                spelled.add(form(value, country))
            except InvalidIdentifier:
                continue
        for text in spelled:
            yield prefix + sha256_hex(text)

    @staticmethod
    def _phone_keys(value: str, country: str | None) -> Iterator[str]:
        if is_sha256_hex(value.strip()):
            yield "p:" + value.strip().lower()
            return
        try:
            e164 = phone_e164(value, country)
        except InvalidIdentifier:
            return
        yield "p:" + sha256_hex(e164)
        yield "p:" + sha256_hex(e164[1:])
