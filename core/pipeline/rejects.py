"""The rejects file: one line per refused row or identifier, naming file, row and field, never the value.

Its `reason` is the row's own account (a record's line span, a bad byte's offset), which the run summary, counting
rows by reason, leaves out.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO


class RejectsWriter:
    """Streams rejects to a CSV file (or nowhere, when no path is given); counts what it wrote."""

    HEADER = ("source", "row", "field", "reason", "platform", "row_rejected")

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.written = 0
        self._file: TextIO | None = None
        self._writer: csv.DictWriter[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("w", newline="", encoding="utf-8")
            self._writer = csv.DictWriter(self._file, fieldnames=self.HEADER)
            self._writer.writeheader()

    def write(self, source: str, row: int, field: str, reason: str, platform: str = "", fatal: bool = False) -> None:
        """Record one problem."""
        self.written += 1
        if self._writer is not None:
            self._writer.writerow(
                {"source": source, "row": row, "field": field, "reason": reason, "platform": platform,
                 "row_rejected": "yes" if fatal else "no"}
            )

    def close(self) -> None:
        """Flush and close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None
