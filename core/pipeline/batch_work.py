"""The work on one batch of records, as a function of the batch alone: what a worker process runs.

A batch's link keys (`link`) and its routing (`route`) depend on the batch and on what the run decided before
it (each record's cluster anchor, whether its contact id was seen earlier), never on another batch. So batches
are worked on anywhere, in any order (another process, a Spark executor), and their results applied in input
order give the same run whatever the batches: `BatchResults.apply` adds them (rejects lines, counts, staged rows) one
batch after the other.

Results are plain data: digests, rows to stage, the rejects file's lines in order, and counts to add, so they
travel between processes cheaply and nothing in them depends on which process made them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.summary import Outcome, PlatformSummary, RunSummary
from .accounting import RunAccounts
from .batch_routing import BatchRouter
from .batch_source import RowBatch
from .clusters import key_digest
from .contact_batch import ColumnsParser
from .holdout import BalanceTracker, Group
from .identity_table import IdentityTable
from .link_keys import LinkKeys
from .staging import StagedRows, Stager

_DUPLICATE = "duplicate contact_id"


class RejectsRecorder:
    """Keeps the rejects file's lines (`RejectsWriter.write` arguments) in order, for the process that writes it."""

    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def write(
        self, source: str, row: int | None, field: str, reason: str, platform: str = "", fatal: bool = False,
        contact_id: str = "", stage: str = "",
    ) -> None:
        """Keep one line."""
        self.lines.append((source, row, field, reason, platform, fatal, contact_id, stage))


@dataclass
class LinkedBatch:
    """A batch's records to cluster (those not malformed): contact ids, and their link-key digests.

    `digests[i]` is a key of record `owners[i]` (an index into `contact_ids`), as `ClusterBuilder.add_batch` takes.
    """

    contact_ids: list[str | None]
    digests: np.ndarray
    owners: np.ndarray
    #: JSON Lines only: the keys of each record, for the column check
    keys: list[list[str]] = field(default_factory=list)


@dataclass
class RoutePlan:
    """What the run decided about a batch's records before routing them (in input order, by the applier).

    Attributes:
        kept: the records to route (contacts whose id was not seen before).
        duplicates: records whose contact id an earlier record has.
        anchors: record index → the anchor of its cluster (None: its own id).
    """

    kept: list[int]
    duplicates: set[int]
    anchors: dict[int, str | None]


@dataclass
class RoutedBatch:
    """A routed batch, to apply in order: lines for the rejects file, counts, and the rows to stage."""

    rows: int
    rejects: list[tuple[Any, ...]]
    summary: RunSummary
    balance: Counter[tuple[tuple[str, ...], Group]]
    segments: dict[str, int]
    enriched: dict[IdentifierKind, int] | None  # identifier cells the match table filled, by kind
    staged: StagedRows


class BatchWork:
    """Everything a batch's work needs: the parser, link keys, match table, router and a row-building stager."""

    def __init__(
        self,
        columns: ColumnsParser,
        link_keys: LinkKeys,
        identity: IdentityTable | None,
        router: BatchRouter,
        stager: Stager,
        *,
        campaign: str,
        mode: str,
        platforms: list[str],
        keys_only: bool,
    ) -> None:
        self.columns = columns
        self.link_keys = link_keys
        self.identity = identity
        self.router = router
        self.stager = stager
        self.campaign = campaign
        self.mode = mode
        self.platforms = platforms
        self.keys_only = keys_only
        router.router.segmenter.take_counts()  # from here on it counts one batch at a time

    def link(self, batch: RowBatch) -> LinkedBatch:
        """The link-key digests of each record that is not malformed (rejected ones too: they link their person)."""
        columns = self.columns.link_columns(batch)
        identity = self.identity
        contact_ids: list[str | None] = []
        digests: list[int] = []
        owners: list[int] = []
        keys: list[list[str]] = []
        for index in range(len(batch)):
            if index in batch.errors:
                continue
            if self.keys_only:
                keys.append(list(batch.source_row(index).fields))
            contact_id = columns.contact_id[index]
            identifiers = columns.row_identifiers(index)
            if identity is not None and contact_id:
                identifiers = {**identity.identifiers_for(contact_id), **identifiers}
            owner = len(contact_ids)
            contact_ids.append(contact_id or None)
            for key in set(self.link_keys.keys(contact_id, identifiers)):
                digests.append(key_digest(key))
                owners.append(owner)
        return LinkedBatch(
            contact_ids, np.array(digests, dtype=np.int64), np.array(owners, dtype=np.int32), keys
        )

    def route(self, batch: RowBatch, plan: RoutePlan) -> RoutedBatch:
        """Route the batch's records: reject what is not a contact, route the rest, build the rows to stage."""
        summary = RunSummary(campaign=self.campaign, mode=self.mode)
        summary.platforms = {platform: PlatformSummary() for platform in self.platforms}
        rejects = RejectsRecorder()
        router = self.router.router
        accounts = RunAccounts(summary, rejects, BalanceTracker(router.control_fraction, 1.0))  # type: ignore[arg-type]
        columns = self.columns.parse(batch)
        enriched = None
        if self.identity is not None:
            enriched = self.identity.enrich_columns(columns.contact_id, columns.identifiers, plan.kept)
        for index in range(len(batch)):
            issues = columns.issues.get(index, ())
            for issue in issues:
                rejects.write(issue.source, issue.row, issue.field, issue.detail or issue.reason, fatal=issue.fatal)
                summary.field_issues += 0 if issue.fatal else 1
            if columns.rejected[index]:
                fatal = next((i for i in issues if i.fatal), None)
                summary.count(Outcome.REJECTED, f"{fatal.field}: {fatal.reason}" if fatal else "unreadable row")
            elif index in plan.duplicates:
                id_column = self.columns.parser.id_column  # the export's name for it, as "missing contact id"
                rejects.write(batch.source, batch.rows[index], id_column, _DUPLICATE, fatal=True)
                summary.count(Outcome.REJECTED, f"{id_column}: {_DUPLICATE}")
            else:
                routed = self.router.route(columns, index, plan.anchors[index])
                accounts.add(routed)
                self.stager.add(routed)
        return RoutedBatch(
            rows=len(batch),
            rejects=rejects.lines,
            summary=summary,
            balance=accounts.balance.counts,
            segments=router.segmenter.take_counts(),
            enriched=enriched,
            staged=self.stager.take(),
        )

