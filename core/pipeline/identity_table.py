"""The identity match table: platform identifiers (MAIDs, UID2, RampID, ...) keyed by CRM contact id.

A match table from an identity provider or a clean room fills in identifiers the CRM does not hold. It only
ever *adds*: a kind the contact already carries from the CRM is never overridden. `country` is not taken from
the table — it decides eligibility and must come from the CRM — and neither is any column that is not an
identifier kind.

The table is held in memory as `contact id → tuple of values` aligned to the table's identifier columns:
roughly 150 bytes per row plus about 50 bytes + the value's length per identifier (CPython), so a million
rows with three identifiers each take some 0.5 GB. A match table is far smaller than the audience it joins.
When a key appears on several rows, a later row only fills kinds the earlier rows left empty.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path

from ..campaign.schema import IdentityTableConfig
from ..sdk.identifier_kinds import IdentifierKind
from .sources import SourceRow, open_rows

#: The identifier kinds a match table may supply.
TABLE_KINDS = tuple(kind for kind in IdentifierKind if kind is not IdentifierKind.COUNTRY)
_KIND_BY_NAME = {kind.value: kind for kind in TABLE_KINDS}


@dataclass
class IdentityCounts:
    """What the table held and what it added (`enriched`: cells filled, by kind).

    Attributes:
        rows: data rows read from the source.
        keys: distinct contact ids in the table.
        skipped: rows without a key, or malformed (`SourceRow.error`).
        duplicates: rows whose key appeared on an earlier row.
        looked_up: contacts looked up (`enrich_columns`).
        matched: contacts whose id is in the table.
        enriched: contacts that gained each identifier kind.
    """

    rows: int = 0
    keys: int = 0
    skipped: int = 0
    duplicates: int = 0
    looked_up: int = 0
    matched: int = 0
    enriched: dict[IdentifierKind, int] = field(default_factory=dict)


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value).strip()


class IdentityTable:
    """An in-memory match table; build it with `IdentityTable.load`."""

    def __init__(self, kinds: tuple[IdentifierKind, ...], entries: dict[str, tuple[str | None, ...]]) -> None:
        self.kinds = kinds
        self._entries = entries
        self.counts = IdentityCounts(keys=len(entries), enriched=dict.fromkeys(kinds, 0))

    @classmethod
    def from_rows(cls, rows: Iterable[SourceRow], key: str = "contact_id") -> IdentityTable:
        """Build a table from source rows; every identifier-kind column any row has becomes a kind."""
        kinds: list[IdentifierKind] = []
        entries: dict[str, tuple[str | None, ...]] = {}
        rows_read = skipped = duplicates = 0
        for row in rows:
            rows_read += 1
            if row.error is not None:
                skipped += 1
                continue
            fields = row.fields
            contact_id = _text(fields.get(key))
            if not contact_id:
                skipped += 1
                continue
            for column in fields:
                kind = _KIND_BY_NAME.get(column)
                if kind is not None and kind not in kinds:
                    kinds.append(kind)  # values stored earlier are shorter: missing trailing kinds read as None
            values = tuple(_text(fields.get(kind.value)) or None for kind in kinds)
            known = entries.get(contact_id)
            if known is None:
                entries[contact_id] = values
            else:
                duplicates += 1
                entries[contact_id] = tuple(old or new for old, new in zip_longest(known, values))
        table = cls(tuple(kinds), entries)
        table.counts.rows, table.counts.skipped, table.counts.duplicates = rows_read, skipped, duplicates
        return table

    @classmethod
    def load(cls, config: IdentityTableConfig, base_dir: Path) -> IdentityTable:
        """Read a match table from its source (CSV, JSON Lines or SQL), keyed by `config.key`."""
        return cls.from_rows(open_rows(config, base_dir), key=config.key)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self._entries

    def identifiers_for(self, contact_id: str) -> dict[IdentifierKind, str]:
        """The identifiers the table holds for a contact id (empty when it has none); counts nothing."""
        values = self._entries.get(contact_id)
        if values is None:
            return {}
        return {kind: value for kind, value in zip(self.kinds, values, strict=False) if value}

    def enrich_columns(
        self, contact_ids: Sequence[str], identifiers: dict[IdentifierKind, list[str | None]], rows: Iterable[int]
    ) -> dict[IdentifierKind, int]:
        """Fill the empty identifier cells of records `rows` of a batch held by column from the table, counted.

        Returns how many cells of each kind this call filled (a batch worker's share of `counts.enriched`).
        """
        stats = self.counts
        filled = dict.fromkeys(self.kinds, 0)
        entries = self._entries
        for kind in self.kinds:  # every kind's column up front: a record's identifiers keep one order in any batch
            identifiers.setdefault(kind, [None] * len(contact_ids))
        for index in rows:
            stats.looked_up += 1
            values = entries.get(contact_ids[index])
            if values is None:
                continue
            stats.matched += 1
            for kind, value in zip(self.kinds, values, strict=False):
                if not value:
                    continue
                column = identifiers[kind]
                if not column[index]:
                    column[index] = value
                    stats.enriched[kind] += 1
                    filled[kind] += 1
        return filled
