"""The measurement commands behind the CLI: `report`, `simulate-conversions` and `simulate`.

Kept here rather than in the console wing (`cli/measurement.py` parses the arguments and prints) so that
everything below works on a loaded campaign and paths, and is what the tests call.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..campaign.loader import LoadedCampaign
from ..campaign.schema import MeasurementConfig, SourceConfig
from ..pipeline.rejects import RejectsWriter
from ..pipeline.sources import open_rows
from ..sdk.errors import ConfigError
from ..state.database import describe
from ..state.store import StateStore
from .analysis import MeasurementReport, analyse
from .conversions import ConversionReader
from .ledger import Ledger, load_ledger
from .outputs import write_outputs
from .simulate import (
    DAY,
    simulate_email_sends,
    simulate_events,
    simulate_ledger,
    spec_for_campaign,
    truth_table,
    write_email_sends,
    write_events,
    write_ledger,
)

#: `report --as-of window-end`: the report's time is the end of the measurement window.
WINDOW_END = "window-end"


@dataclass(frozen=True)
class ReportFiles:
    """What `build_report` wrote."""

    report: MeasurementReport
    out_dir: Path
    files: dict[str, Path]


def measurement_config(loaded: LoadedCampaign) -> MeasurementConfig:
    """The campaign's measurement settings, or the defaults (the demo KPIs, 30 days) when it has none."""
    return loaded.campaign.measurement or MeasurementConfig()


def read_ledger(loaded: LoadedCampaign, override: str | Path | None) -> Ledger:
    """The campaign's exposure ledger from its state database (read-only)."""
    db = loaded.open_state(override, readonly=True)
    try:
        return load_ledger(db, loaded.campaign.campaign)
    finally:
        db.close()


def conversions_source(loaded: LoadedCampaign, config: MeasurementConfig, override: Path | None) -> SourceConfig:
    """Where conversions come from: `--conversions FILE` (CSV, or JSON Lines by extension) or the campaign's."""
    if override is not None:
        kind: Literal["csv", "jsonl"] = "jsonl" if override.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"
        return SourceConfig(type=kind, path=str(override.resolve()))
    if config.conversions is None:
        raise ConfigError("no conversions: pass --conversions FILE or set measurement.conversions in the campaign")
    return config.conversions


def build_report(
    loaded: LoadedCampaign, out_dir: Path, conversions: Path | None = None, state: str | Path | None = None,
    as_of: float | str | None = None,
) -> ReportFiles:
    """Read the ledger and the conversions, analyse, and write every output file into `out_dir`.

    `as_of` is the report's time (Unix seconds, default now): events dated after it are counted apart.
    `"window-end"` reads the conversions as a report made when the window closes: for simulated conversions,
    which span the whole window of a campaign that may have started today.

    Raises:
        InputError: the state database, its ledger or the conversions file cannot be read.
        ConfigError: no conversions source is configured or given.
    """
    config = measurement_config(loaded)
    ledger = read_ledger(loaded, state)
    rows = open_rows(conversions_source(loaded, config, conversions), loaded.base_dir)  # a missing file fails here
    rejects = RejectsWriter(out_dir / "conversion-rejects.csv")
    try:
        if as_of == WINDOW_END:
            as_of = ledger.start + config.window_days * DAY
        as_of = time.time() if as_of is None else float(as_of)
        data = ConversionReader(ledger, config.kpis, config.window_days, rejects, config.columns, as_of).read(rows)
    finally:
        rejects.close()
    report = analyse(ledger, data, config, loaded.campaign.holdout, as_of=as_of)
    files = write_outputs(report, out_dir)
    files["rejects"] = out_dir / "conversion-rejects.csv"
    return ReportFiles(report, out_dir, files)


def simulate_conversions(
    loaded: LoadedCampaign, out: Path, state: str | Path | None = None, seed: int = 1, noise: float = 0.002,
) -> tuple[int, Path]:
    """Write simulated conversions for the campaign's real ledger, and the true uplifts next to them.

    The truth file (`OUT` with `.truth.json`) holds the expected relative uplift of each KPI overall and per
    segment, treatment and country, to compare with what the report estimates.

    Returns:
        (rows written, path of the truth file).
    """
    config = measurement_config(loaded)
    ledger = read_ledger(loaded, state)
    spec = spec_for_campaign(loaded.campaign, config.window_days)
    kpis = [kpi.name for kpi in config.kpis]
    contacts = list(ledger)
    events = [kpi.event_names[0] for kpi in config.kpis]
    rows = simulate_events(spec, contacts, kpis, ledger.start, seed=seed, noise=noise, events=events)
    written = write_events(out, rows)
    truth_path = out.with_suffix(".truth.json")
    truth = {"campaign": ledger.campaign, "seed": seed, "uplift": truth_table(spec, contacts, kpis)}
    truth_path.write_text(json.dumps(truth, indent=2) + "\n", encoding="utf-8")
    return written, truth_path


def simulate_campaign(
    loaded: LoadedCampaign, contacts: int, state: str | Path, conversions: Path, seed: int = 1, noise: float = 0.002,
) -> tuple[int, Path]:
    """Simulate a whole experiment of the campaign: a ledger (and e-mail sends) in `state`, and conversions.

    The ledger follows the campaign (`simulate.spec_for_campaign`: its countries, segments, channel plan,
    funnel stages and e-mail variants, with Upwork-like rates and uplifts) and is recorded as one run that
    started `window_days` ago, with the e-mail variants each test contact would have been sent, in a state
    database that must not already hold a ledger for this campaign (a simulation never mixes with real state).

    Returns:
        (conversion rows written, path of the truth file).
    """
    config = measurement_config(loaded)
    campaign = loaded.campaign.campaign
    store = StateStore(loaded.open_state(state))
    try:
        if store.holdout_rows(campaign):
            raise ConfigError(
                f"{describe(state)} already holds a ledger for campaign {campaign!r}; use a new --state database"
            )
        spec = spec_for_campaign(loaded.campaign, config.window_days)
        started = time.time() - spec.days * DAY
        rows = simulate_ledger(spec, contacts, campaign, seed)
        write_ledger(store, campaign, rows, started)
        sends = simulate_email_sends(spec, rows, campaign)
        if sends:
            write_email_sends(store, campaign, sends, started)
    finally:
        store.close()
    return simulate_conversions(loaded, conversions, state, seed=seed, noise=noise)
