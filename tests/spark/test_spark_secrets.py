"""What the executors receive, the batch work pickled by Spark's own pickler, holds no credential.

The bundled campaign has every platform and e-mail, whose credentials (tokens, client secrets, SMTP password,
coupon and unsubscribe keys) come from the environment: none of their values may be in the pickled work.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.audience_batches import AudienceBatches
from crm_activation.pipeline.engine import Engine, RunOptions

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("sandbox_credentials")]

ROOT = Path(__file__).resolve().parents[2]


def test_the_pickled_batch_work_holds_no_credential(spark_environment: dict[str, str], tmp_path: Path) -> None:
    from pyspark import cloudpickle

    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    captured: list[Any] = []

    def reader(*args: Any) -> AudienceBatches:
        captured.append(args[3])  # the run's BatchWork, as `SparkAudience` sends it to the executors
        return AudienceBatches(*args)

    options = RunOptions(dry_run=True, outbox=tmp_path / "outbox", state=str(tmp_path / "state.sqlite"))
    summary = Engine(load_campaign(tmp_path / "examples" / "campaign.yaml"), options, audience=reader).run()
    assert summary.outcomes["activated"] > 0

    pickled = cloudpickle.dumps(captured[0])
    secrets = [
        line.partition("=")[2]
        for line in (ROOT / "examples" / "sandbox.env").read_text().splitlines()
        if not line.startswith("#") and any(word in line for word in ("TOKEN", "SECRET", "PASSWORD", "KEY"))
    ]
    assert len(secrets) >= 5
    assert [s for s in secrets if s.encode() in pickled] == []
    assert b"winback-2026q4" in pickled  # the real work: the campaign's rules travel, its secrets do not
