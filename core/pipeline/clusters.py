"""Identity clusters: the CRM records that are one person, so the holdout can assign people, not records.

CRM exports hold the same person several times (another record with the same phone, device or mailbox spelled
differently). Platforms and inboxes match people, so a holdout drawn per record could put one person in both
groups and let a test record's push or e-mail reach the control person. Records are linked when they share
any link key (`link_keys.py`); clusters are the connected components of that graph, and every record of a
cluster takes the group drawn for the cluster's *anchor*, its smallest contact id.

Why the smallest contact id: it is deterministic and independent of input order, and a person with one
record keeps exactly the group per-record assignment gave it, so turning clustering on does not reshuffle a
running experiment: only records of multi-record clusters can move (the summary counts them).

Data layout, chosen so memory stays flat: keys are reduced to 64-bit digests and appended, with their record
number, to one of `BUCKETS` temporary files chosen by the digest's low bits, so that records sharing a key
land in the same bucket. Each bucket is then sorted alone (numpy), which puts the records sharing a key next
to each other, and a union-find over record numbers joins them; record numbers and contact ids sit in a
private temporary SQLite database. In memory: one bucket at a time (a sixty-fourth of 12 bytes a key) and the
record arrays (about 12 bytes a record: 120 MB for ten million). A digest collision (about 1 in 10^7 for ten
million records with three keys each) merges two people into one cluster: they then share a group, which
costs a little statistical independence and never exposes a control person.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


#: Bucket files the link-key digests are spread over (a power of two: the digest's low bits choose).
BUCKETS = 64
_PAIR = np.dtype([("digest", "<i8"), ("rec", "<i4")])


class ClusterBuilder:
    """Collects records and their link keys; `finish()` computes the clusters."""

    def __init__(self) -> None:
        # "" = a private temporary database on disk, gone when closed; nothing here is worth a journal.
        self._db = sqlite3.connect("", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE records (rec INTEGER PRIMARY KEY, contact_id TEXT)")
        self._db.execute("BEGIN")
        self._folder = tempfile.TemporaryDirectory(prefix="crm-clusters-")
        self._buckets = [open(Path(self._folder.name) / f"{b:02d}", "wb") for b in range(BUCKETS)]  # noqa: SIM115
        self._records = 0

    def add_batch(self, contact_ids: list[str | None], digests: np.ndarray, owners: np.ndarray) -> None:
        """Add records at once: `digests[i]` is a link key of record `owners[i]` (an index into `contact_ids`)."""
        first = self._records
        self._records += len(contact_ids)
        self._db.executemany(
            "INSERT INTO records VALUES (?, ?)",
            zip(range(first, self._records), (c or None for c in contact_ids), strict=True),
        )
        pairs = np.empty(len(digests), dtype=_PAIR)
        pairs["digest"] = digests
        pairs["rec"] = owners + first
        bucket = (digests & (BUCKETS - 1)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        bounds = np.searchsorted(bucket[order], np.arange(BUCKETS + 1))
        ordered = pairs[order]
        for b in range(BUCKETS):
            if bounds[b + 1] > bounds[b]:
                ordered[bounds[b] : bounds[b + 1]].tofile(self._buckets[b])

    def finish(self) -> IdentityClusters:
        """Join records sharing a key, bucket by bucket; then each record's cluster and each cluster's anchor.

        The arrays of one number per record are made and dropped one after the other: at ten million records
        each is 40 MB (80 for the sizes), and the run's peak memory is here.
        """
        n = self._records
        roots = self._roots(n)
        sizes = np.bincount(roots, minlength=n) if n else np.zeros(0, dtype=np.int64)
        shared = sizes > 1  # by root: a cluster of several records
        stats = ClusterStats(
            n, int(np.count_nonzero(sizes)), int(np.count_nonzero(shared)), int(sizes.max()) if n else 0
        )
        del sizes
        anchors: dict[int, str] = {}
        members = np.flatnonzero(shared[roots])  # records of multi-record clusters, kept as an array
        del shared
        for start in range(0, len(members), 500):
            chunk = members[start : start + 500].tolist()
            marks = ",".join("?" * len(chunk))
            query = f"SELECT rec, contact_id FROM records WHERE rec IN ({marks}) AND contact_id IS NOT NULL"
            for rec, contact_id in self._db.execute(query, chunk):
                root = int(roots[rec])
                if root not in anchors or contact_id < anchors[root]:
                    anchors[root] = contact_id
        self._db.close()  # the anchors are found: the record table has done its job
        return IdentityClusters(stats, roots, anchors)

    def _roots(self, n: int) -> np.ndarray:
        """Each record's cluster root (its smallest record number), from the buckets of link-key digests."""
        parent = array("i", range(n))

        def find(rec: int) -> int:
            root = rec
            while parent[root] != root:
                root = parent[root]
            while parent[rec] != root:  # path compression keeps later finds short
                parent[rec], rec = root, parent[rec]
            return root

        for handle in self._buckets:
            handle.close()
            pairs = np.fromfile(handle.name, dtype=_PAIR)
            pairs = pairs[np.argsort(pairs["digest"], kind="stable")]
            shared = np.flatnonzero(pairs["digest"][1:] == pairs["digest"][:-1])
            recs = pairs["rec"]
            for i in shared.tolist():  # records sharing a key: few, however large the audience
                a, b = find(int(recs[i])), find(int(recs[i + 1]))
                if a != b:
                    parent[max(a, b)] = min(a, b)
        self._folder.cleanup()
        roots = np.frombuffer(parent, dtype=np.int32).copy() if n else np.zeros(0, dtype=np.int32)
        while n:  # pointer jumping until every record points at its root
            jumped = roots[roots]
            if np.array_equal(jumped, roots):
                return roots
            roots = jumped
        return roots


class IdentityClusters:
    """Each record's cluster anchor (the contact id whose holdout draw the cluster takes), by record number."""

    def __init__(self, stats: ClusterStats, roots: np.ndarray, anchors: dict[int, str]) -> None:
        self.stats = stats
        self._roots = roots  # record number → its cluster's root record
        self._anchors = anchors  # root → anchor (the smallest contact id), for clusters of several records

    def anchor_of_record(self, record: int) -> str | None:
        """The anchor of the cluster of record `record` (numbered as added), None for a one-record cluster.

        A batch read sees the records in the order the linking read added them, so no lookup by id is needed.
        """
        return self._anchors.get(int(self._roots[record]))

    def close(self) -> None:
        """Let go of the record arrays (about 4 bytes a record) once the routing read is done."""
        self._roots = np.zeros(0, dtype=np.int32)
        self._anchors = {}
