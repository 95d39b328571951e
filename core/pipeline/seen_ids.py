"""The contact ids a run has already read, kept on disk so onboarding memory stays flat however large the audience.

A duplicate `contact_id` must be rejected exactly (a false "duplicate" would drop a real customer), so a
probabilistic filter will not do, and a Python set costs about 100 bytes per id: 1 GB for ten million
contacts. A private temporary SQLite database (deleted on close, never the state database, which may be a
PostgreSQL server a round trip away) answers "seen before?" in a few microseconds with a couple of MB of page
cache, spilling the rest to a temporary file.
"""

from __future__ import annotations

import sqlite3


class SeenIds:
    """An exact, disk-backed set of strings for one run."""

    def __init__(self) -> None:
        # "" = a private temporary database on disk; one open transaction, never committed: nothing is kept.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY) WITHOUT ROWID")
        self._db.execute("BEGIN")

    def add_many(self, contact_ids: list[str]) -> list[bool]:
        """Record ids in order; for each, True when it is new (seen in no earlier call, nor earlier in the list)."""
        found: set[str] = set()
        for start in range(0, len(contact_ids), 500):
            chunk = list(dict.fromkeys(contact_ids[start : start + 500]))
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in self._db.execute(f"SELECT id FROM seen WHERE id IN ({marks})", chunk))
        self._db.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ((i,) for i in contact_ids))
        new = []
        for contact_id in contact_ids:
            new.append(contact_id not in found)
            found.add(contact_id)
        return new

    def close(self) -> None:
        """Drop the temporary database."""
        self._db.close()
