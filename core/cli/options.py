"""Arguments several commands share."""

from __future__ import annotations

from pathlib import Path

from ..state.database import is_postgres_url

STATE_HELP = "state database: a SQLite path or a postgresql:// URL (overrides the campaign's)"


def state_target(text: str) -> str | Path:
    """`--state`: a postgresql:// URL stays a string, anything else is a SQLite path."""
    return text if is_postgres_url(text) else Path(text)
