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
from collections.abc import Iterable
from pathlib import Path


class PlanWriter:
    """Writes the plan CSV: the header when created, then each platform's changes as that platform is planned.

    Each platform appends and closes the file again, so the writer needs no closing by the engine, and a run
    that fails on a later platform leaves the earlier platforms' lines in place.
    """

    HEADER = ("platform", "stage", "audience_key", "contact_id", "operation")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerow(self.HEADER)

    def write(self, platform: str, operations: Iterable[tuple[str, str, str]]) -> None:
        """Append a platform's `(audience_key, operation, contact_id)` changes."""
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            for key, operation, contact_id in operations:
                writer.writerow((platform, key.rpartition("/")[2], key, contact_id, operation))
                self.lines += 1
