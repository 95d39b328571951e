"""The report's files: JSON for programs, CSV for spreadsheets, HTML for people.

- `report.json`: everything, including each cut's per-day series.
- `summary.csv`: one row per KPI × cut, the latest cumulative result with all intervals and checks.
- `daily.csv`: one row per KPI × cut × day: cumulative (fixed-horizon and always-valid) and daily figures.
- `recommendations.csv`: the spend ranking.
- `report.html`: the self-contained report with charts (see `report_html.py`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .analysis import MeasurementReport
from .report_html import render_html
from .results import flat

_DAILY_FIELDS = ("n_test", "conv_test", "n_control", "conv_control", "rate_test", "rate_control", "diff",
                 "diff_low", "diff_high", "uplift", "uplift_low", "uplift_high", "p_value")


def write_outputs(report: MeasurementReport, out_dir: Path) -> dict[str, Path]:
    """Write every report file into `out_dir` (created if needed); returns name → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out_dir / "report.json",
        "summary": out_dir / "summary.csv",
        "daily": out_dir / "daily.csv",
        "recommendations": out_dir / "recommendations.csv",
        "html": out_dir / "report.html",
    }
    files["json"].write_text(json.dumps(_finite(report.to_json()), separators=(",", ":")) + "\n", encoding="utf-8")
    _write_csv(files["summary"], [cut.summary() for cut in report.cuts])
    _write_csv(files["daily"], _daily_rows(report))
    _write_csv(files["recommendations"], [flat(r) for r in report.recommendations])
    files["html"].write_text(render_html(report), encoding="utf-8")
    return files


def _daily_rows(report: MeasurementReport) -> Iterable[dict[str, Any]]:
    for cut in report.cuts:
        for point in cut.days:
            row: dict[str, Any] = {"kpi": cut.kpi, "cut": cut.key, "dimension": cut.dimension, "day": point.day}
            cumulative, daily = flat(point.cumulative), flat(point.daily)
            row.update({f"cum_{name}": cumulative[name] for name in _DAILY_FIELDS})
            row.update({f"anytime_{k}": v for k, v in flat(point.anytime).items() if k != "p_value"})
            row["anytime_p_value"] = point.anytime_p
            row.update({f"day_{name}": daily[name] for name in _DAILY_FIELDS})
            yield row


def _write_csv(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer: csv.DictWriter[str] | None = None
        for row in rows:
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(row))
                writer.writeheader()
            writer.writerow({k: _cell(v) for k, v in row.items()})
        if writer is None:
            handle.write("")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.10g}"
    return value


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: such numbers become null (the statistics never produce them on purpose)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
