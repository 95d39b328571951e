"""Countries from codes and names (ISO via pycountry, CLDR via babel), US states from ISO 3166-2, lazily loaded."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crm_activation.sdk.countries import country_code, is_country_code, iso_alpha2, normalize_key, us_state_code


@pytest.mark.parametrize(
    ("text", "code"),
    [
        # codes, any case, alpha-2 and alpha-3
        ("gb", "GB"), (" DE ", "DE"), ("NO", "NO"), ("deu", "DE"), ("USA", "US"), ("XK", "XK"),
        # the spellings the brief names
        ("U.S.", "US"), ("United States", "US"), ("United States of America", "US"), ("Deutschland", "DE"),
        ("España", "ES"), ("Espana", "ES"), ("México", "MX"), ("The Netherlands", "NL"), ("Netherlands, The", "NL"),
        ("UAE", "AE"), ("England", "GB"), ("UK", "GB"), ("U.K.", "GB"), ("united kingdom", "GB"),
        # the UK's nations (ISO 3166-2:GB), pycountry's bilingual Welsh name included
        ("Scotland", "GB"), ("Wales", "GB"), ("Cymru", "GB"), ("Northern Ireland", "GB"),
        # CLDR native names in each territory's official languages, in any script
        ("Schweiz", "CH"), ("Suisse", "CH"), ("Svizzera", "CH"), ("Österreich", "AT"), ("Sverige", "SE"),
        ("Éire", "IE"), ("日本", "JP"), ("Россия", "RU"), ("Brasil", "BR"),
        # ISO common names, comma-inverted names, "&", "St."
        ("Bolivia", "BO"), ("South Korea", "KR"), ("Korea, Republic of", "KR"), ("Bosnia & Herzegovina", "BA"),
        ("St Lucia", "LC"), ("Saint Lucia", "LC"), ("Côte d'Ivoire", "CI"), ("Türkiye", "TR"),
        # initialisms of English names, and CLDR's alt names babel does not ship
        ("DRC", "CD"), ("KSA", "SA"), ("Turkey", "TR"), ("Czech Republic", "CZ"), ("Ivory Coast", "CI"),
        ("Great Britain", "GB"), ("Burma", "MM"), ("Myanmar", "MM"),
    ],
)
def test_country_codes_and_names(text: str, code: str) -> None:
    assert country_code(text) == code


@pytest.mark.parametrize("text", ["XX", "ZZ", "EU", "Europe", "Atlantis", "Narnia", "", "  ", "Korea", "America"])
def test_unknown_or_ambiguous_names_are_none(text: str) -> None:
    assert country_code(text) is None  # "Korea" is two countries; "EU" is ISO-reserved, not a country


def test_georgia_the_country_wins_over_georgia_the_state() -> None:
    assert country_code("Georgia") == "GE"


def test_alpha2_set_is_iso_3166_1_plus_kosovo() -> None:
    codes = iso_alpha2()
    assert len(codes) == 250 and {"US", "GB", "AQ", "XK"} <= codes and "UK" not in codes
    assert is_country_code("FR") and not is_country_code("fr") and not is_country_code("EU")


def test_normalized_keys_ignore_case_accents_punctuation_and_the_article() -> None:
    assert normalize_key("The Netherlands") == normalize_key("netherlands") == "netherlands"
    assert normalize_key("U.S.A.") == "usa"
    assert normalize_key("Trinidad & Tobago") == normalize_key("Trinidad and Tobago")
    assert normalize_key("Côte d’Ivoire") == "cotedivoire"


@pytest.mark.parametrize(
    ("text", "code"), [("New York", "ny"), ("n.y.", "ny"), ("CA", "ca"), ("District of Columbia", "dc"),
                       ("Georgia", "ga"), ("U.S. Virgin Islands", "vi"), ("Puerto Rico", "pr")],
)
def test_us_states_from_iso_3166_2(text: str, code: str) -> None:
    assert us_state_code(text) == code


@pytest.mark.parametrize("text", ["Georgia", "Florida", "Maryland", "Montana", "Puerto Rico", "WA", "CA"])
def test_without_a_country_only_unambiguous_state_names_map(text: str) -> None:
    # Georgia is a country, Florida a department of Uruguay, Maryland a county of Liberia, Montana a province of
    # Bulgaria, Puerto Rico an ISO country itself; "WA" is also Western Australia.
    assert us_state_code(text, unambiguous=True) is None


def test_without_a_country_unambiguous_state_names_still_map() -> None:
    assert us_state_code("California", unambiguous=True) == "ca"
    assert us_state_code("new york", unambiguous=True) == "ny"
    assert us_state_code("Ontario", unambiguous=True) is None


def test_importing_the_package_loads_no_country_data_and_codes_skip_the_name_index() -> None:
    script = (
        "import sys, crm_activation\n"
        "from crm_activation.sdk import countries\n"
        "assert 'pycountry' not in sys.modules and 'babel' not in sys.modules, 'loaded at import'\n"
        "assert countries.country_code('de') == 'DE'\n"
        "assert 'babel' not in sys.modules and countries._name_index.cache_info().currsize == 0, 'index built'\n"
        "assert countries.country_code('Deutschland') == 'DE'\n"
        "assert countries._name_index.cache_info().currsize == 1\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True)
