"""Identity clusters as DataFrame joins find the clusters the local union-find finds, long chains included.

Random graphs of records sharing keys drawn from small pools make clusters of every shape: pairs, stars, and
chains many keys long (which take the iterative joins as many rounds). Each record's anchor and the counts must
be the local `ClusterBuilder`'s.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest

from crm_activation.pipeline.clusters import ClusterBuilder

pytestmark = pytest.mark.spark


def graph(seed: int, n: int) -> tuple[list[str | None], list[tuple[int, int]]]:
    """Contact ids (some missing, some repeated) and (record, key digest) pairs."""
    rng = random.Random(seed)
    ids = [rng.choice([f"C{rng.randrange(n):04d}", f"C{i:04d}", None]) for i in range(n)]
    pairs = {(i, rng.randrange(n * 2) - n) for i in range(n) for _ in range(rng.choice([0, 1, 1, 2]))}
    chain = rng.sample(range(n), 12)  # one long chain: record k shares a key with record k+1
    pairs |= {(record, 10**9 + k) for k, record in enumerate(chain)}
    pairs |= {(record, 10**9 + k + 1) for k, record in enumerate(chain[:-1])}
    return ids, sorted(pairs)


def local(ids: list[str | None], pairs: list[tuple[int, int]]) -> tuple[list[str | None], Any]:
    builder = ClusterBuilder()
    builder.add_batch(
        ids, np.array([d for _, d in pairs], dtype=np.int64), np.array([r for r, _ in pairs], dtype=np.int32)
    )
    found = builder.finish()
    return [found.anchor_of_record(i) for i in range(len(ids))], found.stats


@pytest.mark.parametrize("seed", [1, 2])
def test_the_joins_find_the_union_finds_clusters(spark: Any, seed: int) -> None:
    from crm_activation.spark.components import clusters

    ids, pairs = graph(seed, 400)
    records = spark.createDataFrame([(i, cid) for i, cid in enumerate(ids)], "rec long, link_id string")
    keys = spark.createDataFrame(pairs, "rec long, digest long")
    found = clusters(records, keys)
    on_spark: list[str | None] = [None] * len(ids)
    for row in found.anchors.collect():
        on_spark[row.rec] = row.anchor
    anchors, stats = local(ids, pairs)
    assert on_spark == anchors
    assert found.stats == stats
    assert stats.largest_cluster >= 12 and stats.multi_record_clusters > 20
