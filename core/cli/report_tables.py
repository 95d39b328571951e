"""The report in the terminal: the answer first, then one rich table per KPI and the ranking.

The answer is the warnings, a verdict per KPI and where to spend (the same sentences as the HTML summary); the
tables show overall, segments, treatments and variants.

Countries and pairs of dimensions are in the files (summary.csv, report.html): 25 countries × 3 KPIs would
bury the lines a reader needs first.
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..measurement import fmt
from ..measurement.analysis import MeasurementReport
from ..measurement.results import CutResult

SHOWN = ("overall", "segment", "treatment", "variant")


def print_report(report: MeasurementReport, console: Console, files: dict[str, str] | None = None) -> None:
    """Print the summary, the latest cumulative results, the spend ranking and the notes."""
    head = report.contacts
    console.print(
        f"[bold]{report.campaign}[/bold]: {head['test']:,} test / {head['control']:,} control contacts, "
        f"day {report.days} of {report.window_days} since {report.start}"
    )
    _print_summary(report, console)
    level = round(100 * (1 - report.alpha))
    for kpi in report.kpis:
        table = Table(title=f"{kpi} (cumulative)", title_justify="left")
        for column in ("cut", "test", "control", "rate test", "rate ctrl", "uplift",
                       f"{level}% CI fixed", f"{level}% CI always-valid", "incr. conv.", "p", "q", "flags"):
            table.add_column(column, justify="left" if column in ("cut", "flags") else "right")
        for dimension in SHOWN:
            for cut in report.of_dimension(kpi, dimension):
                table.add_row(*_cells(cut))
        console.print(table)
    _print_ranking(report, console)
    account = report.conversions
    rejected = sum(account["rejected"].values())
    console.print(
        f"Conversions: {account['rows_read']:,} rows read, {account['accepted']:,} counted, "
        f"{account['not_in_experiment']:,} not in the experiment, {account['before_entry']:,} dated before entry, "
        f"{account['after_report']:,} dated after the report's time, {rejected:,} rejected"
    )
    for note in report.notes:
        console.print(f"[dim]- {note}[/dim]")
    for name, path in (files or {}).items():
        console.print(f"{name:<16} {path}")


def _print_summary(report: MeasurementReport, console: Console) -> None:
    """Warnings, verdicts and spend advice, before any table (the same sentences as the HTML summary)."""
    for warning in report.warnings:
        console.print(f"[bold yellow]Warning:[/bold yellow] {escape(warning)}")
    console.print("[bold]Summary[/bold]")
    for verdict in report.summary.verdicts:
        console.print(f"  {escape(verdict.sentence)}")
    basis = "per 1,000 spent" if report.summary.per_cost else "per 1,000 test contacts (no costs configured)"
    console.print(f"[bold]Where to spend[/bold] (incremental conversions {basis}, grow / hold / cut)")
    for advice in report.summary.spend:
        console.print(f"  {escape(advice.sentence)}")


def _cells(cut: CutResult) -> list[str]:
    c, a = cut.final.cumulative, cut.final.anytime
    flags = []
    if cut.small:
        flags.append("small")
    if cut.srm_mismatch:
        flags.append("[red]SRM[/red]")
    if not cut.randomized:
        flags.append("not randomized")
    if c.note:
        flags.append(fmt.short_note(c.note))
    return [
        cut.key, f"{c.n_test:,}", f"{c.n_control:,}", fmt.pct(c.rate_test, 2), fmt.pct(c.rate_control, 2),
        fmt.pct(c.uplift, 1, True), fmt.interval(c.uplift_low, c.uplift_high),
        fmt.interval(a.uplift_low, a.uplift_high), fmt.number(c.incremental), fmt.p_value(c.p_value),
        fmt.p_value(cut.q_value), ", ".join(flags),
    ]


def _print_ranking(report: MeasurementReport, console: Console) -> None:
    rows = [r for r in report.recommendations if r.dimension in ("segment", "treatment")]
    if not rows:
        return
    costed = any(r.per_cost is not None for r in rows)
    table = Table(title="Where the campaign adds conversions (spend ranking)", title_justify="left")
    for column in ("kpi", "rank", "cut", "incr. per 1,000 test contacts", "interval", "verdict"):
        table.add_column(column, justify="right" if column in ("rank", "incr. per 1,000 test contacts") else "left")
    if costed:
        table.add_column("incr. per 1,000 spent", justify="right")
    for r in rows:
        per_k = None if r.per_contact is None else r.per_contact * 1000
        span = (
            "n/e" if r.per_contact_low is None or r.per_contact_high is None
            else f"[{r.per_contact_low * 1000:+.1f}, {r.per_contact_high * 1000:+.1f}]"
        )
        cells = [r.kpi, str(r.rank), r.cut + (" (small)" if r.small else ""), fmt.number(per_k), span, r.verdict]
        if costed:
            cells.append(fmt.number(None if r.per_cost is None else r.per_cost * 1000))
        table.add_row(*cells)
    console.print(table)
