"""The audience read by batches of columns, worked on by every core: link records into people, route contacts.

The row pipeline this replaced read, parsed and routed one `Contact` at a time; this does it a batch at a time
(`batch_source.py`, `contact_batch.py`, `batch_routing.py`) with the same outcome for every row: rejects file
lines, summary counts, identity clusters, routed contacts and staged rows are the same, in the same order, for
any number of workers and any batch size (`tests/pipeline/test_batch_pipeline.py`, which compared it with the
row pipeline until that was deleted).

Two reads: the first (`link`) links records sharing a strong identifier, the match table's included,
and checks the source's columns before anything is routed; the second (`route`) rejects what cannot be a
contact and repeated contact ids (kept on disk, `SeenIds`), and routes the rest.

Work is split so that nothing a batch's result holds depends on where it was computed (`batch_work.py`): this
process reads the batches, decides what needs the whole run in input order (the clusters; which ids were seen;
each record's anchor, found by its record number, as the first read numbered records), and applies the results
in input order; the per-record work (parsing, link keys, normalizing and hashing, routing, building the rows to
stage) runs in `workers` processes, each batch anywhere. With one worker it runs here, with no process started.
Worker processes are forked from this one, so they hold the run's rules, plugins and match table as loaded;
a bounded number of batches is in flight (`IN_FLIGHT_PER_WORKER`), so memory stays flat however large the file.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import signal
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ..campaign.schema import AudienceSourceConfig
from ..sdk.errors import InputError
from ..sdk.identifier_kinds import IdentifierKind
from .accounting import RunAccounts
from .batch_source import RowBatch, read_batches
from .batch_work import BatchWork, LinkedBatch, RoutedBatch, RoutePlan
from .clusters import ClusterBuilder, ClusterStats, IdentityClusters
from .guardrails import ColumnCheck
from .identity_table import IdentityTable
from .onboarding import ContactParser
from .seen_ids import SeenIds
from .segmentation import Segmenter
from .staging import Stager

#: Batches sent ahead per worker: enough to keep every worker busy while this process applies results.
IN_FLIGHT_PER_WORKER = 3

_T = TypeVar("_T")
_WORK: BatchWork | None = None  # in a worker process: its copy of the run's batch work


def _start_worker(work: BatchWork) -> None:
    """A forked worker's start: keep the run's batch work, and ignore Ctrl-C.

    The work is inherited by the fork, never pickled, and belongs to this pool alone (two runs in one process
    each give their own). Ctrl-C reaches every process of the terminal's group: the run's process stops workers.
    """
    global _WORK
    _WORK = work
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _link(batch: RowBatch) -> LinkedBatch:
    assert _WORK is not None
    return _WORK.link(batch)


def _route(batch: RowBatch, plan: RoutePlan) -> RoutedBatch:
    assert _WORK is not None
    return _WORK.route(batch, plan)


class BatchResults:
    """Where a run's routed batches land, in input order, whichever reader routed them (here or on Spark).

    Each batch's rejects lines go to the rejects file, its counts to the run's summary, holdout balance and
    segmenter (for its warnings), its staged rows to the stager, and its match-table counts to `enriched`.
    """

    def __init__(
        self, accounts: RunAccounts, segmenter: Segmenter, stager: Stager, identity: IdentityTable | None
    ) -> None:
        self.accounts = accounts
        self.segmenter = segmenter
        self.stager = stager
        self.enriched: dict[IdentifierKind, int] | None = dict.fromkeys(identity.kinds, 0) if identity else None

    @property
    def identity_stats(self) -> dict[str, int] | None:
        """How many contacts the match table gave each identifier kind (None without a match table)."""
        return {kind.value: n for kind, n in self.enriched.items()} if self.enriched is not None else None

    def apply(self, routed: RoutedBatch) -> None:
        """Add one routed batch to the run."""
        accounts = self.accounts
        accounts.summary.rows_read += routed.rows
        for line in routed.rejects:
            accounts.rejects.write(*line)
        accounts.merge(routed.summary, routed.balance)
        self.segmenter.merge(routed.segments)
        if routed.enriched is not None and self.enriched is not None:
            for kind, n in routed.enriched.items():
                self.enriched[kind] = self.enriched.get(kind, 0) + n
        self.stager.write(routed.staged)


class LinkedAudience(Protocol):
    """What the linking read gives the routing read: here `IdentityClusters`; on Spark, a plan DataFrame."""

    @property
    def stats(self) -> ClusterStats:
        """How the records grouped into people."""

    def close(self) -> None:
        """Drop what the link kept."""


class AudienceReader(Protocol):
    """Reads a run's audience twice, to link and to route it (`AudienceBatches`; `spark.SparkAudience`)."""

    #: the source's columns, once `link` ran
    columns: list[str] | None
    #: records the linking read saw
    rows_linked: int

    def __enter__(self) -> AudienceReader: ...

    def __exit__(self, *exc: object) -> None: ...

    def link(self, progress: Callable[[int], None] | None = None) -> Any:
        """Read every record and link those that are one person; the result is handed back to `route`."""

    def route(self, linked: Any, progress: Callable[[int], None] | None = None) -> None:
        """Read every record again and route it, applying each batch in input order (`BatchResults.apply`)."""


#: Makes a run's `AudienceReader` from its audience settings, per-batch work and where results go, and the
#: workers it may use (`AudienceBatches` itself).
AudienceReaderFactory = Callable[
    [AudienceSourceConfig, Path, ContactParser, BatchWork, BatchResults, int], AudienceReader
]


def read_fingerprint(batch: RowBatch, id_column: str) -> bytes:
    """What both passes over the source must read alike: the batch's row numbers and contact ids, digested.

    Routing takes each record's person from the linking pass by its position, so a source that changed between
    the passes (an export rewritten in place, a table queried twice without an order) would route records with
    another record's person: checked batch by batch instead, and refused.
    """
    ids = batch.column(id_column) if id_column in batch.names else []
    text = "\x1f".join(map(str, ids)) + "\x1e" + ",".join(map(str, batch.rows))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()


def _changed(source: str, row: int | None) -> InputError:
    where = f" (from row {row})" if row is not None else ""
    return InputError(
        f"{source} changed while the run read it{where}: its second read did not "
        "give the records of the first. Nothing was pushed; run again once the export is complete and stable "
        "(a SQL source needs an ORDER BY)"
    )


class AudienceBatches:
    """The audience of one run, read by batches (see the module doc)."""

    def __init__(
        self,
        audience: AudienceSourceConfig,
        base_dir: Path,
        parser: ContactParser,
        work: BatchWork,
        results: BatchResults,
        workers: int = 1,
    ) -> None:
        self.audience = audience
        self.base_dir = base_dir
        self.parser = parser
        self.work = work
        self.results = results
        self.workers = max(1, workers)
        #: the source's columns (a CSV header, a SQL result's, the keys JSON Lines records had), once `link` ran
        self.columns: list[str] | None = None
        self.rows_linked = 0
        self._pool: ProcessPoolExecutor | None = None
        #: each batch's `read_fingerprint` in the linking pass, which the routing pass must read again
        self._fingerprints: list[bytes] = []

    def __enter__(self) -> AudienceBatches:
        if self.workers > 1:
            # Forked, not spawned: a worker holds the run's rules, plugins and match table as they are here. A
            # worker only computes (no I/O but its pipe, no lock another thread holds), so the other threads this
            # process may have (local sandboxes, a progress display) are no hazard; Python 3.12+ warns anyway.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*multi-threaded.*fork", category=DeprecationWarning)
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_worker,
                    initargs=(self.work,),
                )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def link(self, progress: Callable[[int], None] | None = None) -> IdentityClusters:
        """Read every record once and cluster those sharing a strong identifier, rejected records included."""
        builder = ClusterBuilder()
        check = ColumnCheck(self.parser, self.audience.source)
        self.rows_linked = 0
        batches = read_batches(self.audience.source, self.base_dir, check.header)
        self._fingerprints = []
        for batch, linked in self._map(_link, self.work.link, ((batch, ()) for batch in batches)):
            self._fingerprints.append(read_fingerprint(batch, self.parser.id_column))
            self.rows_linked += len(batch)
            for keys in linked.keys:
                check.saw(dict.fromkeys(keys))
            builder.add_batch(linked.contact_ids, linked.digests, linked.owners)
            if progress is not None:
                progress(len(batch))
        check.finish()
        self.columns = check.columns
        return builder.finish()

    def route(self, clusters: IdentityClusters, progress: Callable[[int], None] | None = None) -> None:
        """Read every record again and route it; counts, rejects and staged rows are applied in input order."""
        seen = SeenIds()
        try:
            plans = self._plans(read_batches(self.audience.source, self.base_dir), clusters, seen)
            for batch, routed in self._map(_route, self.work.route, plans):
                self.results.apply(routed)
                if progress is not None:
                    progress(len(batch))
        finally:
            seen.close()

    def _plans(
        self, batches: Iterable[RowBatch], clusters: IdentityClusters, seen: SeenIds
    ) -> Iterator[tuple[RowBatch, tuple[RoutePlan]]]:
        """Each batch with what routing it needs from the run: which ids were seen, which anchors (in order)."""
        record = 0  # numbered as `link` added them: every record that is not malformed
        read = 0
        for number, batch in enumerate(batches):
            if number >= len(self._fingerprints) or read_fingerprint(batch, self.parser.id_column) != (
                self._fingerprints[number]
            ):
                raise _changed(batch.source, batch.rows[0] if len(batch) else None)
            read += len(batch)
            contact_ids, rejected = self.work.columns.ids(batch)
            candidates = [index for index in range(len(batch)) if not rejected[index]]
            new = iter(seen.add_many([contact_ids[index] for index in candidates]))
            plan = RoutePlan([], set(), {})
            for index in range(len(batch)):
                if index not in batch.errors:
                    record += 1
                if rejected[index]:
                    continue
                if not next(new):
                    plan.duplicates.add(index)
                    continue
                plan.kept.append(index)
                plan.anchors[index] = clusters.anchor_of_record(record - 1)
            yield batch, (plan,)
        if read != self.rows_linked:
            raise _changed(self.audience.source.path or "the audience source", None)

    def _map(
        self, remote: Callable[..., _T], local: Callable[..., _T], jobs: Iterable[tuple[RowBatch, tuple[Any, ...]]]
    ) -> Iterator[tuple[RowBatch, _T]]:
        """Each batch with its result, in input order; computed by the workers, or here without a pool."""
        pool = self._pool
        if pool is None:
            for batch, args in jobs:
                yield batch, local(batch, *args)
            return
        pending: deque[tuple[RowBatch, Future[_T]]] = deque()
        try:
            for batch, args in jobs:
                pending.append((batch, pool.submit(remote, batch, *args)))
                if len(pending) >= self.workers * IN_FLIGHT_PER_WORKER:
                    done, future = pending.popleft()
                    yield done, future.result()
            while pending:
                done, future = pending.popleft()
                yield done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
