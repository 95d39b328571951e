"""`crm-activation runs`: the campaign's past runs from its state database, newest first.

What each run did is in the run ledger already (its stored summary); this reads it without changing anything
(a read-only connection), so it is safe next to a running job. Per run: id, mode, status, when it started, how
long it took, the row outcomes and members added/removed from the stored summary, and its error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..campaign.loader import load_campaign
from ..state.store import RunRecord, past_runs
from .options import STATE_HELP, state_target


def add_runs_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `runs` to the CLI's sub-parsers."""
    runs = commands.add_parser("runs", help="list the campaign's past runs from its state (newest first)")
    runs.add_argument("campaign", type=Path, help="the campaign YAML file")
    runs.add_argument("--limit", type=int, default=20, help="at most this many runs (default 20; 0: all)")
    runs.add_argument("--state", type=state_target, help=STATE_HELP)
    runs.add_argument("--json", action="store_true", help="print the runs as JSON")


def run_row(record: RunRecord) -> dict[str, Any]:
    """One run as plain JSON: the ledger's columns and the counts of its stored summary."""
    summary = record.summary or {}
    platforms = summary.get("platforms") or {}
    added = removed = 0
    for platform in platforms.values():
        for stage in (platform.get("stages") or {}).values():
            added += int(stage.get("added") or 0)
            removed += int(stage.get("removed") or 0)
    errors = [f"{slug}: {p['error']}" for slug, p in platforms.items() if p.get("error")]
    finished = record.finished_at
    return {
        "run_id": record.run_id,
        "mode": record.mode,
        "status": record.status,
        "started": dt.datetime.fromtimestamp(record.started_at, dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(finished - record.started_at, 3) if finished is not None else None,
        "rows_read": summary.get("rows_read"),
        "outcomes": summary.get("outcomes") or {},
        "added": added if record.summary else None,
        "removed": removed if record.summary else None,
        "error": summary.get("error") or ("; ".join(errors) if errors else None),
        "rejects_file": summary.get("rejects_file"),
    }


def runs(args: argparse.Namespace, console: Console) -> int:
    """`crm-activation runs`: list the runs (exit 2 when the state database does not exist)."""
    loaded = load_campaign(args.campaign)
    db = loaded.open_state(args.state, readonly=True)
    try:
        records = past_runs(db, loaded.campaign.campaign, args.limit if args.limit > 0 else None)
    finally:
        db.close()
    rows = [run_row(record) for record in records]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title=f"{loaded.campaign.campaign}: {len(rows)} run(s), newest first", title_justify="left")
    for column in ("run", "mode", "status", "started (UTC)", "seconds", "rows", "activated", "rejected",
                   "added", "removed", "error"):
        table.add_column(column, justify="right" if column in ("seconds", "rows", "activated", "rejected",
                                                               "added", "removed") else "left")
    for row in rows:
        outcomes = row["outcomes"]
        table.add_row(
            row["run_id"], row["mode"], row["status"], row["started"].replace("+00:00", ""),
            *(_cell(v) for v in (row["seconds"], row["rows_read"], outcomes.get("activated"),
                                 outcomes.get("rejected"), row["added"], row["removed"])),
            escape(row["error"] or ""),
        )
    console.print(table)
    return 0


def _cell(value: Any) -> str:
    return "" if value is None else str(value)
