"""Reading conversion events and turning them into "first conversion day" per contact and KPI.

Events come from any row source the audience can come from (CSV, JSON Lines, SQL; see `pipeline/sources.py`), with
columns `contact_id`, `event`, `timestamp` and an optional `value` (renamed through `measurement.columns`).
Every row is accounted for: counted for a KPI, or rejected with a reason naming the file, row and field
(never the value). Contacts that are not in the experiment are counted apart: they are normal in an event
export (everyone converts, not just the campaign's audience) and say nothing about data quality.

Timestamps are ISO 8601 (a naive one is read as UTC) or Unix seconds. Day `d` is the 24 hours starting
`d` days after the campaign's first run; an event counts from the moment its contact entered the experiment
until the end of the measurement window. Two kinds of rows are counted apart and warned about rather than
rejected as malformed or silently counted: events dated *before the contact entered* (or before the campaign
started), which the campaign cannot have caused, and events dated *after the report's time*, which cannot have
happened yet. Both usually mean a time-zone or clock problem in the export, or an export of the wrong campaign.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..campaign.schema import KpiConfig
from ..pipeline.rejects import RejectsWriter
from ..pipeline.sources import SourceRow
from .ledger import Ledger

DAY = 86_400.0
STANDARD_COLUMNS = ("contact_id", "event", "timestamp", "value")
NOT_IN_EXPERIMENT = "contact not in the experiment (not in this campaign's holdout ledger)"
BEFORE_ENTRY = "dated before the contact entered the experiment (or before the campaign started); not counted"
AFTER_REPORT = "dated after the report's time (in the future); not counted"


@dataclass
class ConversionData:
    """The accepted conversions and the account of every row read.

    Attributes:
        first_day: KPI → contact id → the day of its first conversion.
        value: KPI → contact id → the sum of its events' values (within the window).
        events: KPI → accepted events (repeat conversions included).
        rows_read: rows read from the source.
        accepted: rows counted for a KPI.
        not_in_experiment: rows whose contact is not in the ledger (counted apart, also in the rejects file).
        rejected: reason → rows rejected for it (malformed, unknown event, after the window).
        before_entry: rows dated before their contact entered the experiment (or before the campaign started).
        after_report: rows dated after the report's time (`as_of`): in the future when the report was made.
        field_issues: problems that did not reject the row (an unreadable value, ignored).
        last_day: the latest day with an accepted event (-1 when there is none).
    """

    first_day: dict[str, dict[str, int]]
    value: dict[str, dict[str, float]]
    events: Counter[str] = field(default_factory=Counter)
    rows_read: int = 0
    accepted: int = 0
    not_in_experiment: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    before_entry: int = 0
    after_report: int = 0
    field_issues: int = 0
    last_day: int = -1

    def accounted(self) -> bool:
        """Whether every row read is accepted, not in the experiment, out of range, or rejected."""
        apart = self.not_in_experiment + self.before_entry + self.after_report
        return self.rows_read == self.accepted + apart + sum(self.rejected.values())


def parse_timestamp(value: Any) -> float | None:
    """Unix seconds from an ISO 8601 string (naive = UTC) or a number of Unix seconds; None if unreadable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) else None
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def parse_value(value: Any) -> float | None:
    """A finite number from a cell, or None (blank counts as no value; text raises ValueError)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ValueError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


class ConversionReader:
    """Accepts or rejects conversion rows against a ledger, KPI definitions and a window."""

    def __init__(
        self, ledger: Ledger, kpis: Iterable[KpiConfig], window_days: int, rejects: RejectsWriter,
        columns: dict[str, str] | None = None, as_of: float | None = None,
    ) -> None:
        """`as_of` is the report's time (Unix seconds; default: now): later events cannot have happened yet."""
        self.ledger = ledger
        self.as_of = time.time() if as_of is None else as_of
        self.kpi_of = {event: kpi.name for kpi in kpis for event in kpi.event_names}
        self.window_days = window_days
        self.window_end = ledger.start + window_days * DAY
        self.rejects = rejects
        mapping = columns or {}
        self.column = {name: mapping.get(name, name) for name in STANDARD_COLUMNS}
        names = list(dict.fromkeys(self.kpi_of.values()))  # the campaign file's order
        self.data = ConversionData(first_day={k: {} for k in names}, value={k: {} for k in names})

    def read(self, rows: Iterable[SourceRow]) -> ConversionData:
        """Consume every row; returns the accepted conversions and the account of the rest."""
        for row in rows:
            self.data.rows_read += 1
            self._row(row)
        return self.data

    def _reject(self, row: SourceRow, column: str, reason: str, detail: str | None = None) -> None:
        """Count `reason` (the same words for every such row) and write `detail` (this row's particulars)."""
        self.data.rejected[f"{column}: {reason}" if column else reason] += 1
        self.rejects.write(row.source, row.row, column, detail or reason, fatal=True)

    def _row(self, row: SourceRow) -> None:
        if row.error is not None:
            self._reject(row, row.column or "", row.error, row.detail)
            return
        get = row.fields.get
        contact_id = str(get(self.column["contact_id"]) or "").strip()
        if not contact_id:
            self._reject(row, self.column["contact_id"], "missing contact id")
            return
        event = str(get(self.column["event"]) or "").strip()
        if not event:
            self._reject(row, self.column["event"], "missing event name")
            return
        kpi = self.kpi_of.get(event)
        if kpi is None:
            self._reject(row, self.column["event"], "unknown event name (not an event of any KPI)")
            return
        moment = parse_timestamp(get(self.column["timestamp"]))
        if moment is None:
            self._reject(row, self.column["timestamp"], "unparseable timestamp (expected ISO 8601 or Unix seconds)")
            return
        exposure = self.ledger.contacts.get(contact_id)
        if exposure is None:
            self.data.not_in_experiment += 1
            self.rejects.write(row.source, row.row, self.column["contact_id"], NOT_IN_EXPERIMENT, fatal=True)
            return
        if moment < exposure.entered_at:
            self.data.before_entry += 1
            self.rejects.write(row.source, row.row, self.column["timestamp"], BEFORE_ENTRY, fatal=True)
            return
        if moment > self.as_of:
            self.data.after_report += 1
            self.rejects.write(row.source, row.row, self.column["timestamp"], AFTER_REPORT, fatal=True)
            return
        if moment >= self.window_end:
            self._reject(row, self.column["timestamp"], f"after the {self.window_days}-day measurement window")
            return
        try:
            value = parse_value(get(self.column["value"]))
        except (TypeError, ValueError):
            value = None
            self.data.field_issues += 1
            self.rejects.write(row.source, row.row, self.column["value"], "not a number; value ignored")
        day = int((moment - self.ledger.start) // DAY)
        self.data.accepted += 1
        self.data.events[kpi] += 1
        self.data.last_day = max(self.data.last_day, day)
        first = self.data.first_day[kpi]
        if contact_id not in first or day < first[contact_id]:
            first[contact_id] = day
        if value is not None:
            values = self.data.value[kpi]
            values[contact_id] = values.get(contact_id, 0.0) + value
