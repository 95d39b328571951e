"""The audience read by batches of columns: link its records into people, then route every contact.

What `ContactStream` and the engine's routing loop do row by row, done a batch at a time (`batch_source.py`,
`contact_batch.py`, `batch_routing.py`), with the same outcome for every row, in the same order: rejects file
lines, summary counts, identity clusters and routed contacts are those of the row pipeline, which
`tests/pipeline/test_batch_pipeline.py` compares run for run.

Two reads, as before: the first (`link`) links records sharing a strong identifier, the match table's
included, and checks the source's columns before anything is routed; the second (`route`) rejects what
cannot be a contact, rejects repeated contact ids (kept on disk, `SeenIds`), fills identifiers in from the
match table, and routes the rest. The records of the second read are numbered as the first read added them,
so each finds its cluster's anchor by number.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..campaign.schema import AudienceSourceConfig
from ..sdk.summary import Outcome, RunSummary
from .batch_routing import BatchRouter
from .batch_source import read_batches
from .clusters import ClusterBuilder, IdentityClusters
from .contact_batch import ColumnsParser
from .guardrails import ColumnCheck
from .identity_table import IdentityTable
from .link_keys import LinkKeys
from .onboarding import ContactParser
from .rejects import RejectsWriter
from .routing import RoutedContact
from .seen_ids import SeenIds

_DUPLICATE = "duplicate contact_id"


class AudienceBatches:
    """The audience of one run, read by batches; rows read and rejected go to `summary` and `rejects`."""

    def __init__(
        self,
        audience: AudienceSourceConfig,
        base_dir: Path,
        parser: ContactParser,
        router: BatchRouter,
        summary: RunSummary,
        rejects: RejectsWriter,
    ) -> None:
        self.audience = audience
        self.base_dir = base_dir
        self.parser = parser
        self.router = router
        self.columns_parser = ColumnsParser(parser, router.wanted)
        self.summary = summary
        self.rejects = rejects
        self.identity = IdentityTable.load(audience.identity_table, base_dir) if audience.identity_table else None
        #: the source's columns (a CSV header, a SQL result's, the keys JSON Lines records had), once `link` ran
        self.columns: list[str] | None = None
        self.rows_linked = 0

    @property
    def identity_stats(self) -> dict[str, int] | None:
        """How many contacts the match table gave each identifier kind (None without a match table)."""
        return self.identity.stats if self.identity is not None else None

    def link(self, link_keys: LinkKeys, progress: Callable[[int], None] | None = None) -> IdentityClusters:
        """Read every record once and cluster those sharing a strong identifier (`ContactStream.link`)."""
        identity = self.identity
        builder = ClusterBuilder()
        check = ColumnCheck(self.parser, self.audience.source)
        self.rows_linked = 0
        for batch in read_batches(self.audience.source, self.base_dir, check.header):
            self.rows_linked += len(batch)
            columns = self.columns_parser.link_columns(batch)
            for index in range(len(batch)):
                if index in batch.errors:
                    continue
                if check.keys_only:
                    check.saw(batch.source_row(index).fields)
                contact_id = columns.contact_id[index]
                identifiers = columns.row_identifiers(index)
                if identity is not None and contact_id:
                    identifiers = {**identity.identifiers_for(contact_id), **identifiers}
                builder.add(contact_id, link_keys.keys(contact_id, identifiers))
            if progress is not None:
                progress(len(batch))
        check.finish()
        self.columns = check.columns
        return builder.finish()

    def route(
        self,
        clusters: IdentityClusters,
        routed: Callable[[RoutedContact], None],
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Read every record again: count and reject what is not a contact, route the rest to `routed` in order."""
        summary, rejects = self.summary, self.rejects
        seen = SeenIds()
        record = 0  # numbered as `link` added them: every record that is not malformed
        try:
            for batch in read_batches(self.audience.source, self.base_dir):
                columns = self.columns_parser.parse(batch)
                kept: list[int] = []
                anchors: dict[int, str | None] = {}
                duplicates: set[int] = set()
                for index in range(len(batch)):
                    if index not in batch.errors:
                        record += 1
                    if columns.rejected[index]:
                        continue
                    if not seen.add(columns.contact_id[index]):
                        duplicates.add(index)
                        continue
                    kept.append(index)
                    anchors[index] = clusters.anchor_of_record(record - 1)
                if self.identity is not None:
                    self.identity.enrich_columns(columns.contact_id, columns.identifiers, kept)
                for index in range(len(batch)):
                    summary.rows_read += 1
                    issues = columns.issues.get(index, ())
                    for issue in issues:
                        rejects.write(
                            issue.source, issue.row, issue.field, issue.detail or issue.reason, fatal=issue.fatal
                        )
                        summary.field_issues += 0 if issue.fatal else 1
                    if columns.rejected[index]:
                        fatal = next((i for i in issues if i.fatal), None)
                        summary.count(Outcome.REJECTED, f"{fatal.field}: {fatal.reason}" if fatal else "unreadable row")
                    elif index in duplicates:
                        rejects.write(batch.source, batch.rows[index], "contact_id", _DUPLICATE, fatal=True)
                        summary.count(Outcome.REJECTED, f"contact_id: {_DUPLICATE}")
                    else:
                        routed(self.router.route(columns, index, anchors[index]))
                if progress is not None:
                    progress(len(batch))
        finally:
            seen.close()
