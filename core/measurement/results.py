"""What one KPI in one cut came to: per-day comparisons and the checks, as plain dataclasses.

Their own module so that the analysis that computes them and the ranking and renderers that read them all
depend on this one, not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .sequential import AnytimeInterval
from .stats import Comparison


def flat(record: Any) -> dict[str, Any]:
    """A flat dataclass as a dict (dataclasses.asdict deep-copies every value: ten times slower here)."""
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


@dataclass(frozen=True, slots=True)
class DayPoint:
    """One day of one cut and KPI.

    Attributes:
        day: 0-based day since the campaign's first run.
        cumulative: everything up to the end of this day (fixed-horizon interval: valid for one look).
        anytime: always-valid intervals of the cumulative data (valid at every look together).
        anytime_p: the always-valid p-value: the smallest look p-value so far.
        daily: first conversions on this day among contacts who had not converted before it.
    """

    day: int
    cumulative: Comparison
    anytime: AnytimeInterval
    anytime_p: float | None
    daily: Comparison


@dataclass
class CutResult:
    """One KPI in one cut, over the covered days."""

    kpi: str
    key: str
    dimension: str
    values: tuple[str, ...]
    days: list[DayPoint]
    small: bool
    randomized: bool
    srm_p: float | None
    srm_mismatch: bool
    value_test: float
    value_control: float
    cost_per_test_contact: float | None
    q_value: float | None = None

    @property
    def final(self) -> DayPoint:
        """The latest day: the cumulative result the report leads with."""
        return self.days[-1]

    def summary(self) -> dict[str, Any]:
        """A flat record of the latest cumulative result (one CSV row)."""
        final = self.final
        record: dict[str, Any] = {
            "kpi": self.kpi, "cut": self.key, "dimension": self.dimension, "day": final.day,
            **flat(final.cumulative),
            "anytime_diff_low": final.anytime.diff_low, "anytime_diff_high": final.anytime.diff_high,
            "anytime_uplift_low": final.anytime.uplift_low, "anytime_uplift_high": final.anytime.uplift_high,
            "anytime_p_value": final.anytime_p, "q_value": self.q_value,
            "srm_p_value": self.srm_p, "srm_mismatch": self.srm_mismatch, "small": self.small,
            "randomized": self.randomized, "value_test": self.value_test, "value_control": self.value_control,
            "cost_per_test_contact": self.cost_per_test_contact,
        }
        return record
