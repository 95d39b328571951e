"""Turning one source row into a `Contact`, or into the reasons it cannot be one.

The parser only reads and types: identifiers are trimmed, never normalized (each platform has its own rules,
applied later), and a row that cannot become a contact yields fatal `FieldIssue`s naming the file, row and
column — never the value, which may be personal data. It runs on every input row, so the per-column work
is decided once per column name and cached, and each row builds its three small models exactly once.

Column meanings (after the campaign's `columns` mapping, standard name → source column; a standard name that
is not mapped is read from the column of the same name; a mapping to a non-standard name renames the column):

- `contact_id` (required), identifier columns (`email`, `phone`, names, address parts, `country`, `gender`,
  `date_of_birth`, `maid`, `external_id`, `uid2`, `rampid`, `xandr_uid`);
- `country`: an ISO 3166-1 code (alpha-2 or alpha-3, any case) or a name in English or a local language
  ("Deutschland", "U.S.", "England"), resolved by `sdk/countries.py` and stored as the alpha-2 code;
- `segment`, `lifecycle_stage`, `funnel_stage` (missing → the campaign's default stage);
- `preferred_categories`: "a|b", "a;b" or a JSON list; `score`: a number, kept in `extra`;
- `consent_ad_user_data`, `consent_ad_personalization`, `consent_email`: yes/no (empty = not recorded);
- `email_unsubscribed`: yes/no, empty = no; a value that is neither counts as *unsubscribed* (fail safe);
- `history_*` columns → `attributes.history` without the prefix, every other column → `attributes.extra`;
  numbers written canonically ("12", "-3", "0.25", "-.5", "1e3") become `int` / `float`, while "007" or
  "1_000" stay text (an account number keeps its zeros); blank cells are kept as None so every contact of a
  source has the same keys (templates with StrictUndefined can rely on them).

Fatal (the row is rejected): a malformed source row (field: the column at fault when the source could tell,
else "*"), a blank `contact_id`. Non-fatal: a `country` that names no country (the contact is kept without
one: its other identifiers still reach the platforms its lack of a country allows), a consent or unsubscribe
value that is not yes/no, a `score` that is not a number. An issue's
`field` is the source's own column name, as the person fixing the file sees it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..sdk.contact import Attributes, Consent, Contact
from ..sdk.countries import country_code
from ..sdk.identifier_kinds import IdentifierKind
from .sources import SourceRow

HISTORY_PREFIX = "history_"
_ID, _IDENT, _COUNTRY, _TEXT, _CATS, _SCORE, _CONSENT, _UNSUB, _HISTORY, _EXTRA = range(10)
_MAX_PLANNED = 10_000

_CONSENT_COLUMNS = {
    "consent_ad_user_data": "ad_user_data",
    "consent_ad_personalization": "ad_personalization",
    "consent_email": "email_marketing",
}
STANDARD_COLUMNS: tuple[str, ...] = (
    "contact_id",
    *(kind.value for kind in IdentifierKind),
    "segment",
    "lifecycle_stage",
    "funnel_stage",
    "preferred_categories",
    "score",
    *_CONSENT_COLUMNS,
    "email_unsubscribed",
)
_BOOLEANS = {
    "true": True, "false": False, "yes": True, "no": False, "y": True, "n": False,
    "1": True, "0": False, "granted": True, "denied": False, "t": True, "f": False,
}
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][-+]?[0-9]+)?|[eE][-+]?[0-9]+)|-?\.[0-9]+")
_CATEGORY_SPLIT = re.compile(r"[|;]")
_NUMBER_START = frozenset("-.0123456789")
_UNKNOWN_COUNTRY = "not a country code or name; contact kept without a country"

@dataclass(frozen=True, slots=True)
class FieldIssue:
    """A problem with one field of one row; `fatal` issues keep the row from becoming a contact.

    `reason` is worded the same for every row with the problem (the run summary counts by it); `detail`, when
    set, adds this row's particulars (line span, byte offset) for the rejects file.
    """

    source: str
    row: int
    field: str
    reason: str
    fatal: bool
    detail: str | None = None

    def __str__(self) -> str:
        return f"{self.source}:{self.row}: {self.field}: {self.detail or self.reason}"


class ParsedRow(NamedTuple):
    """The outcome for one row: a contact (None when any issue is fatal) and every issue found."""

    contact: Contact | None
    issues: tuple[FieldIssue, ...] = ()


def parse_bool(value: Any) -> bool | None:
    """True/False for yes/no spellings (and JSON booleans, 1/0); None for empty; ValueError otherwise."""
    if value is None or value is True or value is False:
        return value
    if isinstance(value, int | float):
        if value in (0, 1):
            return bool(value)
        raise ValueError("not a yes/no value")
    text = str(value).strip()
    if not text:
        return None
    result = _BOOLEANS.get(text)
    if result is None:
        result = _BOOLEANS.get(text.lower())
        if result is None:
            raise ValueError("not a yes/no value")
    return result


def typed_value(value: Any) -> Any:
    """A cell as an attribute value: trimmed text, `int` / `float` when canonically numeric, None when blank."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return None
    if text[0] in _NUMBER_START:
        if text.isdigit() and text.isascii() and (text[0] != "0" or len(text) == 1):
            return int(text)
        if _INT.fullmatch(text):
            return int(text)
        if _FLOAT.fullmatch(text):
            return float(text)
    return text


def _text(value: Any) -> str:
    if type(value) is str:
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _categories(value: Any) -> tuple[str, ...]:
    if type(value) is str and "[" not in value and ";" not in value:
        return tuple(part for part in (p.strip() for p in value.split("|")) if part) if value else ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            with contextlib.suppress(ValueError):
                value = json.loads(text)
        if isinstance(value, str):
            return tuple(part for part in (p.strip() for p in _CATEGORY_SPLIT.split(text)) if part)
    if isinstance(value, list | tuple):
        return tuple(part for part in (_text(p) for p in value) if part)
    text = _text(value)
    return (text,) if text else ()


class ContactParser:
    """Parses source rows into contacts; build one per source and reuse it for every row."""

    def __init__(self, columns: Mapping[str, str], default_stage: str) -> None:
        self.columns = dict(columns)
        self.default_stage = default_stage
        self.id_column = self.columns.get("contact_id", "contact_id")
        self._plan: dict[str, tuple[int, Any]] = {}
        for name in STANDARD_COLUMNS:
            if name not in self.columns:
                self._plan[name] = self._action(name)
        for name, source_column in self.columns.items():
            self._plan[source_column] = self._action(name)
        self._idents = {column: arg for column, (code, arg) in self._plan.items() if code == _IDENT}

    @staticmethod
    def _action(name: str) -> tuple[int, Any]:
        if name == "contact_id":
            return _ID, None
        if name == "country":
            return _COUNTRY, None
        if name in IdentifierKind._value2member_map_:
            return _IDENT, IdentifierKind(name)
        if name in ("segment", "lifecycle_stage", "funnel_stage"):
            return _TEXT, name
        if name == "preferred_categories":
            return _CATS, None
        if name == "score":
            return _SCORE, None
        if name in _CONSENT_COLUMNS:
            return _CONSENT, _CONSENT_COLUMNS[name]
        if name == "email_unsubscribed":
            return _UNSUB, None
        if name.startswith(HISTORY_PREFIX) and len(name) > len(HISTORY_PREFIX):
            return _HISTORY, name[len(HISTORY_PREFIX) :]
        return _EXTRA, name

    def _unplanned(self, column: str) -> tuple[int, Any]:
        """A column the mapping did not plan for: history or extra, never a standard field that was remapped."""
        if column.startswith(HISTORY_PREFIX) and len(column) > len(HISTORY_PREFIX) and column not in self.columns:
            return _HISTORY, column[len(HISTORY_PREFIX) :]
        return _EXTRA, column

    def missing_columns(self, present: Iterable[str]) -> list[str]:
        """The explicitly mapped source columns that a source does not have (to warn about a typo once)."""
        have = set(present)
        return [column for column in self.columns.values() if column not in have]

    def parse(self, row: SourceRow) -> ParsedRow:
        """Parse one row; never raises for bad data (that is what the issues are for)."""
        if row.error is not None:
            issue = FieldIssue(row.source, row.row, row.column or "*", row.error, True, row.detail)
            return ParsedRow(None, (issue,))
        plan = self._plan
        idents = self._idents
        issues: list[FieldIssue] = []
        fatal = False
        contact_id = ""
        identifiers: dict[IdentifierKind, str] = {}
        attrs: dict[str, Any] = {}
        consent: dict[str, bool | None] = {}
        history: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for column, value in row.fields.items():
            kind = idents.get(column)
            if kind is not None:  # the most common case, kept short: identifiers are only trimmed here
                text = value.strip() if type(value) is str else _text(value)
                if text:
                    identifiers[kind] = text
                continue
            action = plan.get(column)
            if action is None:
                action = self._unplanned(column)
                if len(plan) < _MAX_PLANNED:  # JSON Lines keys can be anything; keep the cache bounded
                    plan[column] = action
            code, arg = action
            if code == _HISTORY or code == _EXTRA:  # noqa: SIM109 - two int compares beat building a tuple
                if type(value) is str:
                    value = value.strip()
                    value = (typed_value(value) if value[0] in _NUMBER_START else value) if value else None
                (history if code == _HISTORY else extra)[arg] = value
            elif code == _CONSENT:
                flag = _BOOLEANS.get(value) if type(value) is str else None
                if flag is None:  # not one of the exact spellings: let the full parser decide (blank → None)
                    try:
                        flag = parse_bool(value)
                    except ValueError:
                        reason = "not a yes/no value; not recorded"
                        issues.append(FieldIssue(row.source, row.row, column, reason, False))
                consent[arg] = flag
            elif code == _ID:
                contact_id = _text(value)
            elif code == _COUNTRY:
                text = _text(value)
                if text:
                    iso = country_code(text)
                    if iso is None:  # the contact stays, without a country (the campaign's default_country rules)
                        issues.append(FieldIssue(row.source, row.row, column, _UNKNOWN_COUNTRY, False))
                    else:
                        identifiers[IdentifierKind.COUNTRY] = iso
            elif code == _TEXT:
                attrs[arg] = _text(value) or None
            elif code == _UNSUB:
                try:
                    attrs["email_unsubscribed"] = bool(parse_bool(value))
                except ValueError:
                    attrs["email_unsubscribed"] = True
                    reason = "not a yes/no value; treated as unsubscribed"
                    issues.append(FieldIssue(row.source, row.row, column, reason, False))
            elif code == _CATS:
                attrs["preferred_categories"] = _categories(value)
            elif code == _SCORE:
                score = typed_value(value)
                if isinstance(score, str | bool):
                    issues.append(FieldIssue(row.source, row.row, column, "not a number; ignored", False))
                    score = None
                extra["score"] = score
        if not contact_id:
            fatal = True
            issues.append(FieldIssue(row.source, row.row, self.id_column, "missing contact id", True))
        if fatal:
            return ParsedRow(None, tuple(issues))
        if not attrs.get("funnel_stage"):
            attrs["funnel_stage"] = self.default_stage
        contact = Contact(
            contact_id=contact_id,
            identifiers=identifiers,
            attributes=Attributes(consent=Consent(**consent), history=history, extra=extra, **attrs),
            source=row.source,
            row=row.row,
        )
        return ParsedRow(contact, tuple(issues) if issues else ())
