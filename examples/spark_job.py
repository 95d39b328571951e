r"""A scheduled Spark job: push a campaign's audience, read from a lakehouse table or files, to every platform.

On a cluster (the driver needs the campaign file and the platforms' credentials in its environment; every node
needs `pip install 'crm-activation[spark]'`, see docs/spark.md):

    spark-submit examples/spark_job.py --campaign campaign.yaml --table crm.contacts --order row_id \
        --acknowledged-table crm.winback_acknowledged

Over Spark Connect (e.g. Databricks serverless), add `--remote sc://host:15002/;token=...`. On this machine, a
dry run of the bundled campaign on Spark local[2] (nothing is sent; the requests go to ./outbox):

    python examples/spark_job.py --master 'local[2]' --campaign examples/campaign.yaml --csv examples/contacts.csv \
        --dry-run

Exit code: 0 when every channel succeeded, 1 when one failed or the run was refused, 2 on a campaign or input
error (the message names the file, row and field) or when Spark cannot read the input (the message gives Spark's
error class only: its details can quote records, so they stay in Spark's log).

`--csv` reads with Spark's CSV reader, strictly: quoted fields may span lines, and a record with another number
of cells than the header stops the job (FAILFAST) instead of being padded or cut. The campaign's `delimiter`
and `encoding` apply. For exports that are not clean, `crm-activation run` on one machine rejects each malformed
record with its line instead.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from py4j.protocol import Py4JJavaError
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crm_activation.campaign.loader import load_campaign
from crm_activation.sdk.errors import CrmActivationError
from crm_activation.spark import RunOptions, run_campaign


def contacts(spark: SparkSession, args: argparse.Namespace) -> tuple[DataFrame, str]:
    """The CRM records and the column numbering them."""
    if args.table:
        return spark.table(args.table), args.order
    if args.csv:
        source = load_campaign(args.campaign).campaign.audience.source
        frame = spark.read.csv(
            args.csv, header=True, multiLine=True, escape='"', mode="FAILFAST", sep=source.delimiter,
            encoding=source.encoding,
        )
    else:
        frame = spark.read.parquet(args.parquet)
    if args.order:
        return frame, args.order
    # Files carry no record number: number them (the run reads the numbered records once, in a checkpoint). With
    # several files, the numbers follow Spark's read order; the rejects file names these numbers, not lines.
    return frame.withColumn("record_number", F.monotonically_increasing_id() + 1), "record_number"


def spark_error(error: Exception) -> str:
    """What Spark refused, as its error class: the message's details can quote a record's values."""
    found = re.search(r"\[([A-Z][A-Z0-9_.]+)\]", str(error))
    return f"Spark could not run the job: {found.group(1) if found else type(error).__name__} (details in Spark's log)"


def main() -> int:
    """Run the campaign once; return the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--campaign", required=True, type=Path, help="the campaign file (on the driver)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="a table of CRM records")
    source.add_argument("--csv", help="CSV files of CRM records (with a header)")
    source.add_argument("--parquet", help="Parquet files of CRM records")
    parser.add_argument("--order", help="the column numbering the records (required with --table)")
    parser.add_argument("--acknowledged-table", help="write the acknowledged membership to this table")
    parser.add_argument("--rejects", type=Path, help="write rejected records, with reasons, to this CSV file")
    parser.add_argument("--dry-run", action="store_true", help="send nothing; write the requests to ./outbox")
    parser.add_argument("--remote", help="a Spark Connect URL (sc://...); default: the spark-submit session")
    parser.add_argument("--master", help="a master URL, without spark-submit (e.g. local[2])")
    args = parser.parse_args()
    if args.table and not args.order:
        parser.error("--table needs --order: the column numbering the records")
    builder = SparkSession.builder.appName("crm-activation")
    if args.remote:
        builder = builder.remote(args.remote)
    elif args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    options = RunOptions(dry_run=args.dry_run, rejects=args.rejects, outbox=Path("outbox"))
    try:
        frame, order = contacts(spark, args)
        summary = run_campaign(
            frame, args.campaign, order=order, source=args.table or args.csv or args.parquet, options=options,
            acknowledged_table=args.acknowledged_table,
        )
    except CrmActivationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (PySparkException, Py4JJavaError) as error:
        print(f"error: {spark_error(error)}", file=sys.stderr)
        return 2
    print(json.dumps(summary.to_json(), indent=2))
    return 0 if summary.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
