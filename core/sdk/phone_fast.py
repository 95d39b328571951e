"""libphonenumber's parse-and-validate, for the shapes a CRM phone takes once compacted, from compiled metadata.

`phonenumbers` (the Python port of Google's libphonenumber) costs about 17 us per CRM phone (parse, validate,
format; bench/bench_phones.py), most of the 20 us a contact may take at the 50,000 contacts/s the pipeline aims
at: it is written for any text a person may type ("Tel: 1-800-FLOWERS ext. 2"), walks its metadata objects on
every call and builds a `PhoneNumber` per call. Onboarding only ever hands it a compacted value (an optional
leading `+` and ASCII digits, see `normalization._compact_phone`) and needs one string back: the E.164 form when
the number is valid, nothing otherwise. `read_e164` answers exactly that question, with the same metadata (taken
from the installed `phonenumbers`, compiled once per region on first use) and the same algorithm, step for step:

- `phonenumberutil.parse` (Java `PhoneNumberUtil.parseHelper`): viability, default-region check, country code
  from `+`, from the region's international prefix (`maybeStripInternationalPrefixAndNormalize`, not when the next
  digit is 0) or from the region's own code written without `+` (`maybeExtractCountryCode`), then the national
  prefix and carrier code (`maybeStripNationalPrefixAndCarrierCode`, with the transform rule of e.g. AR, BR, NANP
  islands), removed only when the rest has a possible length (`testNumberLength`), and the 17-digit cap;
- `is_valid_number` (`isValidNumber`): the region of the number among those sharing its calling code
  (`getRegionCodeForNumberFromRegionList`: leading digits, else full type match), then
  `getNumberTypeHelper` != UNKNOWN, i.e. the general description and one type's possible lengths and pattern;
- `format_number(..., E164)`: `+`, calling code, national significant number (Italian leading zeros kept).

Anything outside that domain (other characters, non-ASCII digits, a `+` number read with a default region)
raises `Unsure`, and the caller asks `phonenumbers` itself. `phonenumbers` stays the reference:
tests/sdk/test_phone_fast.py compares both on tens of thousands of generated values of every region, so an
upgrade of `phonenumbers` that changes its algorithm, not only its metadata, fails there first. The function
names above are those of libphonenumber's PhoneNumberUtil.java (github.com/google/libphonenumber) and of its
Python port's `phonenumberutil` module, whose code each step here follows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import phonenumbers
from phonenumbers.phonemetadata import PhoneMetadata, PhoneNumberDesc

__all__ = ["Unsure", "read_e164"]

#: `phonenumberutil._MIN_LENGTH_FOR_NSN`, `_MAX_LENGTH_FOR_NSN`, `_MAX_INPUT_STRING_LENGTH`.
_MIN_NSN = 2
_MAX_NSN = 17
_MAX_INPUT = 250
#: `_test_number_length`'s results that make `parse` keep the national prefix (`ValidationResult`).
_POSSIBLE, _LOCAL_ONLY, _TOO_SHORT, _INVALID_LENGTH, _TOO_LONG = range(5)
_KEEP_PREFIX = frozenset({_TOO_SHORT, _LOCAL_ONLY, _INVALID_LENGTH})
#: The descriptions `_number_type_helper` tries after the general one, in its order.
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line")
_NON_GEO = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY


class Unsure(Exception):
    """The input is outside what `read_e164` reproduces exactly; ask `phonenumbers`."""


def _pattern(desc: PhoneNumberDesc | None) -> re.Pattern[str] | None:
    """The national number pattern of `desc`, or None when it has none (`_match_national_number` says False)."""
    if desc is None or not desc.national_number_pattern:
        return None
    return re.compile(desc.national_number_pattern)


def _check_combinable(pattern: str) -> None:
    """Raise `Unsure` for a pattern with an inline flag or a back reference: it cannot go into an alternation."""
    if "(?" in pattern.replace("(?:", "") or re.search(r"\\[1-9]", pattern):
        raise Unsure


class _Plan:
    """One region's (or non-geographic calling code's) metadata, compiled for `read_e164`."""

    __slots__ = ("country_code", "general", "idd", "leading_digits", "lengths", "local_lengths", "longest",
                 "national_prefix", "prefix_groups", "shortest", "transform", "typed")

    def __init__(self, metadata: PhoneMetadata) -> None:
        general = metadata.general_desc
        if general is None or not general.possible_length or metadata.country_code is None:
            raise Unsure  # `_test_number_length` would fail on it; no region has such metadata today
        self.country_code: int = metadata.country_code
        self.general = _pattern(general)
        self.lengths = frozenset(general.possible_length)
        self.local_lengths = frozenset(general.possible_length_local_only)
        self.shortest, self.longest = general.possible_length[0], general.possible_length[-1]
        self.idd = re.compile(metadata.international_prefix) if metadata.international_prefix is not None else None
        npp = metadata.national_prefix_for_parsing
        self.national_prefix = re.compile(npp) if npp else None
        self.prefix_groups = self.national_prefix.groups if self.national_prefix else 0
        self.transform = metadata.national_prefix_transform_rule or None
        if self.transform is not None and self.prefix_groups == 0:
            raise Unsure  # `_maybe_strip_national_prefix_carrier_code` would index an empty tuple
        self.leading_digits = re.compile(metadata.leading_digits) if metadata.leading_digits is not None else None
        self.typed = self._typed_patterns(metadata)

    def _typed_patterns(self, metadata: PhoneMetadata) -> dict[int, re.Pattern[str]]:
        """Per number length, one pattern that fully matches a number iff `_number_type_helper` gives it a type.

        That is: the general description's pattern (a lookahead to the end) and any type's pattern whose possible
        lengths include the length (or that lists none; mobile is skipped where libphonenumber skips it, when
        `same_mobile_and_fixed_line_pattern`). One alternation instead of up to ten calls: `fullmatch` backtracks
        into each alternative, so it matches iff one of them matches the whole number, as long as no pattern holds
        an inline flag or a back reference (libphonenumber's never do; checked here).
        """
        if self.general is None:
            return {}
        names = _TYPES if metadata.same_mobile_and_fixed_line_pattern else (*_TYPES, "mobile")
        typed: dict[int, list[str]] = {length: [] for length in range(_MAX_NSN + 1)}
        for name in names:
            desc = getattr(metadata, name)
            pattern = _pattern(desc)
            if pattern is None:
                continue
            _check_combinable(pattern.pattern)
            for length in desc.possible_length or typed:
                if length in typed:
                    typed[length].append(pattern.pattern)
        _check_combinable(self.general.pattern)
        general = rf"(?=(?:{self.general.pattern})\Z)"
        return {
            length: re.compile(general + "(?:" + "|".join(f"(?:{p})" for p in patterns) + ")")
            for length, patterns in typed.items()
            if patterns
        }

    def matches_general(self, number: str) -> bool:
        """`_match_national_number(number, general_desc, False)`: the pattern only, no length check."""
        return self.general is not None and self.general.fullmatch(number) is not None

    def length_result(self, number: str) -> int:
        """`_test_number_length(number, metadata)` for the UNKNOWN type, i.e. the general description's lengths."""
        length = len(number)
        if length in self.local_lengths:
            return _LOCAL_ONLY
        if length == self.shortest:
            return _POSSIBLE
        if length < self.shortest:
            return _TOO_SHORT
        if length > self.longest:
            return _TOO_LONG
        return _POSSIBLE if length in self.lengths else _INVALID_LENGTH

    def strip_national_prefix(self, number: str) -> str:
        """`_maybe_strip_national_prefix_carrier_code(number, metadata)[1]`: the number without trunk prefix."""
        prefix = self.national_prefix
        if not number or prefix is None:
            return number
        match = prefix.match(number)
        if match is None:
            return number
        viable = self.matches_general(number)
        if self.transform is None or match.group(self.prefix_groups) is None:
            rest = number[match.end():]
        else:
            rest = prefix.sub(self.transform, number, count=1)
        if viable and not self.matches_general(rest):
            return number
        return rest

    def is_typed(self, nsn: str) -> bool:
        """`_number_type_helper(nsn, metadata) != UNKNOWN`: general description, then any one type."""
        length = len(nsn)
        if length not in self.lengths:
            return False
        pattern = self.typed.get(length)
        return pattern is not None and pattern.fullmatch(nsn) is not None


#: Compiled plans by region and by calling code; None where the metadata is outside what this module compiles.
_REGION_PLANS: dict[str, _Plan | None] = {}
_CALLING_CODE_PLANS: dict[int, _Plan | None] = {}
_VALIDATORS: dict[int, Callable[[str], bool]] = {}


def _compiled(metadata: PhoneMetadata | None) -> _Plan | None:
    try:
        return None if metadata is None else _Plan(metadata)
    except Unsure:
        return None


def _region_plan(region: str) -> _Plan:
    if region not in _REGION_PLANS:
        _REGION_PLANS[region] = _compiled(PhoneMetadata.metadata_for_region(region, None))
    plan = _REGION_PLANS[region]
    if plan is None:
        raise Unsure
    return plan


def _calling_code_plan(country_code: int) -> _Plan:
    """`metadata_for_region_or_calling_code(cc, region_code_for_country_code(cc))`: the main region's plan."""
    if country_code not in _CALLING_CODE_PLANS:
        main = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code][0]
        if main == _NON_GEO:
            _CALLING_CODE_PLANS[country_code] = _compiled(PhoneMetadata.metadata_for_nongeo_region(country_code, None))
        else:
            try:
                _CALLING_CODE_PLANS[country_code] = _region_plan(main)
            except Unsure:
                _CALLING_CODE_PLANS[country_code] = None
    plan = _CALLING_CODE_PLANS[country_code]
    if plan is None:
        raise Unsure
    return plan


def _validator(country_code: int) -> Callable[[str], bool]:
    """`is_valid_number` for numbers of one calling code, as a function of the national significant number.

    With one region: that region's types. With several (NANP, +44, +7, ...): the first region of
    `COUNTRY_CODE_TO_REGION_CODE` whose leading digits start the number, or, for one without leading digits,
    whose types match it, decides (`_region_code_for_number_from_list`); none: invalid.
    """
    validator = _VALIDATORS.get(country_code)
    if validator is not None:
        return validator
    regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE[country_code]
    if len(regions) == 1:
        validator = _calling_code_plan(country_code).is_typed
    else:
        plans = tuple(_region_plan(region) for region in regions)

        def validator(nsn: str) -> bool:
            for plan in plans:
                if plan.leading_digits is not None:
                    if plan.leading_digits.match(nsn):
                        return plan.is_typed(nsn)
                elif plan.is_typed(nsn):
                    return True
            return False

    _VALIDATORS[country_code] = validator
    return validator


#: Calling codes as written, for `_country_code_and_rest`.
_CALLING_CODES = {str(code): code for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE}


def _country_code_and_rest(digits: str) -> tuple[int, str]:
    """`_extract_country_code`: the 1-3 leading digits that are a calling code, and what follows; 0 if none."""
    if digits[:1] != "0":
        for size in (1, 2, 3):
            code = _CALLING_CODES.get(digits[:size]) if len(digits) >= size else None
            if code is not None:
                return code, digits[size:]
    return 0, digits


def read_e164(text: str, region: str | None) -> str | None:
    """`format_number(parse(text, region), E164)` when the number is valid, None when parse fails or it is invalid.

    `text` is made of `+` and ASCII digits; with a leading `+`, `region` must be None, else it is a region code
    (unknown or lower-case codes are refused, as libphonenumber refuses them). Raises `Unsure` for other input.
    As `parse` does, trailing `+` are dropped (`_extract_possible_number`), several leading ones count as one
    (`_PLUS_CHARS_PATTERN`), and one inside the digits makes the text no phone number (`_VALID_PHONE_NUMBER`).
    """
    if len(text) > _MAX_INPUT:
        return None
    body = text.rstrip("+")
    digits = body.lstrip("+")
    if not (digits.isdigit() and digits.isascii()) and digits:
        if digits.isascii() and digits.replace("+", "").isdigit():
            return None
        raise Unsure
    if len(digits) != len(body):
        if region is not None:
            raise Unsure  # parse would retry an unknown calling code against the region (not needed here)
        return _read_international(digits)
    if region is None or len(digits) < _MIN_NSN or region not in phonenumbers.SUPPORTED_REGIONS:
        return None  # no region to read a national number with, or not viable (`_is_viable_phone_number`)
    return _read_national(digits, _region_plan(region))


def _read_international(digits: str) -> str | None:
    """The `+` branch of `parse`: at least 3 digits (viability), more than 2 after the `+`, a known calling code."""
    if len(digits) < 3:
        return None
    country_code, rest = _country_code_and_rest(digits)
    if country_code == 0:
        return None
    return _finish(country_code, rest, _calling_code_plan(country_code))


def _read_national(digits: str, plan: _Plan) -> str | None:
    """The no-`+` branch of `parse` with a valid default region: international prefix, own code, else national."""
    if plan.idd is not None and (match := plan.idd.match(digits)) is not None and digits[match.end():][:1] != "0":
        after = digits[match.end():]
        if len(after) <= _MIN_NSN:
            return None  # TOO_SHORT_AFTER_IDD
        country_code, rest = _country_code_and_rest(after)
        if country_code == 0:
            return None  # INVALID_COUNTRY_CODE
        return _finish(country_code, rest, _calling_code_plan(country_code))
    own = str(plan.country_code)
    if digits.startswith(own):
        potential = plan.strip_national_prefix(digits[len(own):])
        if (not plan.matches_general(digits) and plan.matches_general(potential)) or (
            plan.length_result(digits) == _TOO_LONG
        ):
            return _finish(plan.country_code, potential, _calling_code_plan(plan.country_code))
    return _finish(plan.country_code, digits, plan)


def _finish(country_code: int, national: str, plan: _Plan) -> str | None:
    """The end of `parse` (trunk prefix kept only if the rest is possible, length caps) and `is_valid_number`."""
    if len(national) < _MIN_NSN:
        return None
    potential = plan.strip_national_prefix(national)
    if plan.length_result(potential) not in _KEEP_PREFIX:
        national = potential
    if len(national) < _MIN_NSN or len(national) > _MAX_NSN:
        return None
    if not _validator(country_code)(national):
        return None
    return f"+{country_code}{national}"
