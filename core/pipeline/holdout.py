"""Holdout assignment and the balance check.

Assignment is a pure function of (salt, contact id): a contact's group never depends on input order or on
who else is in the file, so it stays the same every day and when contacts are added. Hashing gives each
stratum (country × segment) two random groups of expected equal size; the sample-ratio-mismatch check tells
when a stratum's split is further from the target than chance allows, which usually means a bug upstream
(a filter applied to one group only, duplicated ids).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

_SCALE = float(1 << 64)


class Group(StrEnum):
    """Which arm of the experiment a contact is in."""

    TEST = "test"
    CONTROL = "control"


def holdout_draw(salt: str, contact_id: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, contact id); SHA-256 so no one can steer a contact's group."""
    digest = hashlib.sha256(f"{salt}\x1f{contact_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_group(salt: str, contact_id: str, control_fraction: float) -> Group:
    """The contact's group: control when its draw falls below the control fraction."""
    return Group.CONTROL if holdout_draw(salt, contact_id) < control_fraction else Group.TEST


def chi_square_p_value(test: int, control: int, control_fraction: float) -> float:
    """p-value of the one-degree-of-freedom chi-square goodness-of-fit test of the observed split.

    With one degree of freedom the chi-square survival function is erfc(sqrt(x / 2)), so no SciPy is needed.
    """
    total = test + control
    if total == 0:
        return 1.0
    expected_control = total * control_fraction
    expected_test = total - expected_control
    statistic = (control - expected_control) ** 2 / expected_control + (test - expected_test) ** 2 / expected_test
    return math.erfc(math.sqrt(statistic / 2))


@dataclass(frozen=True)
class StratumBalance:
    """The split of one stratum and its sample-ratio-mismatch verdict."""

    stratum: tuple[str, ...]
    test: int
    control: int
    p_value: float
    mismatch: bool


class BalanceTracker:
    """Counts test and control per stratum as contacts stream by."""

    def __init__(self, control_fraction: float, alpha: float) -> None:
        self.control_fraction = control_fraction
        self.alpha = alpha
        self.counts: Counter[tuple[tuple[str, ...], Group]] = Counter()

    def add(self, stratum: tuple[str, ...], group: Group) -> None:
        """Count one contact."""
        self.counts[(stratum, group)] += 1

    def report(self) -> list[StratumBalance]:
        """Every stratum's balance, sorted by stratum."""
        strata = sorted({stratum for stratum, _ in self.counts})
        return [self._balance(stratum) for stratum in strata]

    def overall(self) -> StratumBalance:
        """The balance over all strata together."""
        test = sum(n for (_, group), n in self.counts.items() if group is Group.TEST)
        control = sum(n for (_, group), n in self.counts.items() if group is Group.CONTROL)
        return self._verdict(("all",), test, control)

    def _balance(self, stratum: tuple[str, ...]) -> StratumBalance:
        return self._verdict(stratum, self.counts[(stratum, Group.TEST)], self.counts[(stratum, Group.CONTROL)])

    def _verdict(self, stratum: tuple[str, ...], test: int, control: int) -> StratumBalance:
        p_value = chi_square_p_value(test, control, self.control_fraction)
        return StratumBalance(stratum, test, control, p_value, p_value < self.alpha)

    def mismatches(self) -> list[StratumBalance]:
        """Strata whose split is unlikely under the target fraction (the run warns about these)."""
        return [balance for balance in self.report() if balance.mismatch]


def strata_key(values: Iterable[str | None]) -> tuple[str, ...]:
    """A stratum key from attribute values, with missing values spelled out so they form their own stratum."""
    return tuple(value if value else "(none)" for value in values)
