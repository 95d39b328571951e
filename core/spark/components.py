"""Identity clusters on Spark: the connected components of records sharing a link key, as DataFrame joins.

A local run finds them with a union-find over bucket files (`pipeline/clusters.py`, which says why records are
linked and why a cluster's anchor is its smallest contact id). Here the same components are computed with the
DataFrame API alone (no RDD, no GraphFrames), so they run over Spark Connect too:

1. Only a key held by two records or more links anything; most keys are held by one, so the graph left is
   small: the records of multi-record clusters and the keys they share.
2. Every record starts labelled with its own record number. Each round, every key takes the smallest label of
   its records, then every record the smallest label of its keys. A label travels one key per round, so the
   labels settle after as many rounds as the widest cluster is long (two or three for CRM exports: a twin
   record shares a key with its original); the loop stops at the first round that lowers no label.
3. A settled label is the smallest record number of the component: the root the local union-find gives, so
   both find the same clusters, and the anchor is the smallest contact id among a cluster's records.

Each round's labels are checkpointed (`localCheckpoint`): the plan stays one round deep however many rounds run.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from ..pipeline.clusters import ClusterStats
from ..sdk.redaction import get_logger

log = get_logger(__name__)


def record_roots(keys: DataFrame) -> DataFrame:
    """(rec, root) for every record that shares a link key with another; `keys`: (rec, digest) pairs."""
    pairs = keys.select("rec", "digest").distinct()
    shared = pairs.groupBy("digest").count().where(F.col("count") > 1).select("digest")
    edges = pairs.join(shared, "digest").localCheckpoint()
    labels = edges.select("rec", F.col("rec").alias("root")).distinct()
    rounds = 0
    while True:
        rounds += 1
        by_key = edges.join(labels, "rec").groupBy("digest").agg(F.min("root").alias("key_root"))
        moved = edges.join(by_key, "digest").groupBy("rec").agg(F.min("key_root").alias("root")).localCheckpoint()
        lowered = moved.join(labels.withColumnRenamed("root", "old"), "rec").where(F.col("root") < F.col("old"))
        labels = moved
        if lowered.limit(1).count() == 0:
            log.info("identity clusters settled after %d rounds", rounds)
            return labels


@dataclass(frozen=True)
class SparkClusters:
    """The clusters of an audience on Spark: each multi-record cluster's records with its anchor, and the stats.

    Attributes:
        anchors: (rec, anchor) for the records of multi-record clusters; anchor null when none has a contact id.
        stats: as a local run counts them.
    """

    anchors: DataFrame
    stats: ClusterStats

    def close(self) -> None:
        """Nothing to drop: Spark frees the checkpointed rounds with the DataFrames that use them."""


def clusters(records: DataFrame, keys: DataFrame) -> SparkClusters:
    """Cluster `records` (rec, link_id) by their `keys` (rec, digest)."""
    members = record_roots(keys).join(records.select("rec", "link_id"), "rec")
    by_root = (
        members.groupBy("root").agg(F.count(F.lit(1)).alias("size"), F.min("link_id").alias("anchor")).localCheckpoint()
    )
    totals = by_root.agg(F.count(F.lit(1)), F.sum("size"), F.max("size")).first()
    multi, in_multi, largest = (int(totals[0]), int(totals[1] or 0), int(totals[2] or 0)) if totals else (0, 0, 0)
    n = records.count()
    stats = ClusterStats(
        records=n, clusters=n - in_multi + multi, multi_record_clusters=multi, largest_cluster=largest or min(n, 1)
    )
    return SparkClusters(members.join(by_root.select("root", "anchor"), "root").select("rec", "anchor"), stats)
