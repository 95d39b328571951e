"""Benchmark: the Spark path against a local run on the same e-mail-only contacts, both dry runs with state.

Usage: python bench/bench_spark.py [N]   (needs `pip install -e '.[spark]'` and a Java 17 runtime)

Prints onboarding (`RunSummary.onboard_seconds`: read, link, cluster, route, stage) for a local run with two
workers and for Spark in local[2] reading the same CSV file (numbered once and checkpointed, as
examples/spark_job.py does), and the whole run's seconds. On one machine Spark pays for its JVM, its shuffles and
the driver applying every batch; it is there for audiences that outgrow one machine or already live in a
lakehouse, and this bench shows what that costs where one machine would do. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_onboarding import CAMPAIGN, ROOT, email_only

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions


def spark_session():  # type: ignore[no-untyped-def]
    """A local[2] session, with this interpreter for the executors and Debian's Java 17 when present."""
    from pyspark.sql import SparkSession

    homes = sorted(glob.glob("/usr/lib/jvm/java-17-openjdk-*"))
    if homes and "JAVA_HOME" not in os.environ:
        os.environ["JAVA_HOME"] = homes[0]
    os.environ["PYSPARK_PYTHON"] = sys.executable
    return (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.driver.memory", "4g")
        .getOrCreate()
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", nargs="?", type=int, default=200_000)
    args = parser.parse_args()
    from pyspark.sql import functions as F

    from crm_activation.spark import run_campaign

    for line in (ROOT / "examples" / "sandbox.env").read_text().splitlines():  # the sandbox's dummy credentials
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            os.environ[name] = value
    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        folder = Path(tmp)
        contacts = folder / "contacts.csv"
        email_only(contacts, args.n)
        results = {}
        for name in ("local", "spark"):
            campaign = folder / f"{name}.yaml"
            campaign.write_text(CAMPAIGN.format(contacts=contacts, state=folder / f"{name}.sqlite"))
            options = RunOptions(dry_run=True, outbox=folder / f"outbox-{name}", workers=2)
            started = time.monotonic()
            if name == "local":
                summary = Engine(load_campaign(campaign), options).run()
            else:
                spark = spark_session()
                frame = spark.read.csv(str(contacts), header=True).repartition(8)  # one file is one partition
                frame = frame.withColumn("row", F.monotonically_increasing_id()).localCheckpoint()
                summary = run_campaign(frame, campaign, order="row", options=options)
            results[name] = (summary.onboard_seconds, time.monotonic() - started, summary.outcomes)
        assert results["local"][2] == results["spark"][2], "the two runs disagree"
        print(f"{args.n:,} e-mail-only contacts, dry runs with state, 2 cores")
        for name, (onboard, total, _) in results.items():
            rate = args.n / onboard
            print(f"  {name:6s} onboarding {onboard:7.1f} s = {rate:9,.0f} contacts/s; whole run {total:.1f} s")
        print(f"  spark / local onboarding time: {results['spark'][0] / results['local'][0]:.2f}x")


if __name__ == "__main__":
    main()
