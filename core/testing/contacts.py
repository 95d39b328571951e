"""Contacts the kit pushes, and the identifier vectors every platform agrees on.

`sample_contact` fills every identifier kind a connector declares with a value that is valid for the contact's
country and distinct per contact: two contacts sharing a match key would be one person to the platform, and the
engine would (rightly) keep one of them off it. Values are written as CRM exports write them (mixed case, spaces,
punctuation), so the connector's normalization has work to do.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import uuid
from collections.abc import Callable, Iterable

import phonenumbers

from ..sdk.contact import Attributes, Consent, Contact
from ..sdk.identifier_kinds import IdentifierKind
from .scenarios import IdentifierVector

_NAMESPACE = uuid.UUID("5b0f6d0e-58a4-4c0e-9a51-8f0a2f4c1d00")
#: City, state (None where the country has none worth sending) and postal code per country.
_PLACES: dict[str, tuple[str, str | None, str]] = {
    "US": ("San Francisco", "California", "94103-1234"),
    "GB": ("London", None, "SW1A 1AA"),
    "DE": ("Berlin", "Berlin", "10115"),
    "FR": ("Paris", None, "75001"),
    "CA": ("Toronto", "Ontario", "M5V 2T6"),
    "AU": ("Sydney", "New South Wales", "2000"),
}
_ELSEWHERE = ("Capital City", None, "1000")
_FIRST_XANDR_UID = 5727816213491965430  # the example id in Xandr's legacy BSS file format page


def letters(index: int) -> str:
    """A letters-only tag for an index ("Ba", "Bb", ...): names lose digits in most platforms' normalization."""
    digits = ""
    number = index
    while True:
        number, rest = divmod(number, 26)
        digits = chr(ord("a") + rest) + digits
        if number == 0:
            break
    return ("b" + digits).capitalize()


@functools.lru_cache(maxsize=64)
def _example_mobile(region: str) -> phonenumbers.PhoneNumber:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    example = example or phonenumbers.example_number_for_type("US", phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None, "libphonenumber has no example mobile number for the US"
    return example


def sample_phone(index: int, country: str) -> str:
    """A valid mobile number of the country, international format, distinct for the first 10,000 indexes.

    Built from libphonenumber's example number for the region, so it is valid wherever the library is.
    """
    example = _example_mobile(country.upper())
    national = phonenumbers.national_significant_number(example)
    candidate = f"+{example.country_code} {national[:-4]} {index % 10_000:04d}"
    parsed = phonenumbers.parse(candidate, None)
    if not phonenumbers.is_valid_number(parsed):
        return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def sample_identifiers(
    index: int, country: str = "US", kinds: Iterable[IdentifierKind] | None = None
) -> dict[IdentifierKind, str]:
    """One valid, contact-specific value for each identifier kind (every kind when `kinds` is None)."""
    wanted = set(IdentifierKind) if kinds is None else set(kinds)
    city, state, postal = _PLACES.get(country.upper(), _ELSEWHERE)
    token = hashlib.sha256(f"kit-{index}".encode()).digest()
    makers: dict[IdentifierKind, Callable[[], str]] = {
        IdentifierKind.EMAIL: lambda: f" Kit.Contact{index:05d}@Example.com ",
        IdentifierKind.PHONE: lambda: sample_phone(index, country),  # the one slow value: only when asked
        IdentifierKind.FIRST_NAME: lambda: "Jane",
        IdentifierKind.LAST_NAME: lambda: f"Kit{letters(index)}",
        IdentifierKind.CITY: lambda: city,
        IdentifierKind.STATE: lambda: state or "",
        IdentifierKind.ZIP: lambda: postal,
        IdentifierKind.COUNTRY: lambda: country.lower(),
        IdentifierKind.GENDER: lambda: ("Female", "Male")[index % 2],
        IdentifierKind.DATE_OF_BIRTH: lambda: f"{1950 + index % 50}-{1 + index % 12:02d}-{1 + index % 28:02d}",
        IdentifierKind.MAID: lambda: str(uuid.uuid5(_NAMESPACE, f"maid-{index}")).upper(),
        IdentifierKind.EXTERNAL_ID: lambda: f"crm-{index:06d}",
        IdentifierKind.UID2: lambda: base64.b64encode(token).decode(),
        IdentifierKind.RAMPID: lambda: "XY" + base64.b32encode(token).decode().rstrip("=")[:68],
        IdentifierKind.XANDR_UID: lambda: str(_FIRST_XANDR_UID + index),
    }
    values = {kind: make() for kind, make in makers.items() if kind in wanted}
    return {kind: value for kind, value in values.items() if value}


def sample_contact(
    index: int,
    kinds: Iterable[IdentifierKind],
    country: str = "US",
    *,
    consent: bool | None = True,
    funnel_stage: str | None = None,
) -> Contact:
    """Contact number `index` with a valid value for each of `kinds` (the country is always set).

    Consent defaults to granted: platforms that refuse UK/EEA records without it (Amazon) or split requests by
    it (Google) then take every contact, which is what the standard tests need; override for consent tests.
    """
    values = sample_identifiers(index, country, {*kinds, IdentifierKind.COUNTRY})
    attributes = Attributes(
        funnel_stage=funnel_stage,
        consent=Consent(ad_user_data=consent, ad_personalization=consent, email_marketing=consent),
    )
    return Contact(
        contact_id=f"kit-{index:05d}",
        identifiers=values,
        attributes=attributes,
    )


def restrict(contact: Contact, kinds: Iterable[IdentifierKind]) -> Contact:
    """The contact with only the given identifier kinds (and its country)."""
    keep = {*kinds, IdentifierKind.COUNTRY}
    return contact.model_copy(update={"identifiers": {k: v for k, v in contact.identifiers.items() if k in keep}})


#: Values every platform treats alike. Platform-specific vectors (phone formats, name rules) come from the
#: author's `identifier_vectors`, because platforms genuinely differ there (E.164 with or without "+").
DEFAULT_VECTORS: tuple[IdentifierVector, ...] = (
    IdentifierVector(kind=IdentifierKind.EMAIL, raw=" Jane.Doe@Example.COM ", normalized="jane.doe@example.com",
                     note="every platform trims and lower-cases e-mail addresses before hashing"),
    IdentifierVector(kind=IdentifierKind.EMAIL, raw="jane.doe(at)example", normalized=None, note="no @"),
    IdentifierVector(kind=IdentifierKind.PHONE, raw="call 555-CALL-NOW", normalized=None, note="letters"),
    IdentifierVector(kind=IdentifierKind.MAID, raw="not-a-device-id-00", normalized=None, note="not a UUID"),
    IdentifierVector(kind=IdentifierKind.MAID, raw="00000000-0000-0000-0000-000000000000", normalized=None,
                     note="limit-ad-tracking devices report the zero id; it identifies nobody"),
    IdentifierVector(kind=IdentifierKind.XANDR_UID, raw="12ab34cd", normalized=None, note="not a 64-bit integer"),
    IdentifierVector(kind=IdentifierKind.COUNTRY, raw="Atlantis", normalized=None, note="not ISO 3166-1"),
    *(
        IdentifierVector(kind=kind, raw="   ", normalized=None, note="blank")
        for kind in (IdentifierKind.FIRST_NAME, IdentifierKind.LAST_NAME, IdentifierKind.CITY, IdentifierKind.STATE,
                     IdentifierKind.ZIP, IdentifierKind.EXTERNAL_ID, IdentifierKind.UID2, IdentifierKind.RAMPID)
    ),
)
