"""The dry run's plan file: per record, what a real run would change on each ad platform.

A dry run's summary only counts; before a first real push someone wants to see *who* would be added to or
removed from which audience. One CSV line per planned change: `platform, stage, audience_key, contact_id,
operation` (add or remove), in the order a real run would send them (removes first). Only contact ids: never
an identifier or the hashed payload.

The changes are those of the state's diff (`StateStore.plan`): in a `full` run on a platform that replaces
whole audiences, the platform is sent every desired member, but the lines list what changes. E-mail is not
in the plan: which step is due is decided while sending.
"""

from __future__ import annotations

import csv
import threading
from collections.abc import Iterable
from pathlib import Path


class PlanWriter:
    """Writes the plan CSV: each platform's changes as that platform is planned.

    Nothing is touched until the first platform is planned, which happens after the run took the campaign lock:
    a dry run refused the lock (exit 3) leaves another run's plan file alone. The file is then created with its
    header; each platform appends under a lock (platforms are planned on several threads) and closes it again,
    so the engine needs no closing, and a run that fails on a later platform keeps the earlier platforms' lines.
    """

    HEADER = ("platform", "stage", "audience_key", "contact_id", "operation")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        self._lock = threading.Lock()
        self._created = False

    def write(self, platform: str, operations: Iterable[tuple[str, str, str]]) -> None:
        """Append a platform's `(audience_key, operation, contact_id)` changes (creating the file the first time)."""
        with self._lock:
            if not self._created:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("w", newline="", encoding="utf-8") as handle:
                    csv.writer(handle).writerow(self.HEADER)
                self._created = True
            self._append(platform, operations)

    def _append(self, platform: str, operations: Iterable[tuple[str, str, str]]) -> None:
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            for key, operation, contact_id in operations:
                writer.writerow((platform, key.rpartition("/")[2], key, contact_id, operation))
                self.lines += 1
