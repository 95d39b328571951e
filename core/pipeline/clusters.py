"""Identity clusters: the CRM records that are one person, so the holdout can assign people, not records.

CRM exports hold the same person several times (another record with the same phone, device or mailbox spelled
differently). Platforms and inboxes match people, so a holdout drawn per record could put one person in both
groups and let a test record's push or e-mail reach the control person. Records are linked when they share
any link key (`link_keys.py`); clusters are the connected components of that graph, and every record of a
cluster takes the group drawn for the cluster's *anchor*, its smallest contact id.

Why the smallest contact id: it is deterministic and independent of input order, and a person with one
record keeps exactly the group per-record assignment gave it, so turning clustering on does not reshuffle a
running experiment: only records of multi-record clusters can move (the summary counts them).

Data layout, chosen so memory stays flat: keys are reduced to 64-bit digests and written with their record
number to a private temporary SQLite database on disk; sorting by digest puts the records sharing a key next
to each other, and a union-find over record numbers (4 bytes a record in an `array`) joins them. Only the
union-find array is in memory (40 MB for ten million records). A digest collision (about 1 in 10^7 for ten
million records with three keys each) merges two people into one cluster: they then share a group, which
costs a little statistical independence and never exposes a control person.
"""

from __future__ import annotations

import hashlib
import sqlite3
from array import array
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterStats:
    """How the audience's records grouped into people.

    Attributes:
        records: records linked (every row read that had a contact id or an identifier, rejected ones included).
        clusters: people, i.e. connected components.
        multi_record_clusters: people with more than one record.
        largest_cluster: records in the biggest cluster.
    """

    records: int
    clusters: int
    multi_record_clusters: int
    largest_cluster: int


def key_digest(key: str) -> int:
    """A link key as a signed 64-bit integer (SQLite's INTEGER), from BLAKE2b: fast and evenly spread."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


class ClusterBuilder:
    """Collects records and their link keys; `finish()` computes the clusters."""

    def __init__(self) -> None:
        # "" = a private temporary database on disk, gone when closed; nothing here is worth a journal.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE records (rec INTEGER PRIMARY KEY, contact_id TEXT)")
        self._db.execute("CREATE TABLE keys (digest INTEGER NOT NULL, rec INTEGER NOT NULL)")
        self._db.execute("BEGIN")
        self._records = 0
        self._pending_records: list[tuple[int, str | None]] = []
        self._pending_keys: list[tuple[int, int]] = []

    def add(self, contact_id: str | None, keys: Iterable[str]) -> None:
        """Add one record (its contact id may be missing on a rejected row) and its link keys."""
        rec = self._records
        self._records += 1
        self._pending_records.append((rec, contact_id or None))
        self._pending_keys.extend((key_digest(key), rec) for key in set(keys))
        if len(self._pending_keys) >= 50_000:
            self._write()

    def add_digests(self, contact_id: str | None, digests: Iterable[int]) -> None:
        """`add` with the link keys already reduced to their digests (`key_digest`, once per distinct key)."""
        rec = self._records
        self._records += 1
        self._pending_records.append((rec, contact_id or None))
        self._pending_keys.extend((digest, rec) for digest in digests)
        if len(self._pending_keys) >= 50_000:
            self._write()

    def _write(self) -> None:
        self._db.executemany("INSERT INTO records VALUES (?, ?)", self._pending_records)
        self._db.executemany("INSERT INTO keys VALUES (?, ?)", self._pending_keys)
        self._pending_records.clear()
        self._pending_keys.clear()

    def finish(self) -> IdentityClusters:
        """Join records sharing a key, then record each contact id's anchor and cluster size."""
        self._write()
        parent = array("i", range(self._records))

        def find(rec: int) -> int:
            root = rec
            while parent[root] != root:
                root = parent[root]
            while parent[rec] != root:  # path compression keeps later finds short
                parent[rec], rec = root, parent[rec]
            return root

        previous_digest, previous_rec = None, -1
        for digest, rec in self._db.execute("SELECT digest, rec FROM keys ORDER BY digest"):
            if digest == previous_digest:
                a, b = find(previous_rec), find(rec)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            previous_digest, previous_rec = digest, rec
        db = self._db
        db.execute("DROP TABLE keys")
        roots = array("i", (find(rec) for rec in range(self._records)))
        db.execute("CREATE TABLE roots (rec INTEGER PRIMARY KEY, root INTEGER NOT NULL)")
        db.executemany("INSERT INTO roots VALUES (?, ?)", enumerate(roots))
        db.execute(
            "CREATE TABLE clusters (root INTEGER PRIMARY KEY, anchor TEXT, size INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT INTO clusters SELECT t.root, MIN(r.contact_id), COUNT(*) "
            "FROM records r JOIN roots t USING (rec) GROUP BY t.root"
        )
        db.execute("CREATE TABLE by_contact (contact_id TEXT PRIMARY KEY, root INTEGER NOT NULL) WITHOUT ROWID")
        db.execute(
            "INSERT OR IGNORE INTO by_contact SELECT r.contact_id, t.root "
            "FROM records r JOIN roots t USING (rec) WHERE r.contact_id IS NOT NULL"
        )
        clusters, multi, largest = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size > 1), 0), COALESCE(MAX(size), 0) FROM clusters"
        ).fetchone()
        stats = ClusterStats(self._records, clusters, multi, largest)
        anchors = dict(db.execute("SELECT root, anchor FROM clusters WHERE size > 1 AND anchor IS NOT NULL"))
        return IdentityClusters(db, stats, roots, anchors)


class IdentityClusters:
    """Each contact id's cluster: its anchor (the id whose holdout draw the cluster takes) and size."""

    def __init__(
        self, db: sqlite3.Connection, stats: ClusterStats, roots: array[int], anchors: dict[int, str]
    ) -> None:
        self._db = db
        self.stats = stats
        self._roots = roots  # record number → its cluster's root record
        self._anchors = anchors  # root → anchor, for clusters of several records

    def anchor_of_record(self, record: int) -> str | None:
        """The anchor of the cluster of record `record` (numbered as added), None for a one-record cluster.

        A batch read sees the records in the order the linking read added them, so no lookup by id is needed.
        """
        return self._anchors.get(self._roots[record])

    def anchor(self, contact_id: str) -> tuple[str, int]:
        """(anchor contact id, records in the cluster); a contact id never linked is its own one-record cluster."""
        row = self._db.execute(
            "SELECT c.anchor, c.size FROM by_contact b JOIN clusters c USING (root) WHERE b.contact_id=?",
            (contact_id,),
        ).fetchone()
        return (row[0], row[1]) if row else (contact_id, 1)

    def close(self) -> None:
        """Drop the temporary database."""
        self._db.close()
