"""Shared set-up: a campaign file, a real SQLite state database with a ledger, and conversion files."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.state.store import StateStore

CAMPAIGN_ID = "measure-test"
START = 1_790_000_000.0  # a fixed day 0 (2026-09-21), so timestamps in tests are stable
DAY = 86_400.0

BASE_YAML = f"""
campaign: {CAMPAIGN_ID}
audience:
  source: {{type: csv, path: contacts.csv}}
channels:
  default: [facebook]
platforms:
  facebook: {{}}
state:
  path: state.sqlite
"""

MEASUREMENT_YAML = """
measurement:
  kpis:
    - {name: account_created, events: [account_created, signup]}
    - {name: hire}
  window_days: 30
  min_cut_size: 50
"""


def write_campaign(folder: Path, measurement: str = MEASUREMENT_YAML) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(BASE_YAML + measurement, encoding="utf-8")
    return path


def write_ledger(folder: Path, rows: list[tuple], runs: dict[str, float] | None = None) -> Path:
    """Ledger rows (contact_id, group, country, segment, offered, reachable, stage[, run_id])."""
    runs = runs or {"run-1": START}
    store = StateStore(folder / "state.sqlite")
    for run_id, started in runs.items():
        store.db.execute(
            "INSERT INTO runs (run_id, campaign, mode, started_at, status) VALUES (?, ?, 'incremental', ?, 'ok')",
            (run_id, CAMPAIGN_ID, started),
        )
    by_run: dict[str, list[tuple]] = {}
    for row in rows:
        run_id = row[7] if len(row) > 7 else "run-1"
        by_run.setdefault(run_id, []).append(row[:7])
    for run_id in runs:
        if by_run.get(run_id):
            store.record_holdout(CAMPAIGN_ID, run_id, by_run[run_id])
    store.close()
    return folder / "state.sqlite"


def iso(day: float, base: float = START) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(base + day * DAY))


@pytest.fixture
def small_campaign(tmp_path):
    """Four contacts per group in two countries; returns the loaded campaign."""
    rows = []
    for i in range(8):
        group = "test" if i % 2 == 0 else "control"
        country = "US" if i < 4 else "DE"
        rows.append((f"c{i}", group, country, "high", "email+facebook", "email+facebook", "awareness"))
    write_ledger(tmp_path, rows)
    return load_campaign(write_campaign(tmp_path))
