"""Counting contacts and conversions per cut, group and day in one pass over the ledger.

A cut is a subset of the experiment both groups are compared in: everyone (`overall`), one country, segment
or treatment, a pair of these (`country=US & segment=high_potential`), or an email variant. Because the holdout
is drawn by hash within every country × segment stratum, each of these cuts is itself a randomized experiment
(variants are the exception when only test contacts carry one; see `ledger.py`).

The counts are per day so both the daily and the cumulative comparisons come from the same pass: contacts
entering on day d, and first conversions on day d, per group.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .conversions import DAY, ConversionData
from .ledger import EMAIL_PLATFORM, Exposure, Ledger

SINGLE = ("country", "segment", "treatment")
PAIRS = (("country", "segment"), ("country", "treatment"), ("segment", "treatment"))
GROUPS = ("test", "control")


@dataclass
class CutCounts:
    """Per-day counts of one cut.

    Attributes:
        key: the cut's name, e.g. `segment=high_potential` or `overall`.
        dimension: what it cuts by, e.g. `segment`, `country × segment`, `overall`.
        entered: group → contacts entering on each day.
        converted: KPI → group → first conversions on each day.
        value: KPI → group → total event value.
        cost_test: the summed per-contact cost of its test contacts (0 when no costs are configured).
        randomized: False for variant cuts whose control is a comparator, not a randomized twin.
    """

    key: str
    dimension: str
    entered: dict[str, list[int]]
    converted: dict[str, dict[str, list[int]]]
    value: dict[str, dict[str, float]]
    cost_test: float = 0.0
    randomized: bool = True
    values: tuple[str, ...] = field(default=())

    def totals(self, group: str) -> int:
        """Contacts of a group in the cut over the whole period."""
        return sum(self.entered[group])


def cut_keys(exposure: Exposure, variants: tuple[str, ...], matched: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """The (key, dimension, values) of every cut a contact belongs to."""
    attrs = {"country": exposure.country, "segment": exposure.segment, "treatment": exposure.treatment}
    keys: list[tuple[str, str, tuple[str, ...]]] = [("overall", "overall", ())]
    keys += [(f"{dim}={attrs[dim]}", dim, (attrs[dim],)) for dim in SINGLE]
    keys += [
        (f"{a}={attrs[a]} & {b}={attrs[b]}", f"{a} × {b}", (attrs[a], attrs[b])) for a, b in PAIRS
    ]
    if exposure.variant is not None and (matched or exposure.group == "test"):
        keys.append((f"variant={exposure.variant}", "variant", (exposure.variant,)))
    elif not matched and exposure.group == "control" and EMAIL_PLATFORM in exposure.reachable:
        # Control as comparator for every variant: the contacts email would have reached.
        keys += [(f"variant={v}", "variant", (v,)) for v in variants]
    return keys


def count_cuts(
    ledger: Ledger, conversions: ConversionData, days: int, cost: Callable[[str], float] | None = None
) -> tuple[list[CutCounts], int]:
    """Count every cut's contacts and first conversions per group and day.

    Args:
        ledger: the experiment.
        conversions: the accepted conversions.
        days: how many days the report covers (contacts entering later are left out).
        cost: treatment → cost per test contact, when costs are configured.

    Returns:
        The cuts in first-seen order (overall first) and how many contacts entered after the covered days.
    """
    kpis = list(conversions.first_day)
    variants = tuple(sorted({e.variant for e in ledger if e.variant and e.group == "test"}))
    cuts: dict[str, CutCounts] = {}
    late = 0
    for exposure in ledger:
        entry = max(0, int((exposure.entered_at - ledger.start) // DAY))
        if entry >= days:
            late += 1
            continue
        group = exposure.group
        firsts = [(kpi, conversions.first_day[kpi].get(exposure.contact_id)) for kpi in kpis]
        values = [(kpi, conversions.value[kpi].get(exposure.contact_id)) for kpi in kpis]
        contact_cost = cost(exposure.treatment) if cost is not None and group == "test" else 0.0
        for key, dimension, parts in cut_keys(exposure, variants, ledger.variants_matched):
            counts = cuts.get(key)
            if counts is None:
                counts = cuts[key] = _new(key, dimension, parts, kpis, days, ledger.variants_matched)
            counts.entered[group][entry] += 1
            counts.cost_test += contact_cost
            for kpi, day in firsts:
                if day is not None and day < days:
                    counts.converted[kpi][group][day] += 1
            for kpi, amount in values:
                if amount is not None:
                    counts.value[kpi][group] += amount
    return list(cuts.values()), late


def _new(key: str, dimension: str, parts: tuple[str, ...], kpis: list[str], days: int, matched: bool) -> CutCounts:
    return CutCounts(
        key=key,
        dimension=dimension,
        entered={g: [0] * days for g in GROUPS},
        converted={k: {g: [0] * days for g in GROUPS} for k in kpis},
        value={k: dict.fromkeys(GROUPS, 0.0) for k in kpis},
        randomized=dimension != "variant" or matched,
        values=parts,
    )


def cumulative(series: list[int]) -> list[int]:
    """Running totals of a per-day series."""
    total, out = 0, []
    for item in series:
        total += item
        out.append(total)
    return out
