"""Normalization rules: tricky inputs per rule, reasons without PII, and properties with hypothesis."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_activation import InvalidIdentifier, normalization
from crm_activation.normalization import (
    alnum_lower_ascii,
    city_meta,
    country_lower,
    country_upper,
    email_amazon,
    email_trimmed_lower,
    external_id_trimmed,
    maid_lower,
    name_letters_lower,
    name_trimmed_lower,
    phone_digits_with_country_code,
    phone_e164,
    sha256_hex,
    state_meta,
    zip_clear,
    zip_meta,
)


def rejects(rule, value: str, country: str | None = None) -> str:
    with pytest.raises(InvalidIdentifier) as caught:
        rule(value, country)
    reason = str(caught.value)
    assert reason
    if value.strip():
        assert value.strip() not in reason, "the reason must not repeat the raw value (PII)"
    return reason


# -- hashing -------------------------------------------------------------------------------------------------
def test_sha256_matches_published_vectors() -> None:
    # Digests published in platform docs (X Ads "adsapi", Snap's "person@example.com") and the common test value.
    assert sha256_hex("adsapi") == "49e0be2aeccfb51a8dee4c945c8a70a9ac500cf6f5cb08112575f74db9b1470d"
    assert sha256_hex("person@example.com") == "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345"
    assert sha256_hex("test@example.com") == "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"


def test_sha256_hashes_utf8_bytes() -> None:
    assert sha256_hex("josé") == hashlib.sha256("josé".encode()).hexdigest()
    assert sha256_hex("josé") != hashlib.sha256("josé".encode("latin-1")).hexdigest()


def test_normalize_then_hash_pipeline() -> None:
    assert sha256_hex(email_trimmed_lower("  Person@Example.COM ", None)) == sha256_hex("person@example.com")


# -- email ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  John.Smith@Example.COM\t", "john.smith@example.com"),
        ("john.smith+promo@gmail.com", "john.smith+promo@gmail.com"),  # +tags kept
        ("j.o.h.n@gmail.com", "j.o.h.n@gmail.com"),  # gmail dots kept
        ("ÉLODIE@exemple.fr", "élodie@exemple.fr"),
        ("a@b.co.uk", "a@b.co.uk"),
    ],
)
def test_email_trimmed_lower(raw: str, expected: str) -> None:
    assert email_trimmed_lower(raw, None) == expected


@pytest.mark.parametrize("raw", ["john smith@example.com", "john@example", "@example.com", "john@@x.com", "john"])
def test_email_trimmed_lower_rejects(raw: str) -> None:
    rejects(email_trimmed_lower, raw)


def test_email_reasons() -> None:
    assert "whitespace" in rejects(email_trimmed_lower, "john smith@example.com")
    assert "empty" in rejects(email_trimmed_lower, "   ")
    assert "empty" in rejects(email_trimmed_lower, "")


def test_email_amazon_keeps_only_its_alphabet() -> None:
    assert email_amazon(" John_Doe+News@Example.com ", None) == "johndoenews@example.com"
    assert email_amazon("a.b-c@x-y.com", None) == "a.b-c@x-y.com"
    rejects(email_amazon, "not-an-email")


# -- phone ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (415) 555-0123", None, "+14155550123"),
        ("(415) 555-0123", "US", "+14155550123"),
        ("415.555.0123", "US", "+14155550123"),
        ("0044 20 7946 0958", None, "+442079460958"),
        ("0044 20 7946 0958", "GB", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),  # 00 is not the US exit code; still understood
        ("020 7946 0958", "GB", "+442079460958"),  # national trunk zero removed
        ("+44 (0)20 7946 0958", None, "+442079460958"),
        ("07911 123456", "GB", "+447911123456"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+39 06 1234 5678", None, "+390612345678"),  # Italy keeps its leading zero: it is part of the number
        ("+1 415 555 0123", "GB", "+14155550123"),  # an explicit + wins over the contact's country
    ],
)
def test_phone_formats(raw: str, country: str | None, expected: str) -> None:
    assert phone_e164(raw, country) == expected
    assert phone_digits_with_country_code(raw, country) == expected[1:]


def test_phone_without_any_country_is_rejected_with_that_reason() -> None:
    reason = rejects(phone_digits_with_country_code, "020 7946 0958", None)
    assert "no country code and no country to infer it from" in reason


@pytest.mark.parametrize(
    ("raw", "country"),
    [
        ("1-800-FLOWERS", "US"),  # letters
        ("1-800-FAX12", "US"),  # letters before what looks like an extension
        ("07700 900123", "GB"),  # Ofcom's drama range: not an assigned number
        ("12", "US"),
        ("", "US"),
        ("+999 1234", None),
    ],
)
def test_phone_rejects(raw: str, country: str | None) -> None:
    rejects(phone_e164, raw, country)


# -- names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Mary-Ann", "maryann"),
        ("  José ", "josé"),
        ("Jose\u0301", "josé"),  # decomposed accent composes to the same bytes
        ("O'Neil Jr.", "oneiljr"),
        ("ZOË", "zoë"),
        ("Łukasz", "łukasz"),
        ("Müller-Lüdenscheidt", "müllerlüdenscheidt"),
    ],
)
def test_name_letters_lower(raw: str, expected: str) -> None:
    assert name_letters_lower(raw, None) == expected


def test_name_letters_lower_rejects_no_letters() -> None:
    assert "no letters" in rejects(name_letters_lower, "--- 123")
    rejects(name_letters_lower, " ")


def test_name_trimmed_lower_for_google() -> None:
    assert name_trimmed_lower("  Mary Ann ", None) == "maryann"
    assert name_trimmed_lower("O'Neil", None) == "o'neil"
    assert name_trimmed_lower("Jose\u0301", None) == "josé"


def test_alnum_lower_ascii_for_amazon() -> None:
    assert alnum_lower_ascii("Zoë-Ann 2", None) == "zoeann2"
    assert alnum_lower_ascii(" SW1A 1AA ", "GB") == "sw1a1aa"
    assert alnum_lower_ascii("Ñuñoa", "CL") == "nunoa"
    rejects(alnum_lower_ascii, "ß")


# -- places --------------------------------------------------------------------------------------------------
def test_city_meta() -> None:
    assert city_meta(" San Francisco ", "US") == "sanfrancisco"
    assert city_meta("São Paulo", "BR") == "sãopaulo"
    assert city_meta("St. John's", "CA") == "stjohns"
    rejects(city_meta, "12345")


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("CA", "US", "ca"),
        ("California", "US", "ca"),
        ("new york", "US", "ny"),
        ("District of Columbia", "US", "dc"),
        (" n.y. ", "US", "ny"),
        ("Île-de-France", "FR", "îledefrance"),
        ("Georgia", None, "georgia"),  # no country: nothing is mapped
        ("New South Wales", "AU", "newsouthwales"),
    ],
)
def test_state_meta(raw: str, country: str | None, expected: str) -> None:
    assert state_meta(raw, country) == expected


def test_state_meta_rejects_unknown_us_state() -> None:
    assert "US state" in rejects(state_meta, "Ontario", "US")
    rejects(state_meta, "", "US")


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94103", "US", "94103"),
        ("94103-1234", "US", "94103"),
        (" 94103 1234 ", "US", "94103"),
        ("941031234", "US", "94103"),
        ("SW1A 1AA", "GB", "sw1a1aa"),
        ("75018", "FR", "75018"),
        ("1000-001", "PT", "1000-001"),
        ("K1A 0B1", None, "k1a0b1"),
    ],
)
def test_zip_meta(raw: str, country: str | None, expected: str) -> None:
    assert zip_meta(raw, country) == expected


@pytest.mark.parametrize("raw", ["213", "94103-12", "ABCDE", ""])
def test_zip_meta_rejects_bad_us_zip(raw: str) -> None:
    rejects(zip_meta, raw, "US")


def test_zip_clear_for_google() -> None:
    assert zip_clear(" 94103-1234 ", "US") == "94103"
    assert zip_clear(" SW1A  1AA ", "GB") == "SW1A 1AA"
    rejects(zip_clear, "941", "US")


def test_country_codes() -> None:
    assert country_upper(" gb ", None) == "GB"
    assert country_upper("uk", None) == "GB"
    assert country_lower("US", None) == "us"
    assert country_upper("United States", None) == "US"  # names too (countries.py)
    assert "ISO" in rejects(country_upper, "Atlantis")
    rejects(country_lower, "ZZ")
    rejects(country_lower, "")


# -- device and own ids -------------------------------------------------------------------------------------
def test_maid_lower() -> None:
    assert maid_lower(" 6D92078A-8246-4BA4-AE5B-76104861E7DC ", None) == "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    rejects(maid_lower, "6d92078a82464ba4ae5b76104861e7d")  # 31 hex digits
    rejects(maid_lower, "not-a-uuid")
    assert "zeros" in rejects(maid_lower, "00000000-0000-0000-0000-000000000000")


def test_external_id_trimmed() -> None:
    assert external_id_trimmed("  CRM-0042 ", None) == "CRM-0042"
    rejects(external_id_trimmed, "   ")


def test_every_rule_has_a_docstring_naming_its_platforms() -> None:
    for name in normalization.__all__:
        doc = getattr(normalization, name).__doc__ or ""
        if name != "sha256_hex":
            assert any(p in doc for p in ("Meta", "Google", "Amazon", "LinkedIn")), name


# -- properties ----------------------------------------------------------------------------------------------
_local = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=20)
_emails = st.builds(lambda a, b, c: f"{a}@{b}.{c}", _local, _local, _local) | st.text(max_size=40)
_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30)


def _idempotent(rule, value: str, country: str | None = None) -> None:
    try:
        once = rule(value, country)
    except InvalidIdentifier:
        return
    assert rule(once, country) == once
    assert not any(c.isspace() for c in once)


@given(_emails)
def test_email_rules_idempotent_without_whitespace(value: str) -> None:
    _idempotent(email_trimmed_lower, value)
    _idempotent(email_amazon, value)
    _idempotent(normalization.email_google, value)


@given(_names)
def test_name_rules_idempotent_without_whitespace(value: str) -> None:
    for rule in (name_letters_lower, name_trimmed_lower, alnum_lower_ascii, city_meta):
        _idempotent(rule, value)
    _idempotent(state_meta, value, "US")
    _idempotent(zip_meta, value, "GB")


@given(st.text(alphabet="0123456789 +-()", max_size=20), st.sampled_from([None, "US", "GB", "FR", "DE"]))
def test_phone_e164_idempotent(value: str, country: str | None) -> None:
    # Only the E.164 form can be re-read without a country: the digits-only form drops the "+" on purpose.
    _idempotent(phone_e164, value, country)
