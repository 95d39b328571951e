"""The self-contained HTML report: one file, inline CSS and SVG, no script and no network, readable offline.

It leads with the answer (`summary.py`): warnings that must be read first, a verdict per KPI and the spend
advice in words. Then per KPI the cumulative relative uplift by day with both interval bands, the daily uplift,
and forest plots by segment, treatment, country (and variant); then the spend ranking, the conversion rows'
account and the method notes that say which interval is which. Every value from the data is HTML-escaped:
segment names and variants come from CRM exports and templates.

Layout: the page must fit a 1280-px window and a phone: charts scale down with their viewBox, and wide tables
scroll inside their own box instead of widening the page (tests/measurement/test_report_layout.py checks this
in headless Chromium).
"""

from __future__ import annotations

from html import escape

from . import fmt
from .analysis import MeasurementReport
from .results import CutResult
from .svg import ForestRow, SeriesPoint, forest_chart, legend, series_chart

FORESTS = ("segment", "treatment", "country", "variant", "segment × treatment")

_CSS = """
body{font-family:"DejaVu Sans",Arial,sans-serif;margin:24px;color:#1a202c;max-width:1220px}
p,li,h1,h2{overflow-wrap:anywhere} th{white-space:nowrap}
svg.chart,svg.legend{max-width:100%;height:auto} .scroll{max-width:100%;overflow-x:auto}
#summary{background:#f7fafc;border:1px solid #cbd5e0;padding:4px 16px 8px;margin:12px 0}
#summary li{margin:4px 0;font-size:14px} .verdict-raised{color:#22543d} .verdict-lowered{color:#9b2c2c}
.warn{background:#fffaf0;border-left:4px solid #c05621;padding:6px 12px;margin:8px 0;font-size:13px}
@media (max-width:600px){body{margin:8px}}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #cbd5e0}
h3{font-size:14px;margin:16px 0 6px} .muted{color:#718096} .grid{display:flex;flex-wrap:wrap;gap:12px}
table{border-collapse:collapse;font-size:12px;margin:6px 0 12px} td,th{padding:3px 8px;border-bottom:1px solid #edf2f7}
th{background:#f7fafc;text-align:left} td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.flag{color:#c05621;white-space:nowrap} .bad{color:#c53030;font-weight:bold} .note{font-size:12px;margin:2px 0}
.box{background:#f7fafc;border-left:4px solid #2b6cb0;padding:8px 12px;margin:10px 0;font-size:13px}
"""


def render_html(report: MeasurementReport) -> str:
    """The whole report as one HTML document."""
    level = round(100 * (1 - report.alpha))
    body = [
        f"<h1>Incrementality: {escape(report.campaign)}</h1>",
        f'<p class="muted">Day {report.days} of {report.window_days} since {escape(report.start)} · '
        f"{report.contacts['test']:,} test / {report.contacts['control']:,} control contacts</p>",
        _summary(report),
        '<div class="box">'
        f"<b>Fixed-horizon</b> {level}% intervals and p-values are right for <i>one</i> look at the data. "
        f"<b>Always-valid</b> {level}% intervals hold at every look at once: when the report is read every day "
        "and a decision can be taken on any day, decide on the always-valid interval.</div>",
        legend(),
    ]
    for kpi in report.kpis:
        body.append(_kpi_section(report, kpi, level))
    body.append(_ranking(report))
    body.append(_account(report))
    body.append("<h2>Notes</h2>" + "".join(f'<p class="note">{escape(n)}</p>' for n in report.notes))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Incrementality report: {escape(report.campaign)}</title>"
        f'<meta name="viewport" content="width=device-width"><style>{_CSS}</style></head><body>'
        + "".join(body)
        + "</body></html>\n"
    )


def _kpi_section(report: MeasurementReport, kpi: str, level: int) -> str:
    overall = report.cut(kpi, "overall")
    parts = [f'<section class="kpi" id="kpi-{escape(kpi)}"><h2>{escape(kpi)}</h2>']
    if overall is None:
        return parts[0] + "<p>No contacts.</p></section>"
    c, a = overall.final.cumulative, overall.final.anytime
    parts.append(
        f"<p>Overall: test {fmt.pct(c.rate_test, 2)} vs control {fmt.pct(c.rate_control, 2)}, "
        f"uplift <b>{fmt.pct(c.uplift, 1, True)}</b> (fixed {level}% {fmt.interval(c.uplift_low, c.uplift_high)}, "
        f"always-valid {fmt.interval(a.uplift_low, a.uplift_high)}), "
        f"{fmt.number(c.incremental)} incremental conversions, p = {fmt.p_value(c.p_value)}"
        + (f' <span class="flag">({escape(c.note)})</span>' if c.note else "")
        + "</p>"
    )
    cumulative = [
        SeriesPoint(p.day, p.cumulative.uplift, (p.cumulative.uplift_low, p.cumulative.uplift_high),
                    (p.anytime.uplift_low, p.anytime.uplift_high))
        for p in overall.days
    ]
    daily = [
        SeriesPoint(p.day, p.daily.uplift, (p.daily.uplift_low, p.daily.uplift_high), (None, None))
        for p in overall.days
    ]
    parts.append('<div class="grid">')
    parts.append(series_chart(f"{kpi}: cumulative uplift by day (overall)", cumulative))
    parts.append(series_chart(f"{kpi}: daily uplift (overall, fixed-horizon)", daily, bands=False))
    for dimension in FORESTS:
        cuts = report.of_dimension(kpi, dimension)
        if cuts:
            parts.append(forest_chart(f"{kpi}: uplift by {dimension}", [_forest_row(cut) for cut in cuts]))
    parts.append("</div>")
    parts.append('<div class="scroll">' + _table(report, kpi, level) + "</div>")
    parts.append("</section>")
    return "".join(parts)


def _forest_row(cut: CutResult) -> ForestRow:
    c, a = cut.final.cumulative, cut.final.anytime
    label = " · ".join(part.split("=", 1)[-1] for part in cut.key.split(" & "))
    return ForestRow(
        label=label,
        count=f"({c.n_test + c.n_control:,})",
        y=c.uplift,
        fixed=(c.uplift_low, c.uplift_high),
        anytime=(a.uplift_low, a.uplift_high),
        muted=cut.small or cut.srm_mismatch,
        note="n/e",
    )


def _table(report: MeasurementReport, kpi: str, level: int) -> str:
    head = ("cut", "test", "control", "rate test", "rate control", "diff", "uplift", f"fixed {level}%",
            f"always-valid {level}%", "incremental", "p", "q", "ratio check p", "flags")
    rows = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for dimension in ("overall", "segment", "treatment", "variant", "country"):
        for cut in report.of_dimension(kpi, dimension):
            c, a = cut.final.cumulative, cut.final.anytime
            flags = []
            if cut.small:
                flags.append('<span class="flag">small</span>')
            if cut.srm_mismatch:
                flags.append('<span class="bad">ratio mismatch</span>')
            if not cut.randomized:
                flags.append('<span class="flag">not randomized</span>')
            if c.note:
                flags.append(f'<span class="flag" title="{escape(c.note)}">{escape(fmt.short_note(c.note))}</span>')
            cells = [
                f"{c.n_test:,}", f"{c.n_control:,}", fmt.pct(c.rate_test, 2), fmt.pct(c.rate_control, 2),
                fmt.pct(c.diff, 2, True), fmt.pct(c.uplift, 1, True), fmt.interval(c.uplift_low, c.uplift_high),
                fmt.interval(a.uplift_low, a.uplift_high), fmt.number(c.incremental), fmt.p_value(c.p_value),
                fmt.p_value(cut.q_value), fmt.p_value(cut.srm_p),
            ]
            rows.append(
                f"<tr><td>{escape(cut.key)}</td>" + "".join(f'<td class="n">{escape(v)}</td>' for v in cells)
                + f"<td>{' '.join(flags)}</td></tr>"
            )
    rows.append("</table>")
    return "".join(rows)


def _ranking(report: MeasurementReport) -> str:
    rows = report.recommendations
    if not rows:
        return ""
    costed = any(r.per_cost is not None for r in rows)
    head = ["kpi", "dimension", "rank", "cut", "test contacts", "incr. per 1,000 test contacts", "interval",
            "incremental conversions", "verdict"] + (["incr. per 1,000 spent", "cost per incr. conversion"]
                                                     if costed else [])
    out = [
        "<h2>Spend ranking</h2><p class=\"note\">Incremental conversions per test contact (and per unit of cost, "
        "when costs are configured), fixed-horizon intervals. Overlapping intervals mean the order between two "
        "rows is not established; \"unclear\" means the interval contains zero.</p><table><tr>"
        + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"
    ]
    out[0] = out[0].replace("<table>", '<div class="scroll"><table>', 1)
    for r in rows:
        span = (
            "n/e" if r.per_contact_low is None or r.per_contact_high is None
            else f"[{r.per_contact_low * 1000:+.1f}, {r.per_contact_high * 1000:+.1f}]"
        )
        cells = [r.kpi, r.dimension, str(r.rank), r.cut + (" (small)" if r.small else ""), f"{r.n_test:,}",
                 fmt.number(None if r.per_contact is None else r.per_contact * 1000), span,
                 fmt.number(r.incremental), r.verdict]
        if costed:
            cells += [fmt.number(None if r.per_cost is None else r.per_cost * 1000),
                      "n/e" if r.cost_per_incremental is None else f"{r.cost_per_incremental:,.2f}"]
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table></div>")
    return "".join(out)


def _account(report: MeasurementReport) -> str:
    account = report.conversions
    rows = [
        ("rows read", account["rows_read"]), ("counted for a KPI", account["accepted"]),
        ("contact not in the experiment", account["not_in_experiment"]),
    ]
    rows += [("dated before the contact entered (not counted)", account["before_entry"]),
             ("dated after the report's time (not counted)", account["after_report"])]
    rows += [(f"rejected: {reason}", n) for reason, n in account["rejected"].items()]
    rows += [(f"converted contacts: {kpi}", n) for kpi, n in account["converters"].items()]
    cells = "".join(f"<tr><td>{escape(str(k))}</td><td class=\"n\">{n:,}</td></tr>" for k, n in rows)
    return f'<h2>Conversion rows</h2><div class="scroll"><table>{cells}</table></div>'


def _summary(report: MeasurementReport) -> str:
    """The answer, before any detail: warnings, a verdict per KPI, and where to grow, hold or cut spend."""
    summary = report.summary
    parts = ['<section id="summary"><h2>Summary</h2>']
    parts += [f'<p class="warn"><b>Warning:</b> {escape(w)}</p>' for w in report.warnings]
    parts.append('<ul class="verdicts">')
    parts += [
        f'<li class="verdict verdict-{escape(v.verdict.split()[0])}" data-kpi="{escape(v.kpi)}" '
        f'data-verdict="{escape(v.verdict)}">{escape(v.sentence)}</li>'
        for v in summary.verdicts
    ]
    parts.append("</ul>")
    basis = ("incremental conversions per 1,000 spent (costs from measurement.costs)" if summary.per_cost
             else "incremental conversions per 1,000 test contacts (no costs configured)")
    parts.append(f"<h3>Where to spend</h3><p class=\"note\">By {basis}, with {round(100 * (1 - report.alpha))}% "
                 "fixed-horizon intervals; grow = interval above zero, cut = below zero, hold = unclear or too "
                 "small.</p><ul class=\"spend\">")
    parts += [f'<li data-kpi="{escape(a.kpi)}">{escape(a.sentence)}</li>' for a in summary.spend]
    parts.append("</ul></section>")
    return "".join(parts)
