"""Progress that also keeps the run ledger's `last_seen` fresh, so a killed run can be told from a running one.

A run killed with SIGKILL cannot write its end; the next run marks it abandoned, finished when it was last seen
(`StateStore.start_run`). Acknowledged batches are the natural pulse: they pass through `pushed`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .run_options import RunProgress

#: How often, at most, acknowledged batches refresh the run's `last_seen` in the ledger.
HEARTBEAT_SECONDS = 1.0


class HeartbeatProgress(RunProgress):
    """Passes progress on, and records in the run ledger that the run is alive as batches are acknowledged.

    Called from the push threads; the state connection serializes the writes.
    """

    def __init__(self, inner: RunProgress, clock: Callable[[], float] = time.monotonic) -> None:
        self.inner = inner
        self.clock = clock
        self._beat: Callable[[], None] | None = None
        self._last = -float("inf")
        self._lock = threading.Lock()

    def attach(self, beat: Callable[[], None] | None) -> None:
        """Start (a function recording the heartbeat) or stop (None) recording; the next batch records one."""
        with self._lock:
            self._beat, self._last = beat, -float("inf")

    def linked(self, n: int) -> None:
        """Pass on."""
        self.inner.linked(n)

    def rows_total(self, total: int) -> None:
        """Pass on."""
        self.inner.rows_total(total)

    def rows(self, n: int) -> None:
        """Pass on."""
        self.inner.rows(n)

    def platform_started(self, platform: str, total: int) -> None:
        """Pass on."""
        self.inner.platform_started(platform, total)

    def pushed(self, platform: str, n: int) -> None:
        """Pass on, then record the heartbeat unless one was recorded within `HEARTBEAT_SECONDS`."""
        self.inner.pushed(platform, n)
        with self._lock:
            now = self.clock()
            if self._beat is None or now - self._last < HEARTBEAT_SECONDS:
                return
            self._last = now
            self._beat()
