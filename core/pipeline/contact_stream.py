"""The audience as a stream of accepted contacts: parsed, unique by contact id, enriched from the match table.

This is the row pipeline, replaced by the batch pipeline (`audience_batches.py`) and kept only so that
`tests/pipeline/test_batch_pipeline.py` can compare the two (`RunOptions.pipeline` "rows").

Everything that can refuse a whole row before routing happens here, so the rows refused are written to the
rejects file and counted (as rejected, with the reason) where they are refused, and only contacts worth
routing flow on. Memory stays flat however large the audience: rows are read one at a time and the ids seen
so far are kept on disk (`SeenIds`); only the identity match table, when there is one, is held whole.

`link` is a first, separate read of the same rows: it links the records that are one person (`clusters.py`)
so that routing can give every record of a person one holdout group. It reads rejected rows too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from ..campaign.schema import AudienceSourceConfig
from ..sdk.contact import Contact
from ..sdk.summary import Outcome, RunSummary
from .clusters import ClusterBuilder, IdentityClusters
from .guardrails import ColumnCheck
from .identity_table import IdentityTable
from .link_keys import LinkKeys
from .onboarding import ContactParser
from .rejects import RejectsWriter
from .seen_ids import SeenIds
from .sources import open_rows


class ContactStream:
    """Iterate once to read the audience; rows read, field issues and rejected rows go to `summary` and `rejects`."""

    def __init__(
        self,
        audience: AudienceSourceConfig,
        base_dir: Path,
        parser: ContactParser,
        summary: RunSummary,
        rejects: RejectsWriter,
    ) -> None:
        self.audience = audience
        self.base_dir = base_dir
        self.parser = parser
        self.summary = summary
        self.rejects = rejects
        self.identity: IdentityTable | None = None
        #: the source's columns (a CSV header, a SQL result's, the keys JSON Lines records had), once `link` ran
        self.columns: list[str] | None = None
        self.rows_linked = 0

    @property
    def identity_stats(self) -> dict[str, int] | None:
        """How many contacts the match table gave each identifier kind (None without a match table)."""
        return self.identity.stats if self.identity is not None else None

    def _identity_table(self) -> IdentityTable | None:
        if self.identity is None and self.audience.identity_table:
            self.identity = IdentityTable.load(self.audience.identity_table, self.base_dir)
        return self.identity

    def link(self, link_keys: LinkKeys, progress: Callable[[int], None] | None = None) -> IdentityClusters:
        """Read every row once and cluster the records that share a strong identifier (match table included).

        This first read also checks the source's columns (`ColumnCheck`): a CSV or SQL header before its first
        row, JSON Lines keys once read; a required column missing raises `InputError` before any row is routed.
        `progress` is told every thousand rows; `rows_linked` is then the number of rows the second pass reads.
        """
        identity = self._identity_table()
        builder = ClusterBuilder()
        check = ColumnCheck(self.parser, self.audience.source)
        keys_only = check.keys_only
        self.rows_linked = 0
        for row in open_rows(self.audience.source, self.base_dir, check.header):
            self.rows_linked += 1
            if progress is not None and self.rows_linked % 1000 == 0:
                progress(1000)
            if row.error is not None:
                continue
            if keys_only:
                check.saw(row.fields)
            contact_id, identifiers = self.parser.link_identifiers(row)
            if identity is not None and contact_id:
                identifiers = {**identity.identifiers_for(contact_id), **identifiers}
            builder.add(contact_id, link_keys.keys(contact_id, identifiers))
        check.finish()
        if progress is not None:
            progress(self.rows_linked % 1000)
        self.columns = check.columns
        return builder.finish()

    def __iter__(self) -> Iterator[Contact]:
        summary, rejects = self.summary, self.rejects
        identity = self._identity_table()
        seen = SeenIds()
        try:
            for row in open_rows(self.audience.source, self.base_dir):
                summary.rows_read += 1
                parsed = self.parser.parse(row)
                for issue in parsed.issues:
                    rejects.write(issue.source, issue.row, issue.field, issue.detail or issue.reason, fatal=issue.fatal)
                    summary.field_issues += 0 if issue.fatal else 1
                contact = parsed.contact
                if contact is None:
                    fatal = next((i for i in parsed.issues if i.fatal), None)
                    summary.count(Outcome.REJECTED, f"{fatal.field}: {fatal.reason}" if fatal else "unreadable row")
                    continue
                if not seen.add(contact.contact_id):
                    rejects.write(row.source, row.row, "contact_id", "duplicate contact_id", fatal=True)
                    summary.count(Outcome.REJECTED, "contact_id: duplicate contact_id")
                    continue
                yield identity.enrich(contact) if identity is not None else contact
        finally:
            seen.close()
