"""Identifier normalization rules, platform-neutral and named by what they do.

Each rule has the `Normalizer` signature `(value, country) -> str`: `country` is the contact's ISO 3166-1
alpha-2 code in upper case, or None. A rule raises `InvalidIdentifier` with a human reason when a value is
unusable; the reason never repeats the value, because the value is personal data and reasons end up in the
rejects file and in logs. Connectors pick the rules their platform documents and cite the source; the
docstring of each rule says which platforms use it and where the rule comes from.

Hashing is separate (`sha256_hex`): the engine normalizes, then hashes when the connector's rule says so.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata

import phonenumbers

from .errors import InvalidIdentifier

__all__ = [
    "alnum_lower_ascii",
    "city_meta",
    "country_lower",
    "country_upper",
    "email_amazon",
    "email_mailbox",
    "email_trimmed_lower",
    "external_id_trimmed",
    "maid_lower",
    "name_letters_lower",
    "name_trimmed_lower",
    "phone_digits_with_country_code",
    "phone_e164",
    "sha256_hex",
    "state_meta",
    "zip_clear",
    "zip_meta",
]

# ISO 3166-1 alpha-2 (all 249 officially assigned codes) plus XK, the user-assigned code for Kosovo that
# the ad platforms and libphonenumber use.
_ISO_CODES = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW
    BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI
    FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN
    IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME
    MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF
    PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS YE
    YT ZA ZM ZW XK
"""
ISO_COUNTRIES = frozenset(_ISO_CODES.split())
#: Codes CRMs commonly hold that are not ISO but mean one ISO country unambiguously.
_COUNTRY_ALIASES = {"UK": "GB"}

# USPS/ANSI two-letter codes: the 50 states, DC and the inhabited territories, keyed by the name with
# everything but letters removed, so "New York", "new-york" and "NEW YORK" all find "ny".
US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca", "colorado": "co",
    "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc", "florida": "fl", "georgia": "ga",
    "hawaii": "hi", "idaho": "id", "illinois": "il", "indiana": "in", "iowa": "ia", "kansas": "ks",
    "kentucky": "ky", "louisiana": "la", "maine": "me", "maryland": "md", "massachusetts": "ma",
    "michigan": "mi", "minnesota": "mn", "mississippi": "ms", "missouri": "mo", "montana": "mt",
    "nebraska": "ne", "nevada": "nv", "newhampshire": "nh", "newjersey": "nj", "newmexico": "nm",
    "newyork": "ny", "northcarolina": "nc", "northdakota": "nd", "ohio": "oh", "oklahoma": "ok",
    "oregon": "or", "pennsylvania": "pa", "rhodeisland": "ri", "southcarolina": "sc", "southdakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va", "washington": "wa",
    "westvirginia": "wv", "wisconsin": "wi", "wyoming": "wy", "puertorico": "pr", "guam": "gu",
    "usvirginislands": "vi", "virginislands": "vi", "americansamoa": "as", "northernmarianaislands": "mp",
}
_US_STATE_CODES = frozenset(US_STATES.values())

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]{2,}$")
_PHONE_CHARS = re.compile(r"^[0-9+\s().\-/]+$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_US_ZIP = re.compile(r"^(\d{5})(?:-?\d{4})?$")
_NOT_AMAZON_EMAIL = re.compile(r"[^a-z0-9.@-]")
_NOT_ASCII_ALNUM = re.compile(r"[^a-z0-9]")
_NOT_ASCII_LETTER = re.compile(r"[^a-z]")


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes: the hash every audience platform documents."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _non_empty(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise InvalidIdentifier(f"{what} is empty")
    return value


def _letters_lower(value: str) -> str:
    """Lowercase, keep only letters (any script, accents kept) and their combining marks, NFC-composed.

    NFC first so that a decomposed "é" and a composed one give the same hash; NFC again at the end because
    removing a character can put a base letter next to a mark it should compose with.
    """
    if value.isascii():  # the common case, a regex instead of a per-character Unicode lookup
        return _NOT_ASCII_LETTER.sub("", value.lower())
    lowered = unicodedata.normalize("NFC", value).lower()
    kept = "".join(c for c in lowered if unicodedata.category(c)[0] in "LM")
    return unicodedata.normalize("NFC", kept)


def _check_email_shape(value: str) -> str:
    if any(c.isspace() for c in value):
        raise InvalidIdentifier("email contains whitespace")
    if not _EMAIL_SHAPE.match(value):
        raise InvalidIdentifier("email is not of the form local@domain.tld")
    return value


# -- email ------------------------------------------------------------------------------------------------
def email_trimmed_lower(value: str, country: str | None) -> str:
    """Trim and lowercase an e-mail address, then check it looks like local@domain.tld.

    Used by Meta (EMAIL: "trim leading and trailing white space and convert all characters to lowercase",
    Meta "Hashing and Normalizing Data"), LinkedIn (lowercase, remove whitespace) and DV360 (remove whitespace,
    lowercase; DV360 API `ContactInfo.hashedEmails`). Whitespace inside an address is rejected rather than
    removed: no valid address contains it, so it signals a data-entry error LinkedIn's rule would hide.

    Gmail dots and `+tags` are kept on purpose: Meta's and DV360's Customer Match docs do not ask for their
    removal (only Campaign Manager 360's enhanced conversions does, for gmail.com), and removing them would
    change the hash the platform computed from the address its user registered.
    """
    return _check_email_shape(_non_empty(value, "email").lower())


def email_amazon(value: str, country: str | None) -> str:
    """Lowercase and keep only `a-z 0-9 . @ -` (so `+` and `_` go), then check the address shape.

    Used by Amazon DSP / AMC audiences: the rule Segment's and Amazon's partner connectors apply before
    hashing (Segment `amazon-amc` normalization; Amazon Ads "hashed PII" guidance).
    """
    return _check_email_shape(_NOT_AMAZON_EMAIL.sub("", _non_empty(value, "email").lower()))


_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def email_mailbox(value: str, country: str | None) -> str:
    """The mailbox an address delivers to, for recognizing one person behind several spellings.

    Not a platform rule: it is what identity clustering and the e-mail channel's one-message-per-mailbox rule
    compare. Trim and lowercase (domains are case-insensitive and every large provider treats local parts so);
    drop a `+tag` (sub-addressing, delivered to the same mailbox by Gmail, Outlook, iCloud, Fastmail, Proton
    and Yahoo's `-` aside); for gmail.com and googlemail.com also remove dots from the local part and spell the
    domain gmail.com (Gmail ignores dots: "Gmail doesn't recognize dots as characters within usernames",
    Google Account Help). Over-merging two people is the safe mistake here: they only share a holdout group.
    """
    address = _check_email_shape(_non_empty(value, "email").lower())
    local, _, domain = address.rpartition("@")
    local = local.split("+", 1)[0] or local
    if domain in _GMAIL_DOMAINS:
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"


# -- phone ------------------------------------------------------------------------------------------------
def _parse_phone(value: str, country: str | None) -> phonenumbers.PhoneNumber:
    raw = _non_empty(value, "phone")
    if not _PHONE_CHARS.match(raw):
        raise InvalidIdentifier("phone contains characters other than digits, spaces, + ( ) . - /")
    compact = re.sub(r"[\s().\-/]", "", raw)
    candidates: list[tuple[str, str | None]] = []
    if compact.startswith("+"):
        candidates.append((compact, None))
    else:
        if country:
            candidates.append((compact, country.upper()))
        if compact.startswith("00"):  # the common international prefix, also when the region's differs
            candidates.append(("+" + compact[2:], None))
    if not candidates:
        raise InvalidIdentifier("phone has no country code and no country to infer it from")
    for text, region in candidates:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return number
    raise InvalidIdentifier("phone is not a valid number for its country")


@functools.lru_cache(maxsize=4096)
def phone_e164(value: str, country: str | None) -> str:
    """E.164 with the leading `+`, e.g. "+14155550123".

    Used by Google (DV360 `ContactInfo.hashedPhoneNumbers`: "format using the E.164 format, include the country
    code"; Data Manager API formatter). Parsing uses libphonenumber with the contact's country as default region,
    so national formats ("020 7946 0958" in GB), the trunk "(0)", "00" prefixes and punctuation are handled;
    the number must be valid for its region (fictional ranges like Ofcom's 07700 900xxx are rejected).
    Cached: validation is the slowest step of onboarding, and Meta, Amazon and Google all format the same number.
    """
    return phonenumbers.format_number(_parse_phone(value, country), phonenumbers.PhoneNumberFormat.E164)


def phone_digits_with_country_code(value: str, country: str | None) -> str:
    """E.164 without the `+`: country code and national number, digits only, e.g. "14155550123".

    Used by Meta (PHONE: "remove symbols, letters, and any leading zeroes; include the country code", Meta
    "Hashing and Normalizing Data"; Meta's example "+44 844 412 4653" -> "448444124653") and Amazon (AMC
    hashed phone). Parsing as in `phone_e164`, which is what removes a national trunk zero correctly.
    """
    return phone_e164(value, country).lstrip("+")


# -- names and places ---------------------------------------------------------------------------------------
def name_letters_lower(value: str, country: str | None) -> str:
    """Lowercase and keep only letters, accented ones included: "Mary-Ann" -> "maryann", "José" -> "josé".

    Used by Meta FN/LN ("a-z only, lowercase, no punctuation; special characters in UTF-8 format", Meta
    "Hashing and Normalizing Data"). Meta's own PHP normalizer keeps `[a-z]` only and would drop "é"; we follow
    the documentation, which asks for accented characters to be sent as UTF-8.
    """
    result = _letters_lower(_non_empty(value, "name"))
    if not result:
        raise InvalidIdentifier("name has no letters")
    return result


def name_trimmed_lower(value: str, country: str | None) -> str:
    """Remove all whitespace and lowercase, keeping punctuation: "Mary Ann" -> "maryann", "O'Neil" -> "o'neil".

    Used by Google (DV360 `ContactInfo.hashedFirstName`/`hashedLastName`: "remove all whitespace and make sure
    the string is all lowercase"). NFC-composed so composed and decomposed accents hash alike.
    """
    result = "".join(unicodedata.normalize("NFC", _non_empty(value, "name")).lower().split())
    return unicodedata.normalize("NFC", result)


def alnum_lower_ascii(value: str, country: str | None) -> str:
    """Strip accents (NFD), lowercase, keep only `a-z0-9`: "Zoë-Ann 2" -> "zoeann2".

    Used by Amazon for names, city, state, address and postal code (AMC hashed-PII normalization: "remove
    non-alphanumeric characters, lowercase, convert accented characters to their base letter"; Segment
    `amazon-amc`). Letters without an ASCII base (ß, ø, non-Latin scripts) are dropped.
    """
    decomposed = unicodedata.normalize("NFD", _non_empty(value, "value"))
    base = "".join(c for c in decomposed if not unicodedata.combining(c)).lower()
    result = _NOT_ASCII_ALNUM.sub("", base)
    if not result:
        raise InvalidIdentifier("value has no ASCII letters or digits")
    return result


def city_meta(value: str, country: str | None) -> str:
    """Lowercase, no punctuation, no whitespace, letters only: "São Paulo" -> "sãopaulo".

    Used by Meta CT ("lowercase, no punctuation, no special characters, no white space", Meta "Hashing and
    Normalizing Data"; Meta's business SDK also drops digits). Accents are kept as for names (UTF-8).
    """
    result = _letters_lower(_non_empty(value, "city"))
    if not result:
        raise InvalidIdentifier("city has no letters")
    return result


def state_meta(value: str, country: str | None) -> str:
    """US: the 2-letter ANSI code in lower case (full names are mapped); elsewhere letters only, lowercase.

    Used by Meta ST ("2-character ANSI abbreviation code, lowercase; normalize states outside the U.S. in
    lowercase, no punctuation, no special characters, no white space", Meta "Hashing and Normalizing Data").
    A US contact with an unknown state is rejected. Without a country nothing is mapped: "Georgia" may be
    the country's region as well as the state.
    """
    letters = _letters_lower(_non_empty(value, "state"))
    if not letters:
        raise InvalidIdentifier("state has no letters")
    if country != "US":
        return letters
    if letters in _US_STATE_CODES:
        return letters
    if letters in US_STATES:
        return US_STATES[letters]
    raise InvalidIdentifier("state is not a US state name or 2-letter code")


def zip_meta(value: str, country: str | None) -> str:
    """Lowercase, no whitespace; US: the first 5 digits (ZIP+4 is cut), other US shapes are rejected.

    Used by Meta ZIP ("lowercase, no white space; for U.S. zip codes only use the first 5 digits", Meta
    "Hashing and Normalizing Data"). For GB we keep the whole postcode ("SW1A 1AA" -> "sw1a1aa"): the "area,
    district and sector" wording is only visible in a third-party mirror of Meta's table, while Meta's own SDK
    normalizers send the full postcode without spaces; a full postcode loses nothing if Meta truncates it.
    Non-US dashes are kept ("1000-001" in PT is one code).
    """
    compact = "".join(_non_empty(value, "zip").lower().split())
    if country == "US":
        match = _US_ZIP.match(compact)
        if not match:
            raise InvalidIdentifier("US ZIP code must be 5 digits or ZIP+4")
        return match.group(1)
    return compact


def zip_clear(value: str, country: str | None) -> str:
    """Trimmed postal code, sent unhashed; US: the first 5 digits.

    Used by Google (DV360 `ContactInfo.zipCodes`, unhashed; Data Manager `postalCode`). Spaces inside
    non-US codes are kept because Google matches the postal code as the country writes it ("SW1A 1AA").
    """
    text = _non_empty(value, "zip")
    if country == "US":
        match = _US_ZIP.match("".join(text.split()))
        if not match:
            raise InvalidIdentifier("US ZIP code must be 5 digits or ZIP+4")
        return match.group(1)
    return " ".join(text.split())


def country_upper(value: str, country: str | None) -> str:
    """ISO 3166-1 alpha-2 in upper case ("gb" -> "GB"; the common "UK" is mapped to "GB").

    Used by Google (DV360 `ContactInfo.countryCode`, unhashed) and Amazon (AMC `countryCode`).
    """
    code = _non_empty(value, "country").upper()
    code = _COUNTRY_ALIASES.get(code, code)
    if code not in ISO_COUNTRIES:
        raise InvalidIdentifier("country is not an ISO 3166-1 alpha-2 code")
    return code


def country_lower(value: str, country: str | None) -> str:
    """ISO 3166-1 alpha-2 in lower case, for Meta COUNTRY ("ISO 3166-1 alpha-2, lowercase", Meta docs)."""
    return country_upper(value, country).lower()


# -- device and own ids -------------------------------------------------------------------------------------
def maid_lower(value: str, country: str | None) -> str:
    """A mobile advertising id (IDFA or AAID) as a lowercase hyphenated UUID, sent unhashed.

    Used by Meta MADID ("use all lowercase, keep hyphens", Meta "Hashing and Normalizing Data") and Xandr/Amazon
    device ids. The all-zero id is what a device reports when the user limited ad tracking: it identifies
    nobody and is rejected.
    """
    maid = _non_empty(value, "mobile advertising id").lower()
    if not _UUID.match(maid):
        raise InvalidIdentifier("mobile advertising id is not a UUID (8-4-4-4-12 hex digits)")
    if maid == "00000000-0000-0000-0000-000000000000":
        raise InvalidIdentifier("mobile advertising id is all zeros (ad tracking limited on the device)")
    return maid


def external_id_trimmed(value: str, country: str | None) -> str:
    """The advertiser's own id, trimmed and otherwise unchanged (Meta EXTERN_ID: sent unhashed, as given)."""
    return _non_empty(value, "external id")
