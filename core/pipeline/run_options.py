"""How a run is asked for, beyond the campaign file: `RunOptions`, and the `RunProgress` callbacks it reports to.

They live apart from the engine so that whatever assembles the engine's parts (`channel_plan`) can read them
without importing the engine that imports it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..sdk.http import RetryPolicy, TokenCache
from ..state.database import LOCK_WAIT_SECONDS


class RunProgress:
    """Progress callbacks; the CLI draws bars, tests and library users get these no-ops."""

    def linked(self, n: int) -> None:
        """`n` more input rows were read by the first pass, which links records into people."""

    def rows_total(self, total: int) -> None:
        """How many rows onboarding will process (known once the first pass has read the source)."""

    def rows(self, n: int) -> None:
        """`n` more input rows were processed."""

    def platform_started(self, platform: str, total: int) -> None:
        """A platform starts pushing `total` member operations."""

    def pushed(self, platform: str, n: int) -> None:
        """`n` more member operations were acknowledged."""


@dataclass
class RunOptions:
    """How to run a campaign, beyond the campaign file itself."""

    dry_run: bool = False
    outbox: Path | None = None
    rejects: Path | None = None
    plan: Path | None = None  # dry runs: where to write the planned changes per record (see `plan_file`)
    state: str | Path | None = None
    lock_wait: float = LOCK_WAIT_SECONDS
    base_urls: Mapping[str, str] = field(default_factory=dict)
    policy: RetryPolicy | None = None
    sleep: Any = time.sleep
    mode: str | None = None
    platforms: tuple[str, ...] | None = None
    #: push even when the change is over the campaign's `sync` thresholds (see `guardrails`); this run only
    allow_large_changes: bool = False
    #: a rule that can never apply as meant (see `guardrails`) refuses the run instead of warning
    strict: bool = False
    smtp: tuple[str, int] | None = None
    #: Set to stop the run (Ctrl-C): no platform request starts after it (see `PlatformHttp.cancel`).
    cancel: threading.Event = field(default_factory=threading.Event)
    #: Platform tokens reused across runs; bound to the state database once the run holds the lock.
    tokens: TokenCache = field(default_factory=TokenCache)
    #: E-mail: re-send steps a killed run left in doubt (at least once, one Message-ID) instead of holding them.
    resend_in_doubt: bool = False
    #: Processes the audience's batches are worked on (`audience_batches.py`); 1 works in this process.
    workers: int = 1

    def __post_init__(self) -> None:
        """Take the output paths as text too: a library caller's `rejects="rejects.csv"` works as a `Path` would."""
        for name in ("outbox", "rejects", "plan"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, Path(value))
