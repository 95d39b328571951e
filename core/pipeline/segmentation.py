"""Declarative segmentation: the campaign's ordered rules put each contact in one segment.

Rules are data (field, operator, value), not an expression language: email teams and analysts edit campaign
files, and a mini-language would be one more thing to secure and document. The first rule whose conditions
all hold wins; a contact that already carries a segment in the CRM keeps it.

A CRM segment is kept as it is written, and `channels.by_segment` looks it up exactly, so a segment the
campaign never mentions silently escapes every segment restriction, and a `by_segment` key no contact has
restricts nobody. The `Segmenter` therefore counts the segments it hands out and words what looks wrong as
run-summary warnings (`warnings`). Precisely:

- *known* segments are the campaign's `segments` names, its `default_segment` and the `channels.by_segment`
  keys — every name a campaign file can give a segment;
- an *unknown segment value* is a segment a contact carries from the CRM that is none of those, compared
  exactly (as `by_segment` compares): "VIP" is unknown to a campaign that says "vip", and the warning says so;
- a `by_segment` key *matches no contact* when no contact routed in the run (test or control) ended in it.

Counting is one dictionary update per contact; at most `MAX_UNKNOWN_SEGMENTS` distinct unknown values are
remembered (a free-text CRM column could hold a value per contact), the contacts with any other are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from ..campaign.schema import Condition, SegmentRule
from ..sdk.contact import Contact


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _compare(op: str) -> Callable[[Any, Any], bool]:
    def compare(actual: Any, expected: Any) -> bool:
        left, right = _number(actual), _number(expected)
        if left is None or right is None:
            return False  # a missing or non-numeric value never passes a threshold
        return {">": left > right, ">=": left >= right, "<": left < right, "<=": left <= right}[op]

    return compare


def _equal(actual: Any, expected: Any) -> bool:
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None:
        return left == right
    return str(actual).casefold() == str(expected).casefold() if actual is not None else expected is None


def _member(actual: Any, expected: Any) -> bool:
    return any(_equal(actual, option) for option in (expected or ()))


def _contains(actual: Any, expected: Any) -> bool:
    if isinstance(actual, list | tuple | set | frozenset):
        return any(_equal(item, expected) for item in actual)
    return actual is not None and str(expected).casefold() in str(actual).casefold()


def _empty(actual: Any) -> bool:
    return actual is None or actual == "" or actual == () or actual == []


_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": _equal,
    "!=": lambda a, e: not _equal(a, e),
    ">": _compare(">"),
    ">=": _compare(">="),
    "<": _compare("<"),
    "<=": _compare("<="),
    "in": _member,
    "not in": lambda a, e: not _member(a, e),
    "contains": _contains,
    "is empty": lambda a, _e: _empty(a),
    "is not empty": lambda a, _e: not _empty(a),
}


class AttributeSource(Protocol):
    """Where a rule reads a contact's attributes: `Attributes`, or a row of a batch held by column."""

    def value(self, name: str) -> Any:
        """The attribute's value, looked up as `Attributes.value` does."""


def condition_holds(condition: Condition, attributes: AttributeSource) -> bool:
    """Whether one condition holds for a contact's attributes."""
    return _OPERATORS[condition.op](attributes.value(condition.field), condition.value)


#: Distinct unknown CRM segment values remembered per run; contacts with further ones are only counted.
MAX_UNKNOWN_SEGMENTS = 1000
#: Unknown segment values named in the run summary (the most common first); the rest are summed up in one line.
SHOWN_UNKNOWN_SEGMENTS = 10


class Segmenter:
    """Assigns segments by the campaign's ordered rules, counting the segments it assigns (see the module doc).

    `restricted`: the `channels.by_segment` keys, which are known segments too and should each match someone.
    The counts cover every contact the segmenter ever applied to: the engine builds one per run.
    """

    def __init__(
        self, rules: Sequence[SegmentRule], default_segment: str, restricted: Collection[str] = ()
    ) -> None:
        self.rules = tuple(rules)
        self.default_segment = default_segment
        self.restricted = tuple(restricted)
        self.known = frozenset((*(rule.name for rule in self.rules), default_segment, *self.restricted))
        #: contacts per segment: every known segment given, and the first `MAX_UNKNOWN_SEGMENTS` unknown ones
        self.counts: dict[str, int] = {}
        self._unknown_values = 0
        #: contacts whose unknown segment came after `MAX_UNKNOWN_SEGMENTS` others, so was not remembered
        self.unremembered = 0
        #: distinct unknown values remembered (None: all, in a batch worker, see `take_counts`)
        self.limit: int | None = MAX_UNKNOWN_SEGMENTS

    def segment_of(self, contact: Contact) -> str:
        """The contact's CRM segment if it has one, else the first matching rule's, else the default."""
        return self.segment_for(contact.attributes.segment, contact.attributes)

    def segment_for(self, crm_segment: str | None, attributes: AttributeSource) -> str:
        """`segment_of` from the CRM segment and the attributes the rules read."""
        if crm_segment:
            return crm_segment
        for rule in self.rules:
            if all(condition_holds(condition, attributes) for condition in rule.when):
                return rule.name
        return self.default_segment

    def assign(self, crm_segment: str | None, attributes: AttributeSource) -> str:
        """`segment_for`, counted (for `warnings`) as `apply` counts."""
        segment = self.segment_for(crm_segment, attributes)
        self._count(segment)
        return segment

    @property
    def fields(self) -> set[str]:
        """The attribute names the rules read."""
        return {condition.field for rule in self.rules for condition in rule.when}

    def apply(self, contact: Contact) -> Contact:
        """The contact with its segment set (and counted, for `warnings`)."""
        segment = self.segment_of(contact)
        self._count(segment)
        if segment == contact.attributes.segment:
            return contact
        attributes = contact.attributes.model_copy(update={"segment": segment})
        return contact.model_copy(update={"attributes": attributes})

    def take_counts(self) -> dict[str, int]:
        """The counts since the last call, every value remembered (a batch worker's), then start from none.

        A worker counts one batch at a time and `merge` applies the remembering limit, so the run's counts are
        those of counting every contact here, in order, whatever the batches.
        """
        taken = self.counts
        self.counts, self._unknown_values, self.limit = {}, 0, None
        return taken

    def merge(self, counts: dict[str, int]) -> None:
        """Count another segmenter's contacts (`take_counts`) as if they had been counted here, in order."""
        for segment, n in counts.items():
            self._count(segment)
            if segment in self.counts:
                self.counts[segment] += n - 1
            else:
                self.unremembered += n - 1

    def _count(self, segment: str) -> None:
        counts = self.counts
        seen = counts.get(segment)
        if seen is not None:
            counts[segment] = seen + 1
        elif segment in self.known:
            counts[segment] = 1
        elif self.limit is None or self._unknown_values < self.limit:
            self._unknown_values += 1
            counts[segment] = 1
        else:
            self.unremembered += 1

    def warnings(self) -> list[str]:
        """Run-summary warnings: unknown CRM segment values, then `by_segment` keys that matched no contact.

        Nothing is said about a run that segmented no contact: every rule matching nobody is then no news.
        """
        if not self.counts and not self.unremembered:
            return []
        warnings = []
        unknown = sorted(
            ((segment, n) for segment, n in self.counts.items() if segment not in self.known), key=lambda x: -x[1]
        )
        for segment, n in unknown[:SHOWN_UNKNOWN_SEGMENTS]:
            warnings.append(
                f"segment {_shown(segment)} from the CRM ({n} contact{'s' if n != 1 else ''}) is not a segment the "
                f"campaign names (segments, default_segment, channels.by_segment): no segment rule applies to it"
                + _near(segment, self.known)
            )
        more = len(unknown) - SHOWN_UNKNOWN_SEGMENTS
        if more > 0 or self.unremembered:
            contacts = sum(n for _, n in unknown[SHOWN_UNKNOWN_SEGMENTS:]) + self.unremembered
            values = f"{more}{'+' if self.unremembered else ''}"
            warnings.append(f"{values} more segment values from the CRM that the campaign does not name "
                            f"({contacts} contacts)")
        for segment in self.restricted:
            if not self.counts.get(segment):
                seen = [value for value in self.counts if value != segment]
                warnings.append(
                    f"channels.by_segment names segment {_shown(segment)}, which no contact is in: its restriction "
                    f"never applied" + _near(segment, seen)
                )
        return warnings


def _shown(segment: str) -> str:
    """A segment as a warning quotes it: repr (control characters visible), long CRM text cut short."""
    return repr(segment if len(segment) <= 60 else segment[:57] + "...")


def _near(segment: str, names: Collection[str]) -> str:
    """A hint when `segment` differs from one of `names` only in case or surrounding spaces."""
    key = segment.strip().casefold()
    near = sorted(name for name in names if name != segment and name.strip().casefold() == key)
    return f" (did you mean {', '.join(map(_shown, near))}? segment names are compared exactly)" if near else ""
