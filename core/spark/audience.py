"""A Spark DataFrame as a run's audience: the per-record work on the executors, the run on the driver.

`SparkAudience` is an `AudienceReader` (the engine's seam, `pipeline/audience_batches.py`): it does what
`AudienceBatches` does for a file, with the same per-batch functions (`BatchWork.link`, `BatchWork.route`) run by
`mapInArrow` on the executors, and the steps that need the whole audience as DataFrame operations:

- **link**: each Arrow batch's contact ids and link-key digests (`BatchWork.link`); the identity clusters as
  joins (`components.py`); each repeated contact id's first record by the order column (a window); the
  resulting plan (kept, duplicate, anchor) is one row per record;
- **route**: the records joined with their plan, in order, routed batch by batch (`BatchWork.route`), each
  batch's result (rejects lines, counts, staged rows) coming back to the driver in record order, where it is
  applied exactly as a local run's (`BatchResults.apply`) and staged in the campaign's state database.

So a rule has one implementation: parsing, normalization, hashing, link keys, holdout draws, channel rules,
suppression and payloads are the local pipeline's functions, and the Spark path gives the local path's staged
membership, holdout ledger, rejects and requests for the same records (`tests/spark/`). A batch's work depends
on the batch and its plan only, and digests are BLAKE2b, never Python's `hash()`: nothing depends on which
executor, process or batch boundary did the work.

The input: one row per CRM record, with the columns a CSV export of it would have (the campaign's `columns`
mapping applies), plus an order column numbering the records (unique whole numbers). A text column is read as a
CSV export's cells are (null is an empty cell); a typed one (numbers, booleans, dates, arrays, structs) as an SQL
source's values are (`pipeline.sources.json_like`), so a score stays a number and an array of categories a list.
A column whose text would depend on the session (a time-zone-aware timestamp) or that no export has a cell for
(a map, an interval) is refused before anything runs. The order decides which record of a repeated contact id is
routed (the first) and is the row number the rejects file names.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from ..campaign.schema import AudienceSourceConfig
from ..pipeline.audience_batches import BatchResults
from ..pipeline.batch_source import RowBatch
from ..pipeline.batch_work import BatchWork, RoutedBatch, RoutePlan
from ..pipeline.guardrails import ColumnCheck
from ..pipeline.onboarding import ContactParser
from ..pipeline.sources import json_like
from ..sdk.errors import InputError
from .components import SparkClusters, clusters

#: Internal column names, chosen not to clash with a CRM export's.
ROW, KEPT, DUPLICATE, ANCHOR = "__crm_row", "__crm_kept", "__crm_duplicate", "__crm_anchor"
_PLAN = (ROW, KEPT, DUPLICATE, ANCHOR)
_LINKED = "rec long, link_id string, dedupe_id string, rejected boolean, digest long"
_ROUTED = "first_row long, routed binary"
#: Column types read as an SQL source's values; a text column (string, char, varchar) is read as CSV text.
_TYPED = (
    T.BooleanType, T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType,
    T.DateType, T.TimestampNTZType, T.BinaryType, T.ArrayType, T.StructType, T.NullType,
)
_TEXT = (T.StringType, T.CharType, T.VarcharType)
_WHOLE = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)


def _row_batch(source: str, arrow: pa.RecordBatch) -> RowBatch:
    """An Arrow batch of records as the local pipeline's `RowBatch` (its row numbers from the order column).

    Text columns stay Arrow's; a batch with typed columns holds their values as an SQL source's (`json_like`).
    """
    table = pa.Table.from_batches([arrow])
    rows = table.column(ROW).to_pylist()
    cells = table.drop_columns([name for name in _PLAN if name in table.column_names])
    if all(pa.types.is_string(kind) for kind in cells.schema.types):
        return RowBatch(source, rows, table=cells)
    columns = {
        name: column.to_pylist() if pa.types.is_string(column.type) else [json_like(v) for v in column.to_pylist()]
        for name, column in zip(cells.column_names, cells.columns, strict=True)
    }
    return RowBatch(source, rows, columns)


def _link_batches(work: BatchWork, source: str, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executors: each batch's records (id, duplicate key, rejected) and their link-key digests, one row each.

    Record rows have a null digest; key rows a null id. A DataFrame has no malformed record, so every record is
    linked, as a local run links every record its reader could split into cells.
    """
    for arrow in batches:
        batch = _row_batch(source, arrow)
        dedupe_ids, rejected = work.columns.ids(batch)
        linked = work.link(batch)
        rows = pa.array(batch.rows, pa.int64())  # a missing number stays null, for `_check_order` to name
        n, k = len(rows), len(linked.digests)
        yield pa.RecordBatch.from_arrays(
            [
                pa.concat_arrays([rows, rows.take(pa.array(linked.owners, pa.int32()))]),
                pa.array([*linked.contact_ids, *([None] * k)], pa.string()),
                pa.array([*(cid or None for cid in dedupe_ids), *([None] * k)], pa.string()),
                pa.array([*rejected, *([None] * k)], pa.bool_()),
                pa.concat_arrays([pa.nulls(n, pa.int64()), pa.array(linked.digests, pa.int64())]),
            ],
            names=["rec", "link_id", "dedupe_id", "rejected", "digest"],
        )


def _route_batches(work: BatchWork, source: str, batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executors: route each batch with its plan; one row per batch, its `RoutedBatch` pickled."""
    for arrow in batches:
        if arrow.num_rows == 0:
            continue
        kept = arrow.column(KEPT).to_pylist()
        anchors = arrow.column(ANCHOR).to_pylist()
        plan = RoutePlan(
            [i for i, keep in enumerate(kept) if keep],
            {i for i, duplicate in enumerate(arrow.column(DUPLICATE).to_pylist()) if duplicate},
            {i: anchors[i] for i, keep in enumerate(kept) if keep},
        )
        batch = _row_batch(source, arrow)
        routed = work.route(batch, plan)
        yield pa.RecordBatch.from_pydict(
            {"first_row": [batch.rows[0]], "routed": [pickle.dumps(routed, protocol=pickle.HIGHEST_PROTOCOL)]}
        )


class SparkAudienceSource:
    """Makes the run's `SparkAudience`: hand it to `Engine(audience=...)` (`run_campaign` does)."""

    def __init__(self, contacts: DataFrame, *, order: str, source: str = "dataframe") -> None:
        """`order`: the column numbering the records; `source`: the name the rejects file gives the input."""
        self.contacts = contacts
        self.order = order
        self.source = source

    def __call__(
        self,
        audience: AudienceSourceConfig,
        base_dir: Path,
        parser: ContactParser,
        work: BatchWork,
        results: BatchResults,
        workers: int,
    ) -> SparkAudience:
        """The reader for one run (`AudienceReaderFactory`); `workers` is Spark's business here."""
        return SparkAudience(self, audience, parser, work, results)


class SparkAudience:
    """One run's audience on Spark (see the module doc); used by the engine as an `AudienceReader`."""

    def __init__(
        self,
        source: SparkAudienceSource,
        audience: AudienceSourceConfig,
        parser: ContactParser,
        work: BatchWork,
        results: BatchResults,
    ) -> None:
        self.source = source
        self.audience = audience
        self.parser = parser
        self.work = work
        self.results = results
        self.columns: list[str] | None = None
        self.rows_linked = 0
        self._records: DataFrame | None = None
        self._input: DataFrame | None = None

    def __enter__(self) -> SparkAudience:
        return self

    def __exit__(self, *exc: object) -> None:
        self._records = self._input = None

    def _frame(self, types: dict[str, T.DataType]) -> DataFrame:
        """The input's cells (text, null an empty cell; typed values as they are) and its order as `ROW`.

        Built once and checkpointed by `link`: both of the run's passes read that one copy, so a table that
        changes meanwhile cannot give the routing pass records the linking pass did not plan.
        """
        contacts, order = self.source.contacts, self.source.order
        cells = [
            (F.coalesce(F.col(f"`{name}`").cast("string"), F.lit("")) if isinstance(types[name], _TEXT)
             else F.col(f"`{name}`")).alias(name)
            for name in self.columns or []
        ]
        return contacts.select(*cells, F.col(f"`{order}`").try_cast("long").alias(ROW))

    def _check_columns(self) -> dict[str, T.DataType]:
        """The order column and the campaign's columns: present, and of types a CRM record can be read from.

        Returns the input's column types (one schema request, which over Spark Connect is a round trip).
        """
        contacts, order, name = self.source.contacts, self.source.order, self.source.source
        types = {field.name: field.dataType for field in contacts.schema.fields}
        if order not in types:
            raise InputError(f"{name}: no order column {order!r} (columns: {', '.join(types)})")
        if not isinstance(types[order], _WHOLE + _TEXT):
            raise InputError(
                f"{name}: order column {order!r} is {types[order].simpleString()}; it must hold whole numbers"
            )
        check = ColumnCheck(self.parser, self.audience.source, name)
        needs_order = order in check.required()  # the order column is a record's cell too only when mapped
        check.header([column for column in types if column != order or needs_order])
        self.columns = check.columns
        for column in self.columns or []:
            kind = types[column]
            if isinstance(kind, T.TimestampType):
                raise InputError(
                    f"{name}: column {column!r} is a timestamp, whose text depends on the session's time zone; "
                    f"select it as the text it should be read as (e.g. date_format({column}, \"yyyy-MM-dd\"))"
                )
            if not isinstance(kind, _TEXT + _TYPED):
                raise InputError(f"{name}: column {column!r} is {kind.simpleString()}, which no CRM export has a "
                                 "cell for; select it as text or a number")
        return types

    def link(self, progress: Callable[[int], None] | None = None) -> SparkClusters:
        """Check the columns, link every record on the executors, cluster them, and plan each record's routing."""
        types = self._check_columns()
        work, source = self.work, self.source.source
        self._input = self._frame(types).localCheckpoint()
        linked = (
            self._input
            .mapInArrow(partial(_link_batches, work, source), _LINKED)
            .localCheckpoint()
        )
        records = linked.where(F.col("digest").isNull()).drop("digest")
        self._check_order(records)
        found = clusters(records, linked.where(F.col("digest").isNotNull()).select("rec", "digest"))
        first = Window.partitionBy("dedupe_id").orderBy("rec")
        repeated = (
            records.where(~F.col("rejected"))
            .select("rec", (F.row_number().over(first) > 1).alias(DUPLICATE))
        )
        self._records = (
            records.join(repeated, "rec", "left")
            .join(found.anchors, "rec", "left")
            .select(
                F.col("rec").alias(ROW),
                (~F.col("rejected") & ~F.coalesce(F.col(DUPLICATE), F.lit(False))).alias(KEPT),
                F.coalesce(F.col(DUPLICATE), F.lit(False)).alias(DUPLICATE),
                F.col("anchor").alias(ANCHOR),
            )
        )
        self.rows_linked = found.stats.records
        if progress is not None:
            progress(self.rows_linked)
        return found

    def _check_order(self, records: DataFrame) -> None:
        """Refuse an order column that leaves a record unnumbered or numbers two alike: the run would be ambiguous."""
        name = f"{self.source.source}: order column {self.source.order!r}"
        if records.where(F.col("rec").isNull()).limit(1).count():
            raise InputError(f"{name} is empty or not a whole number on some records; it must number every record")
        twice = records.groupBy("rec").count().where(F.col("count") > 1).select("rec").first()
        if twice is not None:
            raise InputError(f"{name} gives the number {twice[0]} to several records; each needs its own")

    def route(self, linked: SparkClusters, progress: Callable[[int], None] | None = None) -> None:
        """Route every record on the executors and apply each batch's result here, in record order."""
        assert self._records is not None and self._input is not None, "link first"
        planned = self._input.join(self._records, ROW).orderBy(ROW)
        # Checkpointed first, so every partition is routed at once on the executors: read by `toLocalIterator`
        # alone, each would be computed only when the driver asks for it, one after the other.
        routed = planned.mapInArrow(partial(_route_batches, self.work, self.source.source), _ROUTED).localCheckpoint()
        last = None
        for row in routed.toLocalIterator():
            if last is not None and row.first_row <= last:  # partitions come back in range order, each sorted
                raise RuntimeError(f"batches came back out of record order ({row.first_row} after {last})")
            last = row.first_row
            result: RoutedBatch = pickle.loads(row.routed)
            self.results.apply(result)
            if progress is not None:
                progress(result.rows)

