"""A batch of source records parsed into contacts, column by column (`ContactColumns`).

This is `ContactParser.parse` (onboarding.py) for a whole `RowBatch` at once, without a `Contact` per row: each
column is read in one pass, and a low-cardinality column (country, consent, segment, stage) is decided once per
distinct value. Only what routing reads is kept as columns: the contact id, identifiers (trimmed, never
normalized; the country as its ISO code), the segment and stage fields, consent, the unsubscribe flag, and the
attributes the campaign's rules name (`wanted`). The rest of a record stays in the batch; `contact(i)` builds
row `i`'s `Contact` from it with the row parser itself (e-mail personalizes with every attribute; a plugin veto
receives a contact), so the two can never disagree on what a row means.

Problems are found column by column too, but worded by the row parser: a row with any issue (rare) is parsed
again by `ContactParser.parse`, and its issues are that parse's, in its order.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from ..sdk.contact import Attributes, Contact
from ..sdk.countries import country_code
from ..sdk.identifier_kinds import IdentifierKind
from .batch_source import MISSING, RowBatch
from .onboarding import (
    _BOOLEANS,
    _CATS,
    _CONSENT,
    _COUNTRY,
    _EXTRA,
    _HISTORY,
    _ID,
    _IDENT,
    _NUMBER_START,
    _SCORE,
    _TEXT,
    _UNSUB,
    ContactParser,
    FieldIssue,
    _categories,
    _text,
    parse_bool,
    typed_value,
)

#: Attribute names whose value is a whole model or mapping (`Attributes.value`): rows are then asked one by one.
_WHOLE = frozenset({"consent", "history", "extra"})
_DECLARED = frozenset(Attributes.model_fields) - _WHOLE


def _trimmed(value: Any) -> str:
    return value.strip() if type(value) is str else _text(value)


def _attribute(value: Any) -> Any:
    """A history or extra cell as `ContactParser.parse` keeps it: trimmed and typed, blank as None."""
    if type(value) is str:
        value = value.strip()
        return (typed_value(value) if value[0] in _NUMBER_START else value) if value else None
    return value


@dataclass
class ContactColumns:
    """One batch of records as contacts, by column (see the module doc); index `i` is the batch's record `i`.

    Attributes:
        contact_id: "" where the record has none (it is then rejected).
        rejected: whether the record cannot become a contact (malformed, or no contact id).
        issues: record index → the record's problems, worded and ordered as `ContactParser.parse` gives them.
        identifiers: kind → trimmed value or None; COUNTRY holds the ISO 3166-1 alpha-2 code.
        text: "segment", "lifecycle_stage", "funnel_stage" → value or None (the stage defaults to the first).
        consent: "ad_user_data", "ad_personalization", "email_marketing" → True, False or None.
        unsubscribed: the e-mail unsubscribe flag.
        attributes: each wanted attribute name → its value as `Attributes.value` gives it (the segment as read).
    """

    batch: RowBatch
    parser: ContactParser
    contact_id: list[str]
    rejected: list[bool]
    issues: dict[int, tuple[FieldIssue, ...]]
    identifiers: dict[IdentifierKind, list[str | None]]
    text: dict[str, list[str | None]] = field(default_factory=dict)
    consent: dict[str, list[bool | None]] = field(default_factory=dict)
    unsubscribed: list[bool] = field(default_factory=list)
    attributes: dict[str, list[Any]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.contact_id)

    def row_identifiers(self, index: int) -> dict[IdentifierKind, str]:
        """Record `index`'s identifiers, as `Contact.identifiers` holds them."""
        return {kind: values[index] for kind, values in self.identifiers.items() if values[index]}  # type: ignore[misc]

    def contact(self, index: int) -> Contact:
        """Record `index` as the `Contact` the row parser makes of it, with the identifiers held here."""
        parsed = self.parser.parse(self.batch.source_row(index)).contact
        if parsed is None:
            raise ValueError(f"record {index} of the batch is rejected: it has no contact")
        return parsed.model_copy(update={"identifiers": self.row_identifiers(index)})


class ColumnsParser:
    """Parses batches with one `ContactParser`'s column meanings; `wanted`: the attribute names rules read."""

    def __init__(self, parser: ContactParser, wanted: Collection[str] = ()) -> None:
        self.parser = parser
        self.wanted = tuple(dict.fromkeys(wanted))
        self._countries: dict[str, str | None] = {}

    def ids(self, batch: RowBatch) -> tuple[list[str], list[bool]]:
        """Each record's contact id ("" when none) and whether it is rejected before routing (malformed, no id)."""
        contact_ids = [""] * len(batch)
        for column in batch.names:
            if self._action(column)[0] == _ID:
                contact_ids = [_text(v) if v is not MISSING else "" for v in batch.column(column)]
        rejected = [not cid for cid in contact_ids]
        for index in batch.errors:
            rejected[index] = True
        return contact_ids, rejected

    def link_columns(self, batch: RowBatch) -> ContactColumns:
        """Only what identity linking reads: contact id and identifiers, for every record not malformed."""
        return self._parse(batch, full=False)

    def parse(self, batch: RowBatch) -> ContactColumns:
        """Every column routing reads, and every record's problems."""
        return self._parse(batch, full=True)

    def _action(self, column: str) -> tuple[int, Any]:
        action = self.parser._plan.get(column)
        return action if action is not None else self.parser._unplanned(column)

    def _parse(self, batch: RowBatch, *, full: bool) -> ContactColumns:
        size = len(batch)
        errors = batch.errors
        flagged: set[int] = set(errors)
        contact_id = [""] * size
        identifiers: dict[IdentifierKind, list[str | None]] = {}
        text: dict[str, list[str | None]] = {}
        consent: dict[str, list[bool | None]] = {}
        unsubscribed = [False] * size
        history: dict[str, list[Any]] = {}
        extra: dict[str, list[Any]] = {}
        categories: list[Any] | None = None
        for column, values in batch.columns.items():
            code, arg = self._action(column)
            if code == _IDENT:
                identifiers[arg] = _merge(identifiers.get(arg), [_trimmed(v) or None if v is not MISSING else MISSING
                                                                 for v in values])
            elif code == _ID:
                contact_id = [_text(v) if v is not MISSING else "" for v in values]
            elif code == _COUNTRY:
                identifiers[IdentifierKind.COUNTRY] = self._country_column(values, flagged if full else None)
            elif not full:
                continue
            elif code == _TEXT:
                text[arg] = _merge(text.get(arg), [_text(v) or None if v is not MISSING else MISSING for v in values])
            elif code == _CONSENT:
                consent[arg] = _merge(consent.get(arg), _flags(values, flagged))
            elif code == _UNSUB:
                unsubscribed = _unsubscribed(values, flagged, unsubscribed)
            elif code == _CATS:
                categories = [_categories(v) if v is not MISSING else MISSING for v in values]
            elif code == _SCORE:
                extra["score"] = _merge(extra.get("score"), _scores(values, flagged))
            elif code in (_HISTORY, _EXTRA) and arg in self.wanted:
                target = history if code == _HISTORY else extra
                target[arg] = _merge(target.get(arg), [_attribute(v) if v is not MISSING else MISSING for v in values])
        rejected = [not cid for cid in contact_id]
        for index in errors:
            rejected[index] = True
        flagged.update(i for i, cid in enumerate(contact_id) if not cid)
        columns = ContactColumns(
            batch, self.parser, contact_id, rejected, {},
            {kind: _present(values) for kind, values in identifiers.items()},
        )
        columns.identifiers.setdefault(IdentifierKind.COUNTRY, [None] * size)
        for index in errors:  # a malformed record's cells are not read
            for values in columns.identifiers.values():
                values[index] = None
        if not full:
            return columns
        columns.issues = self._issues(batch, sorted(flagged))
        columns.text = {name: _present(values) for name, values in text.items()}
        columns.text.setdefault("segment", [None] * size)
        stage = self.parser.default_stage
        stages = columns.text.get("funnel_stage") or [None] * size
        columns.text["funnel_stage"] = [value or stage for value in stages]
        columns.consent = {name: _present(values) for name, values in consent.items()}
        columns.unsubscribed = unsubscribed
        columns.attributes = self._attributes(columns, history, extra, categories, size)
        return columns

    def _country_column(self, values: list[Any], flagged: set[int] | None) -> list[str | None]:
        """ISO codes by distinct spelling; an unknown country is None (and flags its row when parsing fully)."""
        known = self._countries
        codes: list[str | None] = []
        for index, value in enumerate(values):
            if value is MISSING:
                codes.append(MISSING)
                continue
            spelled = _text(value)
            if not spelled:
                codes.append(None)
                continue
            if spelled in known:
                iso = known[spelled]
            else:
                if len(known) >= 100_000:  # a free-text column: keep the memory bounded
                    known.clear()
                iso = known[spelled] = country_code(spelled)
            if iso is None and flagged is not None:
                flagged.add(index)
            codes.append(iso)
        return codes

    def _issues(self, batch: RowBatch, rows: list[int]) -> dict[int, tuple[FieldIssue, ...]]:
        found = {}
        for index in rows:
            issues = self.parser.parse(batch.source_row(index)).issues
            if issues:
                found[index] = issues
        return found

    def _attributes(
        self,
        columns: ContactColumns,
        history: dict[str, list[Any]],
        extra: dict[str, list[Any]],
        categories: list[Any] | None,
        size: int,
    ) -> dict[str, list[Any]]:
        """Each wanted attribute's values, looked up as `Attributes.value` does (history before extra)."""
        result: dict[str, list[Any]] = {}
        for name in self.wanted:
            if name in _WHOLE:
                continue  # asked of the row's contact (`RowAttributes.value`)
            if name in _DECLARED:
                if name == "preferred_categories":
                    values = _present(categories) if categories is not None else None
                    result[name] = [v if v is not None else () for v in values] if values else [()] * size
                elif name == "email_unsubscribed":
                    result[name] = list(columns.unsubscribed)
                else:
                    result[name] = list(columns.text.get(name) or [None] * size)
                continue
            own = history.get(name)
            other = extra.get(name)
            result[name] = [
                own[i] if own is not None and own[i] is not MISSING else (
                    other[i] if other is not None and other[i] is not MISSING else None
                )
                for i in range(size)
            ]
        return result


def _merge(earlier: list[Any] | None, later: list[Any]) -> list[Any]:
    """Two source columns with one meaning: per record, the later column's value unless that record lacks it."""
    if earlier is None:
        return later
    return [b if b is not MISSING else a for a, b in zip(earlier, later, strict=True)]


def _present(values: list[Any] | None) -> list[Any]:
    """MISSING (a JSON line without the key) read as None."""
    if values is None:
        return []
    return [None if v is MISSING else v for v in values]


def _flags(values: list[Any], flagged: set[int]) -> list[bool | None]:
    """Consent flags by distinct spelling; a value that is not yes/no is None and flags its row."""
    known: dict[str, bool | None] = {}
    out: list[bool | None] = []
    for index, value in enumerate(values):
        if value is MISSING:
            out.append(MISSING)
            continue
        if type(value) is str:
            flag = _BOOLEANS.get(value)
            if flag is None:
                if value in known:
                    flag = known[value]
                else:
                    flag = known[value] = _bool_or_none(value)
        else:
            flag = _bool_or_none(value)
        if flag is None and _not_blank(value):
            flagged.add(index)
        out.append(flag)
    return out


def _bool_or_none(value: Any) -> bool | None:
    try:
        return parse_bool(value)
    except ValueError:
        return None


def _not_blank(value: Any) -> bool:
    """Whether a consent cell says something (then None means it is not yes/no)."""
    return value is not None and (type(value) is not str or bool(value.strip()))


def _unsubscribed(values: list[Any], flagged: set[int], earlier: list[bool]) -> list[bool]:
    """The unsubscribe flag: blank is no; a value that is not yes/no is yes (fail safe) and flags its row."""
    out = list(earlier)
    for index, value in enumerate(values):
        if value is MISSING:
            continue
        try:
            out[index] = bool(parse_bool(value))
        except ValueError:
            out[index] = True
            flagged.add(index)
    return out


def _scores(values: list[Any], flagged: set[int]) -> list[Any]:
    out = []
    for index, value in enumerate(values):
        if value is MISSING:
            out.append(MISSING)
            continue
        score = typed_value(value)
        if isinstance(score, str | bool):
            flagged.add(index)
            score = None
        out.append(score)
    return out

