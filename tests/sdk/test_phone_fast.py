"""The compiled phone reader (`phone_fast`) against `phonenumbers` itself, on a generated corpus of every region.

The corpus starts from libphonenumber's example number of every region and number type (and of the non-geographic
calling codes), mutates the national number (random tails, a digit dropped or added, a bad first digit, too short,
too long, leading zeros) and writes each variant the ways CRMs do: E.164, international with spaces, bare digits,
`00` and the region's own exit code, national with and without the trunk prefix, "(0)", punctuation, extensions,
letters, odd whitespace, stray `+`. Each value is read with its own country, none, another country and invalid
ones. The same seed gives the same corpus, so a failure names a value that fails again.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from phonenumbers.phonemetadata import PhoneMetadata

from crm_activation import InvalidIdentifier
from crm_activation.sdk import normalization, phone_fast

_TYPES = (
    PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST, PhoneNumberType.VOIP, PhoneNumberType.PERSONAL_NUMBER, PhoneNumberType.PAGER,
    PhoneNumberType.UAN, PhoneNumberType.VOICEMAIL,
)
_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
_NON_GEO = sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS)
#: Variants drawn per region (and per non-geographic calling code), besides the canonical forms: 254 x 60.
_PER_REGION = 60
_SUFFIXES = (" ext. 123", " ext 4", " extension 9", "x12", " x 7", " #12", ";ext=12", " ;ext=3", " x", " ext.")


def _examples(region: str) -> Iterator[phonenumbers.PhoneNumber]:
    for number_type in _TYPES:
        example = phonenumbers.example_number_for_type(region, number_type)
        if example is not None:
            yield example
    invalid = phonenumbers.invalid_example_number(region)
    if invalid is not None:
        yield invalid


def _mutations(nsn: str, rng: random.Random) -> list[str]:
    """The national number, and variants that stay in range, leave it, or change its length."""
    tail = min(4, len(nsn) - 1)
    digits = "0123456789"
    cut = rng.randrange(len(nsn))
    return [
        nsn,
        nsn,
        nsn[:-tail] + "".join(rng.choice(digits) for _ in range(tail)),
        nsn[:-tail] + "".join(rng.choice(digits) for _ in range(tail)),
        nsn[:-tail] + "".join(rng.choice(digits) for _ in range(tail)),
        nsn[:cut] + nsn[cut + 1:],
        nsn[:cut] + rng.choice(digits) + nsn[cut:],
        rng.choice(digits) + nsn[1:],
        nsn[: rng.randint(1, 4)],
        nsn + "".join(rng.choice(digits) for _ in range(rng.randint(3, 9))),
        "0" * rng.randint(1, 3) + nsn,
    ]


def _spaced(digits: str, rng: random.Random, separator: str = " ") -> str:
    groups, at = [], 0
    while at < len(digits):
        size = rng.randint(2, 4)
        groups.append(digits[at:at + size])
        at += size
    return separator.join(groups)


def _forms(country_code: int, nsn: str, region: str | None, rng: random.Random) -> list[str]:
    """How a CRM may hold this national number of this calling code (region None: a non-geographic code)."""
    metadata = PhoneMetadata.metadata_for_region(region, None) if region else None
    cc = str(country_code)
    forms = [
        f"+{cc}{nsn}", f"+{cc} {_spaced(nsn, rng)}", f"{cc}{nsn}", f"{cc} {_spaced(nsn, rng)}", f"00{cc}{nsn}",
        f"00 {cc} {_spaced(nsn, rng, '-')}", nsn, _spaced(nsn, rng, rng.choice(" .-/")),
        f"({nsn[:3]}) {nsn[3:6]}-{nsn[6:]}", f"+{cc}-{_spaced(nsn, rng, '.')}",
    ]
    if metadata is not None and metadata.national_prefix:
        trunk = metadata.national_prefix
        forms += [trunk + nsn, f"{trunk}{nsn[:2]} {_spaced(nsn[2:], rng)}", f"+{cc} ({trunk}){nsn}"]
    if metadata is not None:
        for exit_code in (metadata.preferred_international_prefix, metadata.international_prefix):
            if exit_code and exit_code.isdigit():
                forms += [f"{exit_code}{cc}{nsn}", f"{exit_code} {cc} {_spaced(nsn, rng)}"]
    if nsn.isdigit() and len(nsn) <= 17:
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(nsn))
        if nsn.startswith("0"):
            number.italian_leading_zero = True
            number.number_of_leading_zeros = len(nsn) - len(nsn.lstrip("0"))
        for style in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.RFC3966):
            forms.append(phonenumbers.format_number(number, style))
    return forms


def _decorated(form: str, rng: random.Random) -> str:
    """Most forms as they are; some with an extension, letters, odd whitespace, a stray `+` or other digits."""
    draw = rng.random()
    if draw < 0.70:
        return form
    if draw < 0.80:
        return form + rng.choice(_SUFFIXES)
    at = rng.randrange(len(form) + 1)
    odd = rng.choice(("A", "x", "\u00a0", "\t", " ", "+", "++", "\u0663", "\uff11", "*", ",", "\n", "#", "(0)"))
    if draw < 0.85:
        return form[:at] + odd + form[at:]
    if draw < 0.90:
        return rng.choice(("+", "++", " ", "tel:", "\u00a0")) + form
    if draw < 0.95:
        return form + rng.choice(("+", " ", "-", ")", "."))
    return form.replace(" ", rng.choice(("\u00a0", "\t", "  ", "\u2009")))


def _countries(region: str | None, rng: random.Random) -> list[str | None]:
    others = [None, rng.choice(_REGIONS), rng.choice(("US", "GB", "DE", "FR", "IN", "BR", "CA", "AU"))]
    odd = rng.choice(("XX", "ZZ", "001", "UK", "", "gb", "us", (region or "us").lower()))
    return [region, *others, odd]


def _canonical(example: phonenumbers.PhoneNumber, region: str | None) -> list[str]:
    """The example itself as E.164, national (with and without trunk prefix) and with an exit code."""
    nsn, cc = phonenumbers.national_significant_number(example), example.country_code
    forms = [f"+{cc}{nsn}", nsn, f"00{cc}{nsn}", phonenumbers.format_number(example, PhoneNumberFormat.NATIONAL)]
    metadata = PhoneMetadata.metadata_for_region(region, None) if region else None
    if metadata is not None and metadata.national_prefix:
        forms.append(metadata.national_prefix + nsn)
    if metadata is not None and metadata.preferred_international_prefix:
        forms.append(f"{metadata.preferred_international_prefix}{cc}{nsn}")
    return forms


def _corpus(seed: int = 12) -> list[tuple[str, str | None]]:
    """Each example's canonical forms, and `_PER_REGION` drawn variants per region and non-geographic code."""
    rng = random.Random(seed)
    pairs: dict[tuple[str, str | None], None] = {}
    sources: list[tuple[str | None, list[phonenumbers.PhoneNumber]]] = [
        (region, list(_examples(region))) for region in _REGIONS
    ]
    sources += [(None, [n]) for n in map(phonenumbers.example_number_for_non_geo_entity, _NON_GEO) if n is not None]
    for region, examples in sources:
        candidates: list[tuple[str, str | None]] = []
        for example in examples:
            pairs.update(dict.fromkeys((form, region) for form in _canonical(example, region)))
            nsn = phonenumbers.national_significant_number(example)
            for mutated in _mutations(nsn, rng):
                for form in _forms(example.country_code, mutated, region, rng):
                    candidates += [(_decorated(form, rng), country) for country in _countries(region, rng)]
        for pair in rng.sample(candidates, min(_PER_REGION, len(candidates))):
            pairs[pair] = None
    return list(pairs)


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, str | None]]:
    return _corpus()


def test_fast_reading_equals_phonenumbers_on_the_generated_corpus(corpus: list[tuple[str, str | None]]) -> None:
    unsure = 0
    outcomes: Counter[bool] = Counter()
    regions_read: set[str] = set()
    for value, country in corpus:
        reference = normalization.reference_e164_or_reason(value, country)
        fast = normalization.fast_e164_or_reason(value, country)
        if fast is None:
            unsure += 1
        else:
            assert fast == reference, (value, country)
            if fast[1]:
                regions_read.add(phonenumbers.region_code_for_number(phonenumbers.parse(fast[0])))
        assert normalization.e164_or_reason(value, country) == reference, (value, country)
        outcomes[reference[1]] += 1
    assert len(corpus) > 20_000
    assert unsure < 0.02 * len(corpus), f"{unsure} of {len(corpus)} values fell back to phonenumbers"
    # Not a corpus of refusals only: many valid numbers, of nearly every region, read by the fast path itself.
    assert outcomes[True] > 0.25 * len(corpus) and outcomes[False] > 0.25 * len(corpus), outcomes
    assert len(regions_read) > 0.95 * len(_REGIONS)


def test_reader_equals_phonenumbers_for_every_region(corpus: list[tuple[str, str | None]]) -> None:
    """`read_e164` alone, on the compact forms of the corpus, with the `+` and with a default region each."""
    rng = random.Random(3)
    compacts = set()
    for value, _country in corpus:
        try:
            compacts.add(normalization._compact_phone(value))
        except InvalidIdentifier:
            continue
    unsure = checked = 0
    for text in sorted(compacts):
        region = None if text.startswith("+") else rng.choice([*_REGIONS, None, "XX"])
        try:
            fast = phone_fast.read_e164(text, region)
        except phone_fast.Unsure:
            unsure += 1
            continue
        checked += 1
        assert fast == normalization._reference_e164(text, region), (text, region)
    assert checked > 10_000 and unsure < 0.02 * len(compacts)


def test_plain_values_take_a_shortcut_with_the_same_compact_form(corpus: list[tuple[str, str | None]]) -> None:
    """The shortcut of `_compact_phone` gives what the extension and character rules give."""
    plain = [value for value, _ in corpus if normalization._PLAIN_PHONE.fullmatch(value.strip())]
    assert len(plain) > 5_000
    for value in plain:
        by_rules = re.sub(r"[\s().\-/]", "", normalization._PHONE_EXTENSION.sub("", value.strip()))
        assert normalization._PHONE_CHARS.match(by_rules) or not by_rules
        assert normalization._compact_phone(value) == by_rules, value


def test_without_the_fast_reader_phonenumbers_answers_alone(
    corpus: list[tuple[str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    sample = random.Random(5).sample(corpus, 300)
    expected = [normalization.e164_or_reason(value, country) for value, country in sample]
    monkeypatch.setattr(normalization, "_FAST_READ", None)
    assert all(normalization.fast_e164_or_reason(value, country) is None for value, country in sample)
    assert [normalization.e164_or_reason(value, country) for value, country in sample] == expected


def test_stray_plus_signs_are_read_as_phonenumbers_reads_them() -> None:
    # Several leading "+" count as one, trailing ones are dropped, one inside the digits is no number.
    for text, region in (("++442079460958", None), ("442079460958+", "GB"), ("+44+2079460958", None), ("+++", None)):
        assert phone_fast.read_e164(text, region) == normalization._reference_e164(text, region), text
    assert phone_fast.read_e164("++442079460958", None) == "+442079460958"


def test_inputs_outside_the_compiled_domain_fall_back_to_phonenumbers() -> None:
    # Non-ASCII digits and a "+" number read with a default region are left to phonenumbers.
    for text, region in (("\u0664\u0664", "EG"), ("+442079460958", "GB"), ("44 20", "GB")):
        with pytest.raises(phone_fast.Unsure):
            phone_fast.read_e164(text, region)
    assert normalization.fast_e164_or_reason("١٢٣", "EG") is not None  # refused before any reader: not digits 0-9


# -- properties ------------------------------------------------------------------------------------------------
_prefixes = st.sampled_from(["", "", "+", "00", "0", "011", "+0", "1", "810", "+1"])
_region_or_none = st.sampled_from([*_REGIONS, None, "XX", "001"])
_EXAMPLE_NSNS = sorted(
    {phonenumbers.national_significant_number(n) for r in _REGIONS for n in _examples(r)}
)


@settings(max_examples=400, deadline=None)
@given(prefix=_prefixes, digits=st.text(alphabet="0123456789", max_size=19), region=_region_or_none)
def test_random_digit_strings_read_alike(prefix: str, digits: str, region: str | None) -> None:
    value = prefix + digits
    fast = normalization.fast_e164_or_reason(value, region)
    assert fast is None or fast == normalization.reference_e164_or_reason(value, region)


@settings(max_examples=400, deadline=None)
@given(
    prefix=_prefixes,
    nsn=st.sampled_from(_EXAMPLE_NSNS),
    tail=st.text(alphabet="0123456789", max_size=5),
    cut=st.integers(min_value=0, max_value=5),
    region=_region_or_none,
)
def test_example_ranges_with_random_tails_read_alike(
    prefix: str, nsn: str, tail: str, cut: int, region: str | None
) -> None:
    value = prefix + nsn[: max(1, len(nsn) - cut)] + tail
    fast = normalization.fast_e164_or_reason(value, region)
    assert fast is None or fast == normalization.reference_e164_or_reason(value, region)
