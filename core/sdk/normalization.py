"""Identifier normalization rules, platform-neutral and named by what they do.

Each rule has the `Normalizer` signature `(value, country) -> str`: `country` is the contact's ISO 3166-1
alpha-2 code in upper case, or None. A rule raises `InvalidIdentifier` with a human reason when a value is
unusable; the reason never repeats the value, because the value is personal data and reasons end up in the
rejects file and in logs. Connectors pick the rules their platform documents and cite the source; the
docstring of each rule says which platforms use it and where the rule comes from.

Hashing is separate (`sha256_hex`): the engine normalizes, then hashes when the connector's rule says so.

Country-dependent rules (phones, US states and ZIP codes) get the contact's country or, for a contact without
one, the campaign's `default_country` (the engine decides which; see `pipeline/payload.py`). Country names and
codes are resolved by `countries.py`, the one place that knows them. README "Normalization per platform" has
the table of which platform uses which rule, and docs/platform-apis.md §8 the decisions where owners disagree.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import re
import unicodedata
from collections.abc import Callable

import phonenumbers

from .countries import country_code, us_state_code
from .errors import InvalidIdentifier
from .identifier_kinds import is_sha256_hex

try:  # the compiled phone reader; without it (a phonenumbers whose metadata API it does not know), phonenumbers alone
    from . import phone_fast as _phone_fast
except ImportError:  # pragma: no cover
    _phone_fast = None  # type: ignore[assignment]

__all__ = [
    "alnum_lower_ascii",
    "city_meta",
    "country_lower",
    "country_upper",
    "dob_day_meta",
    "dob_month_meta",
    "dob_year_meta",
    "email_amazon",
    "email_google",
    "email_mailbox",
    "email_trimmed_lower",
    "external_id_trimmed",
    "first_initial_meta",
    "gender_meta",
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

_EMAIL_SHAPE = re.compile(r"^[^@\s]+@(?:[^@\s.]+\.)+[^@\s.]{2,}$")
_WHITESPACE = re.compile(r"\s")
_PHONE_CHARS = re.compile(r"^[0-9+\s().\-/]+$")
#: A trailing extension as CRMs write it: "ext. 123", "ext 123", "extension 12", "x12", "#12", ";ext=12" (RFC 3966).
_PHONE_EXTENSION = re.compile(r"(?<=[\d\s).])\s*(?:;\s*ext\s*=|#|ext(?:ension)?\.?|x\.?)\s*\d{1,7}\s*$", re.I)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_UUID_HEX = re.compile(r"^[0-9a-f]{32}$")
_US_ZIP = re.compile(r"^(\d{4,5})(?:-?\d{4})?$")
#: ZIP+4 as Meta's SDK and param builder cut it (to the part before the dash), whatever the country.
_ZIP_PLUS_4 = re.compile(r"^(\d{5})-\d{4}$")
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
    if is_sha256_hex(value):  # a pre-hashed export reached a rule that needs the address: say so, not "bad shape"
        raise InvalidIdentifier("email is already SHA-256 hashed; this rule needs the address in clear")
    if _WHITESPACE.search(value):  # `\s` is `str.isspace`, checked in C rather than a character at a time
        raise InvalidIdentifier("email contains whitespace")
    if not _EMAIL_SHAPE.match(value):
        raise InvalidIdentifier("email is not of the form local@domain.tld")
    return value


# -- email ------------------------------------------------------------------------------------------------
def email_trimmed_lower(value: str, country: str | None) -> str:
    """Trim and lowercase an e-mail address, then check it looks like local@domain.tld.

    Used by Meta (EMAIL: "trim leading and trailing white space and convert all characters to lowercase",
    Meta "Hashing and Normalizing Data"; Meta's Python business SDK `Normalize.normalize_field("em")` does the
    same) and LinkedIn (lowercase, remove whitespace). Whitespace inside an address is rejected rather than
    removed: no valid address contains it, so it signals a data-entry error LinkedIn's rule would hide.

    Gmail dots and `+tags` are kept on purpose: Meta's docs and SDK do not remove them, and removing them would
    change the hash Meta computed from the address its user registered. Google's platforms use `email_google`.
    """
    return _check_email_shape(_non_empty(value, "email").lower())


def email_amazon(value: str, country: str | None) -> str:
    """Lowercase and keep only `a-z 0-9 . @ -` (so `+` and `_` go), then check the address shape.

    Used by Amazon DSP / AMC audiences: the rule Segment's and Amazon's partner connectors apply before
    hashing (Segment `amazon-amc` normalization; Amazon Ads "hashed PII" guidance).
    """
    return _check_email_shape(_NOT_AMAZON_EMAIL.sub("", _non_empty(value, "email").lower()))


_GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})


def email_google(value: str, country: str | None) -> str:
    """Trim and lowercase; for gmail.com and googlemail.com also drop a `+tag` and every dot before the `@`.

    Used by Google: DV360 Customer Match (`ContactInfo.hashedEmails`) and the Data Manager API plugin. Follows
    Google's "Format user data" guide (developers.google.com/data-manager/api/devguides/concepts/formatting: "If
    the email address has the gmail.com or googlemail.com domain: remove all dots (.) before the @ symbol; remove
    the plus sign (+) from the local part and all characters that follow it"; example
    "cloudy.sanfrancisco+shopping@gmail.com" -> "cloudysanfrancisco@gmail.com") and Google's own formatter
    (`google.ads.datamanager_util.Formatter.format_email_address` in googleads/data-manager-python, whose tests
    expect "Cloudy.SanFrancisco+shopping@googlemail.com" -> "cloudysanfrancisco@googlemail.com"). So, exactly as
    Google does: the googlemail.com domain is kept (not rewritten to gmail.com), and other domains keep their dots
    and `+tags` ("user.name+NYC@Example.com" -> "user.name+nyc@example.com"). DV360 shares Google's matching, so
    it sends the same form (docs/platform-apis.md §8). A Gmail address of nothing but dots or a tag is refused.
    """
    address = _check_email_shape(_non_empty(value, "email").lower())
    local, _, domain = address.rpartition("@")
    if domain in _GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            raise InvalidIdentifier("email has nothing before the @ once Gmail's dots and +tag are removed")
    return f"{local}@{domain}"


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
#: How a phone reader reads compact text (an optional leading "+" and digits) with a default region (None for a
#: "+" number): the E.164 form when libphonenumber parses it and finds it valid, else None. Two readers exist:
#: `_reference_e164` (phonenumbers itself) and `phone_fast.read_e164` (the same rules, compiled; it may raise
#: `phone_fast.Unsure`, and the whole value is then read again by the reference).
_PhoneReader = Callable[[str, str | None], str | None]
#: A value of nothing but ASCII digits, `+`, spaces and `( ) . - /`: no extension to drop, nothing to refuse.
_PLAIN_PHONE = re.compile(r"[0-9+ ().\-/]+")
_PLAIN_PHONE_SEPARATORS = str.maketrans("", "", " ().-/")


def _valid_number(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_valid_number(number) else None


def _reference_e164(text: str, region: str | None) -> str | None:
    """The reference reader: `phonenumbers.parse`, `is_valid_number`, E.164 (see `_PhoneReader`)."""
    number = _valid_number(text, region)
    return None if number is None else phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _international_digits(digits: str, read: _PhoneReader) -> str | None:
    """Bare digits read as country code + number ("442079460958" -> +44 20 7946 0958), when that is safe.

    Google's formatter ("441134960987" -> "+441134960987") and Meta's SDK both take a phone's digits to start with
    the country code; we also require a valid number and refuse digits that are as well a valid North American
    (NANP) number read nationally to a different number: "2015550123" is +1 201-555-0123 typed without the "1" far
    more often than +20 1555 0123. Measured on libphonenumber's example ranges (24,200 valid national numbers of
    every region, without trunk zero), this guard cuts national numbers mis-read as international from 551 to 101
    (the rest: mobiles of China and Colombia) and keeps 95% of genuine international numbers written without `+`.
    A number with a trunk zero ("020 7946 0958") never reads as international: no country code starts with 0.
    """
    number = read("+" + digits, None)
    if number is None:
        return None
    north_american = read(digits, "US")
    if north_american is not None and north_american != number:
        return None
    return number


def _compact_phone(value: str) -> str:
    """The phone's "+" and digits, without separators and without a trailing extension; letters are refused.

    A trailing extension ("ext. 123", "x12", "#12", ";ext=12") is dropped: no platform matches on it, and the
    number before it is the person's. Letters (vanity numbers such as "1-800-FLOWERS") are refused: their digits
    cannot be recovered reliably. A plain value (ASCII digits, "+", spaces, `( ) . - /`: nearly every CRM phone)
    takes a shortcut with the same result: the extension pattern cannot match it, and its only whitespace is " ".
    """
    text = _non_empty(value, "phone")
    if _PLAIN_PHONE.fullmatch(text):
        return text.translate(_PLAIN_PHONE_SEPARATORS)
    raw = _PHONE_EXTENSION.sub("", text)
    if not _PHONE_CHARS.match(raw):
        raise InvalidIdentifier("phone contains characters other than digits, spaces, + ( ) . - /")
    return re.sub(r"[\s().\-/]", "", raw)


def _read_phone(value: str, country: str | None, read: _PhoneReader) -> str:
    """The number in `value` as E.164, read with `country` as its region when it has no country code.

    In order: an explicit `+`; the country's national reading; a `00` international prefix; bare digits as country
    code + number (see `_international_digits`). `read` is the libphonenumber reader (`_PhoneReader`).
    """
    compact = _compact_phone(value)
    number = None
    if compact.startswith("+"):
        number = read(compact, None)
    else:
        if country:
            number = read(compact, country.upper())
        if number is None and compact.startswith("00"):  # the common exit code, also where the region's differs
            number = read("+" + compact[2:], None)
        elif number is None and compact[:1].isdigit() and compact[0] != "0" and compact.isdigit():
            number = _international_digits(compact, read)
        if number is None and not country and not compact.startswith("00"):
            raise InvalidIdentifier("phone has no country code and no country to infer it from")
    if number is None:
        raise InvalidIdentifier("phone is not a valid number for its country")
    return number


def reference_e164_or_reason(value: str, country: str | None) -> tuple[str, bool]:
    """`e164_or_reason` read by `phonenumbers` alone: the reference the fast path is tested and benched against."""
    try:
        return _read_phone(value, country, _reference_e164), True
    except InvalidIdentifier as problem:
        return str(problem), False


#: The compiled reader, or None where it cannot be built (then `e164_or_reason` is `reference_e164_or_reason`).
_FAST_READ: _PhoneReader | None = None if _phone_fast is None else _phone_fast.read_e164


def fast_e164_or_reason(value: str, country: str | None) -> tuple[str, bool] | None:
    """`e164_or_reason` read by the compiled reader (`phone_fast`), or None when it is unsure or unavailable."""
    if _FAST_READ is None or _phone_fast is None:
        return None
    try:
        return _read_phone(value, country, _FAST_READ), True
    except InvalidIdentifier as problem:
        return str(problem), False
    except _phone_fast.Unsure:
        return None


def e164_or_reason(value: str, country: str | None) -> tuple[str, bool]:
    """(E.164, True) or (the reason it is refused, False): what `phone_e164` returns or raises, as a value.

    For batch callers that read each distinct (value, country) once. libphonenumber's rules either way: the
    compiled reader (`phone_fast`, about 7 times as fast: bench/bench_phones.py) answers nearly every value, and
    `phonenumbers` itself the rest (values it is unsure of) or all of them when the compiled reader is unavailable.
    """
    return fast_e164_or_reason(value, country) or reference_e164_or_reason(value, country)


#: `e164_or_reason` cached: validation is the slowest step of onboarding, and Meta, Amazon and Google all format
#: the same number (and identity clustering too), so each distinct value is parsed once however many rules ask.
_e164_or_reason = functools.lru_cache(maxsize=8192)(e164_or_reason)


def phone_e164(value: str, country: str | None) -> str:
    """E.164 with the leading `+`, e.g. "+14155550123".

    Used by Google (DV360 `ContactInfo.hashedPhoneNumbers`: "format using the E.164 format, include the country
    code"; Data Manager "Format user data": "Include the plus sign (+) and the country code", example
    "(800)555-0100" -> "+18005550100"). Parsing follows libphonenumber (`_read_phone`) with the contact's country
    (else the campaign's default) as default region, so national formats ("020 7946 0958" in GB), the trunk
    "(0)", "00" prefixes, punctuation and extensions are handled; the number must be valid for its region
    (fictional ranges like Ofcom's 07700 900xxx are refused). Cached (`_e164_or_reason`).
    """
    text, ok = _e164_or_reason(value, country)
    if not ok:
        raise InvalidIdentifier(text)
    return text


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
    Normalizing Data"; Meta's business SDK also drops digits). Meta's references disagree on accents: its docs
    ask for special characters "in UTF-8 format" and its Python SDK (`normalize_field("ct")`) keeps them, while
    its param builder keeps `[a-z]` only. We keep them ("Montréal" -> "montréal"), as for FN/LN: the docs are the
    contract, and the SDK is what Meta's own server-side integrations hash with.
    """
    result = _letters_lower(_non_empty(value, "city"))
    if not result:
        raise InvalidIdentifier("city has no letters")
    return result


def state_meta(value: str, country: str | None) -> str:
    """US: the 2-letter ANSI code in lower case (full names are mapped); elsewhere letters only, lowercase.

    Used by Meta ST ("2-character ANSI abbreviation code, lowercase; normalize states outside the U.S. in
    lowercase, no punctuation, no special characters, no white space", Meta "Hashing and Normalizing Data").
    Names and codes come from ISO 3166-2:US (`countries.us_state_code`). A US contact with an unknown state is
    refused. Without any country, a full US state name is mapped only when it names nothing else: "Georgia" (a
    country), "Florida" (a department of Uruguay), "Maryland" (a county of Liberia), "Montana" (a province of
    Bulgaria) and the territories that are ISO countries themselves ("Puerto Rico") stay as written, as do
    two-letter values ("WA" is also Western Australia). Unknown values are never cut to two letters, as Meta's
    param builder does ("Tex." -> "te"): a wrong code matches nobody, the full name may.
    """
    letters = _letters_lower(_non_empty(value, "state"))
    if not letters:
        raise InvalidIdentifier("state has no letters")
    if country == "US":
        code = us_state_code(value)
        if code is None:
            raise InvalidIdentifier("state is not a US state name or 2-letter code")
        return code
    if country is None and len(letters) > 2:
        return us_state_code(value, unambiguous=True) or letters
    return letters


def _us_zip5(text: str) -> str:
    """The 5-digit US ZIP of "94103", "94103-1234", "941031234", or of "2134" whose leading zero a spreadsheet ate."""
    match = _US_ZIP.match(text)
    if not match:
        raise InvalidIdentifier("US ZIP code must be 5 digits or ZIP+4")
    return match.group(1).zfill(5)


def zip_meta(value: str, country: str | None) -> str:
    """Lowercase, no whitespace; `NNNNN-NNNN` cut to five digits anywhere; US: the first 5 digits, zero-padded.

    Used by Meta ZIP ("lowercase, no white space; for U.S. zip codes only use the first 5 digits", Meta
    "Hashing and Normalizing Data"). Meta's Python SDK (`normalize_field("zp")`) and param builder
    (`ZipCodeUtils`) keep what comes before a dash whatever the country; we cut only the ZIP+4 shape
    `NNNNN-NNNN`, so a US ZIP+4 in a contact without a country is cut too, while Portugal's "1000-001" stays
    one code. A US ZIP of 4 digits lost its leading zero in a spreadsheet ("2134" -> "02134", Massachusetts).
    For GB we keep the whole postcode ("SW1A 1AA" -> "sw1a1aa"): the "area, district and sector" wording is only
    visible in a third-party mirror of Meta's table, while Meta's own SDK sends the full postcode without spaces.
    """
    compact = "".join(_non_empty(value, "zip").lower().split())
    if country == "US":
        return _us_zip5(compact)
    plus_4 = _ZIP_PLUS_4.match(compact)
    return plus_4.group(1) if plus_4 else compact


def zip_clear(value: str, country: str | None) -> str:
    """Trimmed postal code, sent unhashed; US: the first 5 digits (a 4-digit ZIP zero-padded, as for Meta).

    Used by Google (DV360 `ContactInfo.zipCodes`, unhashed; Data Manager `postalCode`: "For US addresses, use
    either 5 digits or 5 digits followed by a 4-digit extension"). Spaces inside non-US codes are kept because
    Google matches the postal code as the country writes it ("SW1A 1AA"; Google's formatter only trims).
    """
    text = _non_empty(value, "zip")
    if country == "US":
        return _us_zip5("".join(text.split()))
    return " ".join(text.split())


def country_upper(value: str, country: str | None) -> str:
    """ISO 3166-1 alpha-2 in upper case, from a code or a name ("gb", "UK", "United Kingdom" -> "GB").

    Used by Google (DV360 `ContactInfo.countryCode`, Data Manager `regionCode`: "a two-character ISO-3166-1
    alpha-2 code", unhashed), Amazon (AMC `countryCode`) and LinkedIn (`country`). Resolved by
    `countries.country_code` (ISO codes and CLDR names); "UK" becomes "GB" although Meta's param builder keeps
    "uk": "UK" is only ISO's exceptionally reserved code, and the platforms' docs ask for alpha-2.
    """
    code = country_code(_non_empty(value, "country"))
    if code is None:
        raise InvalidIdentifier("country is not an ISO 3166-1 country code or name")
    return code


def country_lower(value: str, country: str | None) -> str:
    """ISO 3166-1 alpha-2 in lower case, for Meta COUNTRY ("ISO 3166-1 alpha-2, lowercase", Meta docs)."""
    return country_upper(value, country).lower()


# -- gender and date of birth (Meta GEN, DOBY, DOBM, DOBD, FI) -------------------------------------------------
#: Words a CRM's gender column holds, by what Meta's GEN takes: the common ones of the lists in Meta's param
#: builder (`capi-param-builder`, GenderUtils: "man", "male", "boy", "mr", ... / "woman", "female", "girl", "mrs",
#: ...), compared after lowercasing and removing everything but letters ("Mr." -> "mr").
_GENDERS = {
    **dict.fromkeys(("m", "male", "man", "boy", "mr", "mister", "sir", "gentleman", "he", "him"), "m"),
    **dict.fromkeys(("f", "female", "woman", "girl", "mrs", "ms", "miss", "madam", "lady", "she", "her"), "f"),
}


def gender_meta(value: str, country: str | None) -> str:
    """`m` or `f`: "Female", "F", "Woman", "Mr." -> the letter Meta GEN takes ("m for male and f for female").

    Used by Meta GEN (Meta "Hashing and Normalizing Data"; words as in Meta's param builder, see `_GENDERS`).
    Anything else (non-binary, unknown, "U") is refused: GEN has no other value, and a guess would be a wrong one.
    """
    gender = _GENDERS.get(_NOT_ASCII_LETTER.sub("", _non_empty(value, "gender").lower()))
    if gender is None:
        raise InvalidIdentifier("gender is neither female nor male, the only values Meta's GEN takes")
    return gender


_ISO_DATE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ][0-9:.+\-Z ]*)?$")
_COMPACT_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_DAY_MONTH_YEAR = re.compile(r"^(\d{1,2})[-/.](\d{1,2})[-/.](\d{4})$")


@functools.lru_cache(maxsize=4096)
def _birth_date(value: str) -> datetime.date | str:
    """The date of birth in `value`, or why there is none (cached: DOBY, DOBM and DOBD each read the same value).

    Read: ISO 8601 `YYYY-MM-DD` (also with `/` or `.`, and with a time after it, as databases export dates) and
    `YYYYMMDD`; `DD/MM/YYYY` or `MM/DD/YYYY` only when unambiguous (one of the two numbers is over 12, or both are
    equal). "03/04/1985" is refused: it is 3 April in most of the world and March 4 in the US, and guessing (as
    Meta's param builder does, month first) sends a wrong date for one reading. Two-digit years are refused too.
    The year must be 1900 to the current year (Meta DOBY: "YYYY format from 1900 to current year").
    """
    text = value.strip()
    if match := _ISO_DATE.match(text) or _COMPACT_DATE.match(text):
        year, month, day = (int(part) for part in match.groups())
    elif match := _DAY_MONTH_YEAR.match(text):
        first, second, year = (int(part) for part in match.groups())
        if first > 12 >= second or first == second:
            day, month = first, second
        elif second > 12 >= first:
            month, day = first, second
        else:
            return "date of birth is ambiguous (day/month or month/day); write it as YYYY-MM-DD"
    else:
        return "date of birth is not a date in YYYY-MM-DD, YYYYMMDD or an unambiguous DD/MM/YYYY form"
    try:
        born = datetime.date(year, month, day)
    except ValueError:
        return "date of birth is not a calendar date"
    today = datetime.date.today()
    if not 1900 <= year <= today.year or born > today:
        return "date of birth is before 1900 or in the future"
    return born


def _birth(value: str) -> datetime.date:
    born = _birth_date(_non_empty(value, "date of birth"))
    if isinstance(born, str):
        raise InvalidIdentifier(born)
    return born


def dob_year_meta(value: str, country: str | None) -> str:
    """The year of birth as `YYYY` (Meta DOBY: "Use the YYYY format from 1900 to current year"). See `_birth_date`."""
    return f"{_birth(value).year:04d}"


def dob_month_meta(value: str, country: str | None) -> str:
    """The month of birth as `MM`, zero-padded (Meta DOBM: "Use the MM format: 01 to 12"). See `_birth_date`."""
    return f"{_birth(value).month:02d}"


def dob_day_meta(value: str, country: str | None) -> str:
    """The day of birth as `DD`, zero-padded (Meta DOBD: "Use the DD format: 01 to 31"). See `_birth_date`."""
    return f"{_birth(value).day:02d}"


def first_initial_meta(value: str, country: str | None) -> str:
    """The first letter of the first name, normalized as Meta's FN: "Élodie" -> "é", "j." -> "j".

    Used by Meta FI ("first name initial: a-z only, lowercase, special characters in UTF-8", Meta "Hashing and
    Normalizing Data"; Meta's SDK `normalize_field("fi")` takes the first character). Taken after `_letters_lower`
    so a leading quote or space is not the initial; accents are kept, as for FN.
    """
    return name_letters_lower(value, country)[0]


# -- device and own ids -------------------------------------------------------------------------------------
def maid_lower(value: str, country: str | None) -> str:
    """A mobile advertising id (IDFA or AAID) as a lowercase hyphenated UUID, sent unhashed.

    Accepted with or without hyphens, in any case (32 hex digits: CRMs and MMPs export both forms) and written
    `8-4-4-4-12`, lowercase. Used by Meta MADID ("use all lowercase, keep hyphens", Meta "Hashing and Normalizing
    Data"), LinkedIn (`GOOGLE_AID`/`APPLE_IDFA`, lowercase as partner integrations send them) and Xandr (device
    ids; the connector then writes IDFAs upper case and AAIDs lower case, each OS's own form, platform-apis.md §4).
    The all-zero id is what a device reports when the user limited ad tracking: it identifies nobody and is
    refused.
    """
    maid = _non_empty(value, "mobile advertising id").lower()
    if _UUID_HEX.match(maid):
        maid = f"{maid[:8]}-{maid[8:12]}-{maid[12:16]}-{maid[16:20]}-{maid[20:]}"
    if not _UUID.match(maid):
        raise InvalidIdentifier("mobile advertising id is not a UUID (32 hex digits, with or without hyphens)")
    if maid == "00000000-0000-0000-0000-000000000000":
        raise InvalidIdentifier("mobile advertising id is all zeros (ad tracking limited on the device)")
    return maid


def external_id_trimmed(value: str, country: str | None) -> str:
    """The advertiser's own id, trimmed and otherwise unchanged (Meta EXTERN_ID: sent unhashed, as given)."""
    return _non_empty(value, "external id")
