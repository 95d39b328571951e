"""Declarative segmentation: the campaign's ordered rules put each contact in one segment.

Rules are data (field, operator, value), not an expression language: email teams and analysts edit campaign
files, and a mini-language would be one more thing to secure and document. The first rule whose conditions
all hold wins; a contact that already carries a segment in the CRM keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..campaign.schema import Condition, SegmentRule
from ..sdk.contact import Attributes, Contact


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


def condition_holds(condition: Condition, attributes: Attributes) -> bool:
    """Whether one condition holds for a contact's attributes."""
    return _OPERATORS[condition.op](attributes.value(condition.field), condition.value)


class Segmenter:
    """Assigns segments by the campaign's ordered rules."""

    def __init__(self, rules: Sequence[SegmentRule], default_segment: str) -> None:
        self.rules = tuple(rules)
        self.default_segment = default_segment

    def segment_of(self, contact: Contact) -> str:
        """The contact's CRM segment if it has one, else the first matching rule's, else the default."""
        if contact.attributes.segment:
            return contact.attributes.segment
        for rule in self.rules:
            if all(condition_holds(condition, contact.attributes) for condition in rule.when):
                return rule.name
        return self.default_segment

    def apply(self, contact: Contact) -> Contact:
        """The contact with its segment set."""
        segment = self.segment_of(contact)
        if segment == contact.attributes.segment:
            return contact
        attributes = contact.attributes.model_copy(update={"segment": segment})
        return contact.model_copy(update={"attributes": attributes})
