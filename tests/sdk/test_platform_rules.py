"""Each platform rule against its owner's own examples: Google's formatter and guide, Meta's docs, SDK and param
builder (where they disagree, the choice made in docs/platform-apis.md §8)."""

from __future__ import annotations

import datetime

import pytest

from crm_activation import InvalidIdentifier
from crm_activation.normalization import (
    city_meta,
    country_upper,
    dob_day_meta,
    dob_month_meta,
    dob_year_meta,
    email_amazon,
    email_google,
    email_mailbox,
    email_trimmed_lower,
    first_initial_meta,
    gender_meta,
    maid_lower,
    phone_digits_with_country_code,
    phone_e164,
    sha256_hex,
    state_meta,
    zip_clear,
    zip_meta,
)

from .test_normalization import rejects


# -- e-mail: Google (DV360, Data Manager) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [  # googleads/data-manager-python tests/formatter_test.py, and the "Format user data" guide's examples
        ("QuinnY@EXAMPLE.com", "quinny@example.com"),
        ("Jefferson.Loves.hiking@gmail.com", "jeffersonloveshiking@gmail.com"),
        ("Jefferson.LOVES.Hiking@googlemail.com", "jeffersonloveshiking@googlemail.com"),  # the domain is kept
        ("Cloudy.SanFrancisco+shopping@googlemail.com", "cloudysanfrancisco@googlemail.com"),
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com"),  # other domains keep dots and +tags
        ("  ALEXZ@example.com   ", "alexz@example.com"),
    ],
)
def test_email_google_follows_googles_formatter(raw: str, expected: str) -> None:
    assert email_google(raw, None) == expected


def test_email_google_hash_matches_googles_published_digest() -> None:
    digest = "509e933019bb285a134a9334b8bb679dff79d0ce023d529af4bd744d47b4fd8a"  # Google's test vector
    assert sha256_hex(email_google("  alexz@EXAMPLE.com   ", None)) == digest


@pytest.mark.parametrize("raw", [" ...@gmail.com", "+news@googlemail.com", "quinn", " @googlemail.com"])
def test_email_google_refuses_what_googles_formatter_refuses(raw: str) -> None:
    rejects(email_google, raw)


def test_meta_keeps_gmail_dots_and_tags_and_mailbox_is_not_googles_form() -> None:
    assert email_trimmed_lower("J.Doe+x@Gmail.com", None) == "j.doe+x@gmail.com"
    assert email_google("J.Doe+x@GoogleMail.com", None) == "jdoe@googlemail.com"
    assert email_mailbox("J.Doe+x@GoogleMail.com", None) == "jdoe@gmail.com"  # clustering only, not a platform


@pytest.mark.parametrize("rule", [email_trimmed_lower, email_google, email_amazon, email_mailbox])
def test_a_pre_hashed_email_is_never_called_malformed(rule) -> None:
    digest = sha256_hex("jane@example.com")
    for given in (digest, digest.upper(), f" {digest} "):
        reason = rejects(rule, given)
        assert "already SHA-256 hashed" in reason and "local@domain" not in reason


# -- phones ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        # Google's formatter tests: digits are read with their country code
        ("1 800 555 0100", None, "+18005550100"),
        ("18005550100", None, "+18005550100"),
        ("441134960987", None, "+441134960987"),
        ("+44-113-496-0987", None, "+441134960987"),
        ("(800)555-0100", "US", "+18005550100"),  # the guide's example
        ("+44 844 412 4653", None, "+448444124653"),  # Meta's example (-> 448444124653)
        ("44 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("442079460958", "US", "+442079460958"),  # not a US number: the international reading
        # extensions are dropped, not refused
        ("+1 415 555 0123 ext. 123", None, "+14155550123"),
        ("+1 415 555 0123 ext 123", None, "+14155550123"),
        ("+1 415 555 0123 extension 9", None, "+14155550123"),
        ("+1 415 555 0123x12", None, "+14155550123"),
        ("(415) 555-0123 x 12", "US", "+14155550123"),
        ("+1 415 555 0123 #12", None, "+14155550123"),
        ("+1-415-555-0123;ext=12", None, "+14155550123"),
        ("020 7946 0958 ext 4", "GB", "+442079460958"),
    ],
)
def test_phone_forms(raw: str, country: str | None, expected: str) -> None:
    assert phone_e164(raw, country) == expected
    assert phone_digits_with_country_code(raw, country) == expected[1:]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("020 7946 0958", "a national number (trunk zero) without a country"),
        ("2015550123", "a US number without its 1 reads as +20 (Egypt): ambiguous, refused"),
        ("(415) 555-0123", "a US national number without a country"),
    ],
)
def test_national_numbers_without_any_country_are_rejects(raw: str, why: str) -> None:
    assert "no country" in rejects(phone_e164, raw, None), why


@pytest.mark.parametrize(
    ("raw", "country"), [("1-800-FLOWERS", "US"), ("CALL 555 0123", "US"), ("1-800-FAX12", "US"), ("x12", None),
                         ("07700 900123", "GB"), ("+999 1234", None), ("12", "US")],
)
def test_vanity_and_invalid_numbers_are_rejects(raw: str, country: str | None) -> None:
    rejects(phone_e164, raw, country)


def test_a_phone_is_parsed_once_per_value_refusals_included() -> None:
    from crm_activation.sdk import normalization

    normalization._e164_or_reason.cache_clear()
    for _ in range(3):
        phone_e164("+1 415 555 0199", None)
        phone_digits_with_country_code("+1 415 555 0199", None)
        for rule in (phone_e164, phone_digits_with_country_code):
            with pytest.raises(InvalidIdentifier):
                rule("555-CALL-NOW", "US")
    info = normalization._e164_or_reason.cache_info()
    assert (info.misses, info.hits) == (2, 10)


# -- Meta: ZIP, state, city ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94103-1234", None, "94103"),  # NNNNN-NNNN is cut whatever the country (Meta's SDK cuts at the dash)
        ("94103-1234", "DE", "94103"),
        ("1000-001", "PT", "1000-001"),  # not the ZIP+4 shape: one Portuguese code
        ("2134", "US", "02134"),  # a Massachusetts ZIP that lost its leading zero
        ("2134-5678", "US", "02134"),
        ("21345678", "US", "02134"),
        ("2134", "AT", "2134"),  # four digits are a whole code in Austria
        ("2134", None, "2134"),  # and may be anywhere: no padding without the US
    ],
)
def test_zip_meta_shapes(raw: str, country: str | None, expected: str) -> None:
    assert zip_meta(raw, country) == expected


def test_zip_clear_pads_us_zip_codes_too() -> None:
    assert zip_clear("2134", "US") == "02134"
    assert zip_clear("2134", "AU") == "2134"


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("California", None, "ca"),  # unambiguous US state name, country unknown
        ("New York", None, "ny"),
        ("Georgia", None, "georgia"),  # also a country: left as written
        ("Florida", None, "florida"),  # also a department of Uruguay
        ("WA", None, "wa"),
        ("Tex.", None, "tex"),  # never cut to two letters as Meta's param builder does ("te")
        ("Georgia", "US", "ga"),
        ("Bavaria", "DE", "bavaria"),
    ],
)
def test_state_meta_maps_us_states_when_unambiguous(raw: str, country: str | None, expected: str) -> None:
    assert state_meta(raw, country) == expected


def test_state_meta_refuses_an_unknown_us_state() -> None:
    assert "US state" in rejects(state_meta, "Tex.", "US")


def test_city_keeps_accents_as_metas_docs_and_sdk_do() -> None:
    # Meta's param builder would give "montral"; its docs (UTF-8) and Python SDK keep the accent.
    assert city_meta("Montréal", "CA") == "montréal"
    assert sha256_hex(city_meta(" Montre\u0301al ", "CA")) == sha256_hex("montréal")


# -- Meta: GEN, DOBY/DOBM/DOBD, FI ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [("F", "f"), ("female", "f"), ("Woman", "f"), ("Mrs.", "f"), ("m", "m"), ("MALE", "m"), ("Boy", "m"),
     ("Mr.", "m")],
)
def test_gender_meta(raw: str, expected: str) -> None:
    assert gender_meta(raw, None) == expected


@pytest.mark.parametrize("raw", ["X", "non-binary", "U", "unknown", "", "prefer not to say"])
def test_gender_meta_refuses_what_gen_cannot_say(raw: str) -> None:
    rejects(gender_meta, raw)


@pytest.mark.parametrize(
    ("raw", "ymd"),
    [
        ("1985-07-14", ("1985", "07", "14")),
        ("1985-7-4", ("1985", "07", "04")),
        ("1985/07/14", ("1985", "07", "14")),
        ("1985-07-14T00:00:00Z", ("1985", "07", "14")),
        ("1985-07-14 00:00:00", ("1985", "07", "14")),
        ("19850714", ("1985", "07", "14")),
        ("14/07/1985", ("1985", "07", "14")),  # day over 12: unambiguous
        ("07/14/1985", ("1985", "07", "14")),  # US order, unambiguous
        ("04.04.1985", ("1985", "04", "04")),  # both readings agree
        ("1900-01-01", ("1900", "01", "01")),
    ],
)
def test_date_of_birth_gives_metas_three_fields(raw: str, ymd: tuple[str, str, str]) -> None:
    assert (dob_year_meta(raw, None), dob_month_meta(raw, None), dob_day_meta(raw, None)) == ymd


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("03/04/1985", "ambiguous"),  # 3 April or March 4
        ("1985-02-30", "calendar"),
        ("1899-12-31", "1900"),  # Meta DOBY: 1900 to the current year
        (f"{datetime.date.today().year + 1}-01-01", "future"),
        ("14/07/85", "not a date"),  # two-digit year
        ("July 14, 1985", "not a date"),
    ],
)
def test_date_of_birth_refusals(raw: str, reason: str) -> None:
    for rule in (dob_year_meta, dob_month_meta, dob_day_meta):
        assert reason in rejects(rule, raw)


def test_first_initial_meta() -> None:
    assert first_initial_meta("Jane", None) == "j"
    assert first_initial_meta(" 'Élodie", None) == "é"
    assert first_initial_meta("J.", None) == "j"
    rejects(first_initial_meta, "--")


# -- mobile ad ids, countries --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "raw",
    ["AECE52E7-03EE-455A-B3C4-E57283966239", "aece52e703ee455ab3c4e57283966239", "AECE52E703EE455AB3C4E57283966239",
     " aece52e7-03ee-455a-b3c4-e57283966239 "],
)
def test_maids_with_or_without_hyphens_become_metas_madid_form(raw: str) -> None:
    # Meta's customer-list example IDFA; MADID: "all lowercase, keep hyphens"
    assert maid_lower(raw, None) == "aece52e7-03ee-455a-b3c4-e57283966239"


@pytest.mark.parametrize("raw", ["00000000000000000000000000000000", "aece52e703ee455ab3c4e5728396623", "g" * 32])
def test_maids_that_are_not_ids_are_rejects(raw: str) -> None:
    rejects(maid_lower, raw)


def test_country_names_reach_the_platform_rules() -> None:
    assert country_upper("Deutschland", None) == "DE"
    assert country_upper("England", None) == "GB"
