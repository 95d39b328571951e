"""The Spark entry point: run a campaign on an audience held in a DataFrame (`run_campaign`).

What a data engineer schedules (see `examples/spark_job.py` and `docs/spark.md`): the CRM table is prepared on
the cluster (`audience.py`: parse, normalize, hash, link, cluster, hold out, route), and the rest of the run is a
local run's, on the driver: the staged membership goes to the campaign's state database, the guards and
hold-backs run, each platform's diff is pushed by the same connectors with the same HTTP policy, and every
acknowledged batch is recorded in the state database as it is answered. Afterwards the campaign's acknowledged
membership can be written back to the lakehouse as a table (`acknowledged_table`), for analysts and audits.

The state database stays the record of what each platform holds, as for a local run (a scheduled job on a
cluster should point the campaign's `state` at PostgreSQL, since a driver's disk does not outlive the job): it
holds the run ledger, the campaign lock, the platforms' audience ids and the holdout ledger the measurement reads.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from pyspark.sql import DataFrame

from ..campaign.loader import load_campaign
from ..pipeline.engine import Engine
from ..pipeline.run_options import RunOptions
from ..sdk.errors import RunInterrupted
from ..sdk.summary import RunSummary
from ..state.store import StateStore
from .audience import SparkAudienceSource

#: The acknowledged membership table's columns (the state database's, without the campaign: one table per run).
ACKNOWLEDGED_SCHEMA = pa.schema(
    [
        ("platform", pa.string()),
        ("audience_key", pa.string()),
        ("contact_id", pa.string()),
        ("fingerprint", pa.string()),
        ("payload", pa.string()),
        ("synced_at", pa.float64()),
    ]
)


def run_campaign(
    contacts: DataFrame,
    campaign: str | Path,
    *,
    order: str,
    source: str = "dataframe",
    options: RunOptions | None = None,
    acknowledged_table: str | None = None,
) -> RunSummary:
    """Run `campaign` (a campaign file on the driver) on the CRM records in `contacts`; return the run's summary.

    Args:
        contacts: one row per CRM record, with the columns the campaign's audience reads (its `columns` mapping
            applies; its `source` is not read). Text columns are read as a CSV export's cells (null: empty),
            typed ones as an SQL source's values (see `audience.py`).
        campaign: the campaign file, on the driver.
        order: the column numbering the records (unique integers, e.g. an export's row number or an ingestion
            sequence): the first record of a repeated contact id is routed, and rejects name this number as row.
        source: the input's name in the rejects file.
        options: as for `crm-activation run` (dry run, rejects file, `--platform`, state override...).
        acknowledged_table: where to write the campaign's acknowledged membership after the push (replaced on
            every run that pushed, interrupted and failed ones included: it mirrors the state database).

    Raises what a local run raises (`CrmActivationError`s: a missing column, a refused run...), and what Spark
    raises when the table cannot be written: the push is then recorded already, and the next run (which pushes
    only what changed since, nothing when nothing did) writes the table again.
    """
    loaded = load_campaign(campaign)
    options = options or RunOptions()
    engine = Engine(loaded, options, audience=SparkAudienceSource(contacts, order=order, source=source))

    def export() -> None:
        if acknowledged_table and not options.dry_run:
            state = StateStore(loaded.open_state(options.state, readonly=True))
            try:
                write_acknowledged(contacts, state, engine.campaign.campaign, acknowledged_table)
            finally:
                state.close()

    try:
        summary = engine.run()
    except RunInterrupted:  # the batches acknowledged before the interruption are recorded: export them too
        export()
        raise
    export()
    return summary


def write_acknowledged(
    like: DataFrame, state: StateStore, campaign: str, table: str, page_rows: int = 50_000
) -> None:
    """Replace `table` with the campaign's acknowledged membership, read from `state` and written page by page.

    The first page replaces the table and the others are appended, so neither the driver nor one request (Spark
    Connect caps a request's size) ever holds the whole membership. Not atomic: a reader during the write sees
    part of it.
    """
    spark = like.sparkSession
    mode = "overwrite"
    for page in state.acknowledged_pages(campaign, page_rows):
        rows = [dict(zip(ACKNOWLEDGED_SCHEMA.names, row, strict=True)) for row in page]
        spark.createDataFrame(pa.Table.from_pylist(rows, ACKNOWLEDGED_SCHEMA)).write.mode(mode).saveAsTable(table)
        mode = "append"
    if mode == "overwrite":  # nothing acknowledged: the table is replaced by an empty one
        spark.createDataFrame(ACKNOWLEDGED_SCHEMA.empty_table()).write.mode("overwrite").saveAsTable(table)
