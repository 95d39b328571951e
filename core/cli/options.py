"""Arguments several commands share."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..campaign.loader import LoadedCampaign
from ..state.database import is_postgres_url

STATE_HELP = "state database: a SQLite path or a postgresql:// URL (overrides the campaign's)"


def state_target(text: str) -> str | Path:
    """`--state`: a postgresql:// URL stays a string, anything else a SQLite path made absolute here.

    Absolute against the current folder, as every other path typed on the command line is: a relative path left
    as is would be resolved against the campaign file's folder (`LoadedCampaign.state_target`), which is right
    for the campaign's own `state.path` but surprising for a path the user just typed.
    """
    return text if is_postgres_url(text) else Path(text).expanduser().absolute()


def default_rejects(loaded: LoadedCampaign, state: str | Path | None) -> Path:
    """Where `run` writes rejects without `--rejects`: `<campaign>-rejects.csv` next to the SQLite state.

    Next to the state because that is where a scheduled job's other output already lives, and named by campaign
    because several campaigns may share one state file. A PostgreSQL state has no folder: the current one.
    """
    target = loaded.state_target(state)
    name = f"{loaded.campaign.campaign}-rejects.csv"
    return Path(name) if isinstance(target, str) else target.parent / name


def available_cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count): `--workers`' default."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no CPU affinity on this OS (macOS)
        return os.cpu_count() or 1


def positive_int(text: str) -> int:
    """An argument that must be a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value
