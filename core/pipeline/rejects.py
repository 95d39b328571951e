"""The rejects file: one line per refused row or identifier, naming file, row and field, never the value.

Its `reason` is the row's own account (a record's line span, a bad byte's offset), which the run summary, counting
rows by reason, leaves out.

Records a platform refused by name are written too (registered as an `after_batch` plugin for the run): `source`
is the audience key, `row` empty, `platform` the platform, `stage` the audience's funnel stage, `contact_id` the
refused contact and `reason` the platform's own words. Only contact ids: the payload sent (hashed identifiers) is
never written. A refused member is not recorded as one; the next run offers it again.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import TextIO

from ..sdk.plugins import hookimpl
from ..sdk.types import AudienceRef, BatchResult


class RejectsWriter:
    """Streams rejects to a CSV file (or nowhere, when no path is given); counts what it wrote."""

    HEADER = ("source", "row", "field", "reason", "platform", "row_rejected", "contact_id", "stage")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = 0
        # Platforms are pushed from several threads, each writing its refusals here: one line at a time, or a
        # file object shared unguarded interleaves (and corrupts) their buffers.
        self._lock = threading.Lock()
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=self.HEADER)
            self._writer.writeheader()

    def write(
        self, source: str, row: int | None, field: str, reason: str, platform: str = "", fatal: bool = False,
        contact_id: str = "", stage: str = "",
    ) -> None:
        """Record one problem (`row` None: not a source row, a platform's refusal)."""
        with self._lock:
            self.written += 1
            if self._writer is not None:
                self._writer.writerow(
                    {"source": source, "row": "" if row is None else row, "field": field, "reason": reason,
                     "platform": platform, "row_rejected": "yes" if fatal else "no", "contact_id": contact_id,
                     "stage": stage}
                )

    @hookimpl
    def after_batch(self, platform: str, audience: AudienceRef, operation: str, size: int, result: BatchResult) -> None:
        """Write each record the platform refused by name (the engine registers the writer for its run)."""
        stage = audience.key.rpartition("/")[2]  # keys are `<campaign>/<stage>` (`platform_sync.audience_key`)
        for rejection in result.rejections:
            if rejection.contact_id:
                self.write(
                    audience.key, None, "", rejection.reason, platform=platform, contact_id=rejection.contact_id,
                    stage=stage,
                )

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
                self._writer = None
