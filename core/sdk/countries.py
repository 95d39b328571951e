"""Countries as CRMs write them, resolved to ISO 3166-1 alpha-2 from maintained data, not a hand-typed table.

`country_code("Deutschland") == "DE"`. What is understood, and where it comes from:

- ISO 3166-1 alpha-2 and alpha-3 codes, ISO's English short name, official name and common name (`pycountry`, which
  ships the Debian iso-codes database; Meta's own Python business SDK validates countries with it too);
- each territory's name in Unicode CLDR, in English and in every official language of the territory ("Deutschland",
  "España", "México", "Nederland", "Sverige", "日本"), via `babel`'s CLDR data and its table of official languages;
- the United Kingdom's four nations (England, Scotland, Wales/Cymru, Northern Ireland: the top level of ISO
  3166-2:GB, from `pycountry`) as GB, since CRMs often store the nation in the country field;
- initialisms of at least three letters of those English names ("UAE", "DRC"), kept only when unambiguous;
- a handful of names the data sources lack (`_ALIASES`), each with the reason.

Spelling is forgiving: case, accents, punctuation, spaces, "&" for "and" and the article "the" do not matter
("U.S.", "the Netherlands", "Trinidad & Tobago", "ESPANA"). A spelling that two countries share ("Congo") is
dropped rather than guessed; an earlier source wins over a later one (a code over a name, an English name over a
native one, a country over a nation of the UK, anything over an initialism).

Plus XK, the user-assigned code for Kosovo that the EU, the ad platforms and libphonenumber use.

The alpha-2 set is loaded on the first call (pycountry: ~50 ms) and the name index only when a value is not an
alpha-2 code (~0.3 s, once per process), so importing this module costs nothing and the common case stays one
set lookup. US state names (`us_state_code`) come from ISO 3166-2:US the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping

__all__ = ["country_code", "is_country_code", "iso_alpha2", "normalize_key", "us_state_code"]

#: Codes in use that ISO 3166-1 does not assign (so pycountry lacks them): Kosovo.
_USER_ASSIGNED = frozenset({"XK"})
#: Spellings no data source gives, as normalized keys (see `normalize_key`). "UK" is ISO 3166-1's "exceptionally
#: reserved" code for GB (reserved at the UK's request; pycountry lists only assigned codes); the others are CLDR's
#: English `alt="short"` / `alt="variant"` names, which babel does not ship (it keeps only the main name).
_ALIASES: dict[str, str] = {
    "uk": "GB",
    "greatbritain": "GB",
    "turkey": "TR",
    "czechrepublic": "CZ",
    "ivorycoast": "CI",
    "swaziland": "SZ",
    "capeverde": "CV",
    "easttimor": "TL",
    "burma": "MM",
    "palestine": "PS",
}
_WORD = re.compile(r"\w+")
_MINOR_WORDS = frozenset({"and", "of", "the"})
_PARENTHESES = re.compile(r"\s*\(([^)]*)\)\s*")


def normalize_key(text: str) -> str:
    """The form names are compared in: casefolded, accents and punctuation gone, "&" as "and", no "the".

    "The Netherlands" -> "netherlands", "U.S.A." -> "usa", "España" -> "espana", "Côte d'Ivoire" -> "cotedivoire".
    """
    folded = unicodedata.normalize("NFKD", text.casefold().replace("&", " and "))
    plain = "".join(c for c in folded if not unicodedata.combining(c))
    return "".join(word for word in _WORD.findall(plain) if word != "the").replace("_", "")


@functools.cache
def iso_alpha2() -> frozenset[str]:
    """Every ISO 3166-1 alpha-2 code (pycountry), plus XK."""
    import pycountry  # deferred: 40 ms of import that only country values need

    return frozenset(country.alpha_2 for country in pycountry.countries) | _USER_ASSIGNED


def is_country_code(code: str) -> bool:
    """Whether `code` (upper case) is an ISO 3166-1 alpha-2 code (or XK)."""
    return code in iso_alpha2()


def country_code(text: str) -> str | None:
    """The ISO 3166-1 alpha-2 code (upper case) for a country as a CRM wrote it, or None when it names none.

    An alpha-2 code in any case costs one set lookup; anything else is looked up in the name index.
    """
    stripped = text.strip()
    if len(stripped) == 2:
        upper = stripped.upper()
        if upper in iso_alpha2():
            return upper
    key = normalize_key(stripped)
    return _name_index().get(key) if key else None


def _variants(name: str) -> Iterator[str]:
    """A name as written, and the forms CRMs write it in: without or only its parenthesis, comma-inverted.

    "Myanmar (Burma)" -> also "Myanmar" and "Burma"; "Korea, Republic of" -> also "Republic of Korea";
    "Wales [Cymru GB-CYM]" (pycountry's spelling of a bilingual name) -> "Wales" and "Cymru".
    """
    name = name.replace("[", "(").replace("]", ")")
    yield name
    inner = _PARENTHESES.findall(name)
    outer = _PARENTHESES.sub(" ", name).strip()
    if inner:
        yield outer
        yield from (" ".join(w for w in part.split() if not re.fullmatch(r"[A-Z]{2}-[A-Z0-9]+", w)) for part in inner)
    if outer.count(",") == 1:
        head, tail = (part.strip() for part in outer.split(","))
        yield f"{tail} {head}"


def _initialism(name: str) -> str | None:
    """"United Arab Emirates" -> "uae"; None under three letters or for names that are not ASCII words."""
    words = [w for w in re.split(r"[\s\-,]+", _PARENTHESES.sub(" ", name).replace("&", " and ")) if w]
    letters = "".join(w[0] for w in words if w.casefold() not in _MINOR_WORDS)
    return letters.casefold() if len(letters) >= 3 and letters.isascii() and letters.isalpha() else None


def _tier(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Keys that name exactly one country within one source (a key two countries share is left out)."""
    found: dict[str, set[str]] = {}
    for name, code in pairs:
        for variant in _variants(name):
            key = normalize_key(variant)
            if key:
                found.setdefault(key, set()).add(code)
    return {key: next(iter(codes)) for key, codes in found.items() if len(codes) == 1}


@functools.cache
def _name_index() -> dict[str, str]:
    """Normalized spelling -> alpha-2, built once from the sources in the module docstring, in precedence order."""
    import pycountry
    from babel import Locale, UnknownLocaleError
    from babel.languages import get_official_languages

    codes = iso_alpha2()
    english = Locale("en").territories
    iso = list(pycountry.countries)
    english_names = [(english[code], code) for code in codes if code in english]
    for country in iso:
        english_names += [(getattr(country, attr), country.alpha_2) for attr in ("name", "official_name", "common_name")
                          if getattr(country, attr, None)]
    locales: dict[str, Mapping[str, str] | None] = {}
    native_names = []
    for code in sorted(codes):
        for language in get_official_languages(code, de_facto=True):
            if language not in locales:
                try:
                    locales[language] = Locale.parse(language).territories
                except (UnknownLocaleError, ValueError):  # CLDR has no locale data for some small languages
                    locales[language] = None
            names = locales[language]
            if names and code in names:
                native_names.append((names[code], code))
    nations = [(s.name, "GB") for s in pycountry.subdivisions.get(country_code="GB") if s.parent_code is None]
    initialisms = [
        (short, code) for name, code in english_names for variant in _variants(name) if (short := _initialism(variant))
    ]
    tiers = [
        {code.lower(): code for code in codes} | {key: code for key, code in _ALIASES.items()},
        {country.alpha_3.lower(): country.alpha_2 for country in iso},
        _tier(english_names),
        _tier(native_names),
        _tier(nations),
        _tier(initialisms),
    ]
    index: dict[str, str] = {}
    for tier in tiers:
        for key, code in tier.items():
            index.setdefault(key, code)
    return index


# -- US states --------------------------------------------------------------------------------------------------
@functools.cache
def _us_states() -> dict[str, str]:
    """Normalized state name or code -> lowercase USPS/ANSI code: ISO 3166-2:US (50 states, DC, the territories)."""
    import pycountry

    states: dict[str, str] = {}
    for subdivision in pycountry.subdivisions.get(country_code="US"):
        code = subdivision.code.split("-", 1)[1].lower()
        states[code] = code
        for variant in _variants(subdivision.name):
            states.setdefault(normalize_key(variant), code)
    return states


@functools.cache
def _names_elsewhere() -> frozenset[str]:
    """Normalized names of every country and of every non-US ISO 3166-2 subdivision: what makes a state ambiguous."""
    import pycountry

    names = {key for key, code in _name_index().items() if code != "US"}
    for subdivision in pycountry.subdivisions:
        if subdivision.country_code != "US":
            names.update(normalize_key(variant) for variant in _variants(subdivision.name))
    return frozenset(names)


def us_state_code(text: str, *, unambiguous: bool = False) -> str | None:
    """The lowercase two-letter code of a US state or territory named or coded in `text`, or None.

    With `unambiguous`, for contacts of unknown country: only full names that name nothing outside the US, neither a
    country nor another country's region ("Georgia" is a country, "Maryland" a county of Liberia), are mapped; a
    two-letter code is never taken as a US state then ("WA" is also Western Australia).
    """
    key = normalize_key(text)
    code = _us_states().get(key)
    if code is None or not unambiguous:
        return code
    if key == code or key in _names_elsewhere():
        return None
    return code
