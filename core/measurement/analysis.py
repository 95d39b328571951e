"""The measurement report: every KPI × cut, per day and cumulative, with its checks and the spend ranking.

`analyse` turns counts into comparisons: for each day, the cumulative comparison (fixed-horizon interval and
p-value from `stats`, always-valid interval and p-value from `sequential`) and the daily one (first
conversions that day among contacts who had not converted yet). Each cut also gets a sample-ratio-mismatch
check (the project's chi-square test of its test/control split against the holdout fraction), a small-cut
flag, and a Benjamini-Hochberg q-value over the cuts of its KPI.

Single-dimension cuts are always shown (small ones flagged, not hidden); pairs of dimensions only when both
groups reach `min_cut_size`, because dozens of tiny cells would mostly show noise.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ..campaign.schema import HoldoutConfig, MeasurementConfig
from ..pipeline.holdout import chi_square_p_value
from .conversions import DAY, ConversionData
from .cuts import CutCounts, count_cuts, cumulative
from .ledger import Ledger
from .recommend import Recommendation, recommend
from .results import CutResult, DayPoint, flat
from .sequential import PRIOR_EFFECT, anytime_interval
from .stats import benjamini_hochberg, compare
from .summary import Summary, summarise


@dataclass
class MeasurementReport:
    """Everything `crm-activation report` shows, in one serializable object."""

    campaign: str
    start: str
    days: int
    window_days: int
    alpha: float
    kpis: list[str]
    contacts: dict[str, int]
    cuts: list[CutResult]
    hidden_pairs: int
    late_contacts: int
    conversions: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    recommendations: list[Recommendation] = field(default_factory=list)
    as_of: str = ""
    window_complete: bool = False
    warnings: list[str] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)

    def cut(self, kpi: str, key: str) -> CutResult | None:
        """The result of one KPI and cut, if shown."""
        return next((c for c in self.cuts if c.kpi == kpi and c.key == key), None)

    def of_dimension(self, kpi: str, dimension: str) -> list[CutResult]:
        """The shown cuts of one KPI and dimension."""
        return [c for c in self.cuts if c.kpi == kpi and c.dimension == dimension]

    def to_json(self, series: bool = True) -> dict[str, Any]:
        """A JSON-ready dict with the latest day of every cut.

        With `series`, overall and single-dimension cuts also carry their per-day series (pairs of dimensions
        would multiply the size by ten for charts nobody draws; daily.csv has them all).
        """
        cuts = []
        for cut in self.cuts:
            record = cut.summary()
            if series and " × " not in cut.dimension:
                record["days"] = [_day_json(point) for point in cut.days]
            cuts.append(record)
        head = {k: v for k, v in flat(self).items() if k not in ("cuts", "recommendations", "summary")}
        return {**head, "summary": asdict(self.summary), "cuts": cuts,
                "recommendations": [flat(r) for r in self.recommendations]}


def _day_json(point: DayPoint) -> dict[str, Any]:
    return {
        "day": point.day, "cumulative": flat(point.cumulative), "anytime": flat(point.anytime),
        "anytime_p": point.anytime_p, "daily": flat(point.daily),
    }


def report_days(ledger: Ledger, conversions: ConversionData, window_days: int) -> int:
    """Days the report covers: through the latest event or entry, never past the window."""
    last_entry = max(int((e.entered_at - ledger.start) // DAY) for e in ledger)
    return max(1, min(window_days, max(conversions.last_day, last_entry) + 1))


def cost_function(costs: dict[str, float]) -> Callable[[str], float] | None:
    """Treatment → cost per test contact: the treatment's own entry, else the sum of its platforms' costs."""
    if not costs:
        return None

    def cost(treatment: str) -> float:
        if treatment in costs:
            return costs[treatment]
        return sum(costs.get(platform, 0.0) for platform in treatment.split("+"))

    return cost


def analyse(
    ledger: Ledger, conversions: ConversionData, config: MeasurementConfig, holdout: HoldoutConfig,
    days: int | None = None, as_of: float | None = None,
) -> MeasurementReport:
    """Compare test with control for every KPI and cut.

    Args:
        ledger: the experiment.
        conversions: the accepted conversions (from `ConversionReader`).
        config: the campaign's measurement settings.
        holdout: the campaign's holdout settings (control fraction and ratio-mismatch threshold).
        days: days to cover; by default through the latest event, capped at the window.
        as_of: the report's time (Unix seconds), named in the warning about events dated after it.

    Returns:
        The report, with recommendations (see `recommend.py`).
    """
    covered = days or report_days(ledger, conversions, config.window_days)
    counts, late = count_cuts(ledger, conversions, covered, cost_function(config.costs))
    # Overall first, then each dimension's cuts by size, largest first (the order of tables and charts).
    order = {"overall": 0, "segment": 1, "treatment": 2, "variant": 3, "country": 4}
    counts.sort(key=lambda c: (order.get(c.dimension, 5), c.dimension, -c.totals("test") - c.totals("control")))
    results: list[CutResult] = []
    hidden = 0
    for cut in counts:
        n_test, n_control = cut.totals("test"), cut.totals("control")
        small = min(n_test, n_control) < config.min_cut_size
        if small and " × " in cut.dimension:
            hidden += 1
            continue
        for kpi in conversions.first_day:
            results.append(_result(cut, kpi, small, config, holdout))
    for kpi in conversions.first_day:
        ranked = [r for r in results if r.kpi == kpi and r.dimension != "overall"]
        for result, q in zip(ranked, benjamini_hochberg([r.final.cumulative.p_value for r in ranked]), strict=True):
            result.q_value = q
    overall = next((c for c in counts if c.key == "overall"), None)
    report = MeasurementReport(
        campaign=ledger.campaign,
        start=dt.datetime.fromtimestamp(ledger.start, dt.UTC).isoformat(timespec="seconds"),
        days=covered,
        window_days=config.window_days,
        alpha=config.alpha,
        kpis=[kpi.name for kpi in config.kpis],
        contacts={g: overall.totals(g) if overall else 0 for g in ("test", "control")},
        cuts=results,
        hidden_pairs=hidden,
        late_contacts=late,
        conversions=_account(conversions),
    )
    report.notes = _notes(report, ledger, hidden, config)
    report.recommendations = recommend(results)
    if as_of is not None:
        report.as_of = dt.datetime.fromtimestamp(as_of, dt.UTC).isoformat(timespec="seconds")
    # Complete: the covered days reach the window's end, or the report is made after it (no more events can come).
    end = ledger.start + config.window_days * DAY
    report.window_complete = covered >= config.window_days or (as_of is not None and as_of >= end)
    report.warnings = _warnings(report)
    report.summary = summarise(
        {kpi: report.cut(kpi, "overall") for kpi in report.kpis}, report.recommendations, report.alpha,
        report.window_complete,
    )
    return report


def _warnings(report: MeasurementReport) -> list[str]:
    """What must be read before the figures: rows that cannot be right, and a broken split."""
    account, warnings = report.conversions, []
    if account["before_entry"]:
        warnings.append(
            f"{account['before_entry']:,} conversion rows are dated before their contact entered the experiment "
            "(or before the campaign started) and are not counted: the campaign cannot have caused them. Check the "
            "export's time zone, and that it is this campaign's (rows in conversion-rejects.csv)."
        )
    if account["after_report"]:
        when = f" ({report.as_of})" if report.as_of else ""
        warnings.append(
            f"{account['after_report']:,} conversion rows are dated after the report's time{when} and are not "
            "counted: events cannot be in the future, so the export's clock or time zone is wrong "
            "(rows in conversion-rejects.csv)."
        )
    overall = report.cut(report.kpis[0], "overall") if report.kpis else None
    if overall is not None and overall.srm_mismatch:
        warnings.append(
            "The test/control split fails the sample-ratio check: the groups are not what the holdout fraction "
            "implies, so every uplift below may be biased (a filter applied to one group?)."
        )
    return warnings


def _result(cut: CutCounts, kpi: str, small: bool, config: MeasurementConfig, holdout: HoldoutConfig) -> CutResult:
    n_t, n_c = cumulative(cut.entered["test"]), cumulative(cut.entered["control"])
    new_t, new_c = cut.converted[kpi]["test"], cut.converted[kpi]["control"]
    x_t, x_c = cumulative(new_t), cumulative(new_c)
    points: list[DayPoint] = []
    running: float | None = None
    for day in range(len(n_t)):
        anytime = anytime_interval(x_t[day], n_t[day], x_c[day], n_c[day], config.alpha, PRIOR_EFFECT)
        if anytime.p_value is not None:
            running = anytime.p_value if running is None else min(running, anytime.p_value)
        before_t, before_c = (x_t[day - 1], x_c[day - 1]) if day else (0, 0)
        points.append(
            DayPoint(
                day=day,
                cumulative=compare(x_t[day], n_t[day], x_c[day], n_c[day], config.alpha),
                anytime=anytime,
                anytime_p=running,
                daily=compare(new_t[day], n_t[day] - before_t, new_c[day], n_c[day] - before_c, config.alpha),
            )
        )
    srm_p = chi_square_p_value(n_t[-1], n_c[-1], holdout.fraction) if cut.randomized else None
    return CutResult(
        kpi=kpi, key=cut.key, dimension=cut.dimension, values=cut.values, days=points, small=small,
        randomized=cut.randomized, srm_p=srm_p, srm_mismatch=srm_p is not None and srm_p < holdout.srm_alpha,
        value_test=cut.value[kpi]["test"], value_control=cut.value[kpi]["control"],
        cost_per_test_contact=cut.cost_test / n_t[-1] if config.costs and n_t[-1] else None,
    )


def _account(conversions: ConversionData) -> dict[str, Any]:
    return {
        "rows_read": conversions.rows_read,
        "accepted": conversions.accepted,
        "not_in_experiment": conversions.not_in_experiment,
        "rejected": dict(conversions.rejected.most_common()),
        "before_entry": conversions.before_entry,
        "after_report": conversions.after_report,
        "field_issues": conversions.field_issues,
        "events": dict(conversions.events),
        "converters": {kpi: len(first) for kpi, first in conversions.first_day.items()},
    }


def _notes(report: MeasurementReport, ledger: Ledger, hidden: int, config: MeasurementConfig) -> list[str]:
    tests = sum(1 for c in report.cuts if c.dimension != "overall")
    level = round(100 * (1 - config.alpha))
    notes = [
        f"Fixed-horizon {level}% intervals and p-values are valid for a single look at the data. "
        f"Always-valid {level}% intervals (normal-mixture confidence sequences) stay valid however often the "
        "report is read: decide on those when you look every day.",
        f"{tests} KPI × cut comparisons are shown besides overall; if the campaign did nothing, about "
        f"{config.alpha * tests:.0f} of them would still have p < {config.alpha:g}. Read the q-values "
        "(Benjamini-Hochberg false discovery rate, per KPI) before acting on one cut.",
        f"Cuts with fewer than {config.min_cut_size} contacts in a group are flagged small; "
        f"{hidden} pairs of dimensions below that size are not shown.",
        "Overall includes every contact of the ledger (intention to treat), also those offered no channel.",
    ]
    if any(c.key == "treatment=(none)" for c in report.cuts):
        notes.append(
            "Treatment (none): contacts offered no channel. The campaign cannot act on them, so their uplift "
            "should be zero: a placebo check of the whole measurement."
        )
    if ledger.variant_source:
        notes.append(f"Email variants: {ledger.variant_source}.")
    if report.late_contacts:
        notes.append(f"{report.late_contacts} contacts entered after the covered days and are not counted.")
    mismatches = sum(1 for c in report.cuts if c.srm_mismatch and c.kpi == report.kpis[0])
    if mismatches:
        notes.append(
            f"{mismatches} cuts fail the sample-ratio check: their split is not what the holdout fraction "
            "implies, which usually means a data problem (a filter applied to one group); distrust them."
        )
    return notes
