"""Ranking segments, countries and treatments for budget: incremental conversions per contact, and per unit of cost.

The quantity that moves budget is what one more contact of a segment (or one more contact given a treatment)
brings: the difference of conversion rates, i.e. incremental conversions per test contact. Dividing by the
cost per test contact turns it into incremental conversions per unit of spend. Both come with their
fixed-horizon interval, because a ranking by point estimates alone would reward the noisiest small cuts;
the verdict says whether the interval excludes zero, and overlapping intervals mean the order between two
rows is not established. Cuts below the minimum size are ranked after all others, whatever their estimate.

Treatment "(none)" (contacts offered no channel) costs nothing and can cause nothing: it is a placebo check,
not a spend option, and is left out.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ledger import NONE_LABEL
from .results import CutResult

RANKED = ("segment", "country", "treatment", "segment × treatment")


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One row of the spend ranking (per KPI and dimension, best first).

    Attributes:
        kpi: the KPI.
        dimension: segment, country, treatment, or segment × treatment.
        cut: the cut's key.
        rank: 1 = best point estimate in its KPI and dimension (small cuts come after the others).
        n_test: test contacts (incremental conversions scale with them).
        per_contact: incremental conversions per test contact (the rate difference), with its interval.
        incremental: incremental conversions in the test group, with its interval.
        cost_per_contact: average cost per test contact, when costs are configured.
        per_cost: incremental conversions per unit of cost, with its interval.
        cost_per_incremental: cost of one incremental conversion (only when the difference is clearly > 0).
        verdict: "positive", "negative" or "unclear" (the interval contains zero).
        small: the cut is below the minimum size.
        q_value: the cut's Benjamini-Hochberg q-value over its KPI's cuts (the summary grows or cuts only cuts
            that stay clear after correcting for the number compared).
    """

    kpi: str
    dimension: str
    cut: str
    rank: int
    n_test: int
    per_contact: float | None
    per_contact_low: float | None
    per_contact_high: float | None
    incremental: float | None
    incremental_low: float | None
    incremental_high: float | None
    cost_per_contact: float | None
    per_cost: float | None
    per_cost_low: float | None
    per_cost_high: float | None
    cost_per_incremental: float | None
    verdict: str
    small: bool
    q_value: float | None = None


def recommend(results: list[CutResult]) -> list[Recommendation]:
    """The spend ranking of every KPI over segments, countries, treatments and the shown segment × treatment pairs.

    Args:
        results: the report's cut results (their intervals are at the report's level).

    Returns:
        Rows grouped by KPI and dimension, ranked by incremental conversions per unit of cost when costs are
        configured, else per test contact.
    """
    rows: list[Recommendation] = []
    kpis = list(dict.fromkeys(r.kpi for r in results))
    for kpi in kpis:
        for dimension in RANKED:
            chosen = [
                r for r in results
                if r.kpi == kpi and r.dimension == dimension and NONE_LABEL not in _treatments(r)
                and r.final.cumulative.diff is not None
            ]
            chosen.sort(key=lambda r: (not r.small, _score(r)), reverse=True)  # small cuts last, flagged
            rows += [_row(r, rank) for rank, r in enumerate(chosen, start=1)]
    return rows


def _treatments(result: CutResult) -> tuple[str, ...]:
    if "treatment" not in result.dimension:
        return ()
    return (result.values[-1],)


def _score(result: CutResult) -> float:
    diff = result.final.cumulative.diff or 0.0
    cost = result.cost_per_test_contact
    return diff / cost if cost else diff


def _row(result: CutResult, rank: int) -> Recommendation:
    c = result.final.cumulative
    cost = result.cost_per_test_contact
    per_cost = low = high = per_incremental = None
    if cost and c.diff is not None and c.diff_low is not None and c.diff_high is not None:
        per_cost, low, high = c.diff / cost, c.diff_low / cost, c.diff_high / cost
        per_incremental = cost / c.diff if c.diff_low > 0 else None
    if c.diff_low is not None and c.diff_low > 0:
        verdict = "positive"
    elif c.diff_high is not None and c.diff_high < 0:
        verdict = "negative"
    else:
        verdict = "unclear"
    return Recommendation(
        kpi=result.kpi, dimension=result.dimension, cut=result.key, rank=rank, n_test=c.n_test,
        per_contact=c.diff, per_contact_low=c.diff_low, per_contact_high=c.diff_high,
        incremental=c.incremental, incremental_low=c.incremental_low, incremental_high=c.incremental_high,
        cost_per_contact=cost, per_cost=per_cost, per_cost_low=low, per_cost_high=high,
        cost_per_incremental=per_incremental, verdict=verdict, small=result.small, q_value=result.q_value,
    )
