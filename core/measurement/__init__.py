"""Incrementality measurement: did the campaign cause conversions the control group did not have?

The holdout ledger (who was test or control, in which country and segment, offered which channels) is joined
with conversion events and compared per KPI and cut, per day and cumulatively, with fixed-horizon and
always-valid intervals. The method and its references are in docs/measurement.md.

Modules, in data-flow order: `ledger` (exposure ledger from the state database), `conversions` (events,
bad rows rejected), `cuts` (counts per cut and day), `stats` and `sequential` (pure statistics),
`analysis` (the report model) and `results` (its per-cut records), `recommend` (spend ranking), `outputs` and
`report_html` with `svg` and `fmt` (what people read; the terminal tables are in `cli/report_tables.py`),
`simulate` (campaigns with a known true uplift, for tests and the demo), and `commands` (what `report`,
`simulate-conversions` and `simulate` do; `cli/measurement.py` parses and prints).
"""

from __future__ import annotations

from .analysis import MeasurementReport, analyse
from .ledger import Exposure, Ledger, load_ledger
from .stats import Comparison, compare

__all__ = ["Comparison", "Exposure", "Ledger", "MeasurementReport", "analyse", "compare", "load_ledger"]
