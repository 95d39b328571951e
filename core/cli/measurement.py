"""`crm-activation report | simulate-conversions | simulate`: the measurement commands' arguments and printing.

The work is in `crm_activation.measurement.commands`; measurement's modules load only when one of these runs,
so `crm-activation run` does not pay for the statistics imports.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from rich.console import Console

from ..campaign.loader import load_campaign
from .options import STATE_HELP, state_target


def add_measurement_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `report`, `simulate-conversions` and `simulate` to the CLI's sub-parsers."""
    report = commands.add_parser("report", help="measure the incremental effect: uplift by KPI, cut and day")
    report.add_argument("campaign", type=Path, help="the campaign YAML file")
    report.add_argument("--conversions", type=Path, help="events CSV or JSON Lines (overrides the campaign's)")
    report.add_argument("--out", type=Path, default=Path("out/report"), help="folder for report.html, CSV, JSON")
    report.add_argument("--state", type=state_target, help=STATE_HELP)
    report.add_argument("--json", action="store_true", help="print the latest results as JSON")
    report.add_argument(
        "--as-of", type=_as_of, metavar="TIME",
        help="the report's time (ISO 8601 or Unix seconds; default now): later events are counted apart and "
        "warned about; 'window-end' = when the measurement window closes (for simulated conversions)",
    )

    simulated = commands.add_parser(
        "simulate-conversions", help="write simulated conversions with a known uplift for the campaign's ledger"
    )
    simulated.add_argument("campaign", type=Path, help="the campaign YAML file")
    simulated.add_argument("--out", type=Path, required=True, help="the conversions CSV to write")
    simulated.add_argument("--state", type=state_target, help=STATE_HELP)
    simulated.add_argument("--seed", type=int, default=1, help="random seed: the same seed writes the same rows")
    simulated.add_argument("--noise", type=float, default=0.002, help="share of bad rows added (default 0.002)")

    simulate = commands.add_parser("simulate", help="simulate a whole Upwork-like experiment under the campaign's id")
    simulate.add_argument("campaign", type=Path, help="the campaign YAML file (its id and measurement settings)")
    simulate.add_argument("--contacts", type=int, default=50_000, help="how many contacts to simulate (default 50000)")
    simulate.add_argument(
        "--state", type=state_target, required=True, help="a new state database (path or URL) for the simulated ledger"
    )
    simulate.add_argument("--conversions", type=Path, required=True, help="the conversions CSV to write")
    simulate.add_argument("--seed", type=int, default=1, help="random seed: the same seed writes the same rows")
    simulate.add_argument("--noise", type=float, default=0.002, help="share of bad rows added (default 0.002)")


def _as_of(value: str) -> float | str:
    """`--as-of`: 'window-end', or a time as conversions give it (ISO 8601, naive = UTC, or Unix seconds)."""
    if value == "window-end":
        return value
    from ..measurement.conversions import parse_timestamp

    moment = parse_timestamp(value)
    if moment is None:
        raise argparse.ArgumentTypeError(f"not a time (ISO 8601 or Unix seconds) nor 'window-end': {value!r}")
    return moment


@contextmanager
def working(what: str) -> Iterator[None]:
    """A spinner with elapsed time on stderr while a long step runs (nothing when stderr is not a terminal)."""
    status = Console(stderr=True)
    with status.status(what) if status.is_terminal else nullcontext():
        yield


def report(args: argparse.Namespace, console: Console) -> int:
    """`crm-activation report`: build the report files, then print the tables (or JSON)."""
    from ..measurement.commands import build_report
    from .report_tables import print_report

    with working("building the report: reading the ledger and conversions, estimating uplifts"):
        built = build_report(load_campaign(args.campaign), args.out, args.conversions, args.state, args.as_of)
    if args.json:
        print(json.dumps(built.report.to_json(series=False), indent=2))
    else:
        print_report(built.report, console, {name: str(path) for name, path in built.files.items()})
    return 0


def simulate(args: argparse.Namespace, console: Console) -> int:
    """`crm-activation simulate` and `simulate-conversions`: write simulated conversions with a known uplift."""
    from ..measurement.commands import simulate_campaign, simulate_conversions

    loaded = load_campaign(args.campaign)
    with working(f"simulating {args.command.removeprefix('simulate').strip('-') or 'the campaign'}"):
        if args.command == "simulate":
            rows, truth = simulate_campaign(loaded, args.contacts, args.state, args.conversions, args.seed, args.noise)
            out = args.conversions
        else:
            rows, truth = simulate_conversions(loaded, args.out, args.state, args.seed, args.noise)
            out = args.out
    console.print(f"{rows:,} conversion rows written to {out}; true uplifts in {truth}")
    return 0
