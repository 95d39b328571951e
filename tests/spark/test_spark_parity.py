"""The Spark path gives what a local run gives: staged membership, holdout ledger, requests, rejects and counts.

The same campaign runs on the same records twice: locally from a CSV file, and on Spark (`local[2]`) from a
DataFrame of that file's rows numbered by line (scrambled over partitions, cut into Arrow batches of 97 records, so
batch boundaries and partition order differ from the local run's). The records are dirty on purpose (repeated and
missing contact ids, people behind several records, unknown countries, consent and scores that are not yes/no or
numbers), with a match table and a suppression list, as `tests/pipeline/test_batch_pipeline.py` makes them.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.sdk.errors import InputError
from crm_activation.state.store import StateStore

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("sandbox_credentials")]

ROOT = Path(__file__).resolve().parents[2]


def _engine(campaign: Path, options: RunOptions, frame: Any | None) -> Engine:
    from crm_activation.spark import SparkAudienceSource

    audience = SparkAudienceSource(frame, order="row", source="contacts.csv") if frame is not None else None
    return Engine(load_campaign(campaign), options, audience=audience)


def _dry_run(cases: Any, campaign: Path, out: Path, frame: Any | None) -> dict[str, Any]:
    """A dry run's every output: summary, rejects file, plan (sorted) and requests (the outbox), byte for byte."""
    from crm_activation.spark import SparkAudienceSource

    audience = SparkAudienceSource(frame, order="row", source="contacts.csv") if frame is not None else None
    return cases._run(campaign, out, audience=audience)


def _staged(campaign: Path, out: Path, frame: Any | None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What a (not dry) run stages before its push: desired membership, match keys and holdout ledger."""
    out.mkdir()
    captured: dict[str, Any] = {}

    def refuse_push(engine: Engine, state: StateStore, summary: Any) -> str:
        for table, key in [("desired", "platform, audience_key, contact_id"), ("holdout_staged", "contact_id"),
                           ("test_keys", "platform, value, contact_id"), ("control_keys", "platform, value")]:
            captured[table] = state.db.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
        return "stop before the push"

    monkeypatch.setattr(Engine, "_guard", refuse_push)
    options = RunOptions(rejects=out / "rejects.csv", state=str(out / "state.sqlite"))
    _engine(campaign, options, frame).run()
    captured["holdout_staged"] = [row[:7] for row in captured["holdout_staged"]]  # without run ids
    return captured


@pytest.fixture(scope="module")
def messy(cases: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A messy generated export as a clean CSV file (quoted where needed), with its campaign."""
    folder = tmp_path_factory.mktemp("messy")
    rows = cases._messy_export(folder, 1500, seed=7)
    with (folder / "contacts.csv").open("w", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(rows[0])
        writer.writerows(row.values() for row in rows)
    (folder / "campaign.yaml").write_text(cases.CAMPAIGN.format(kind="csv", path="contacts.csv"))
    return folder / "campaign.yaml"


def test_a_dry_run_sends_the_same_requests_and_rejects_the_same_rows(
    cases: Any, csv_frame: Callable[[Path], Any], messy: Path, tmp_path: Path
) -> None:
    local = _dry_run(cases, messy, tmp_path / "local", None)
    on_spark = _dry_run(cases, messy, tmp_path / "spark", csv_frame(messy.with_name("contacts.csv")))
    for part in local:
        assert on_spark[part] == local[part], part
    summary = local["summary"]
    assert summary["identity"]["multi_record_clusters"] > 100 and summary["identity"]["regrouped"] > 0
    assert summary["rejected_reasons"]["contact_id: duplicate contact_id"] > 20
    assert summary["outcomes"]["activated"] > 0 and local["outbox"]


def test_the_staged_membership_and_holdout_ledger_are_the_same(
    csv_frame: Callable[[Path], Any], messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = _staged(messy, tmp_path / "local", None, monkeypatch)
    on_spark = _staged(messy, tmp_path / "spark", csv_frame(messy.with_name("contacts.csv")), monkeypatch)
    for table in local:
        assert local[table], table
        assert on_spark[table] == local[table], table


def test_the_bundled_demo_runs_alike(cases: Any, csv_frame: Callable[[Path], Any], tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "examples", folder)
    local = _dry_run(cases, folder / "campaign.yaml", tmp_path / "local", None)
    frame = csv_frame(folder / "contacts.csv")
    assert _dry_run(cases, folder / "campaign.yaml", tmp_path / "spark", frame) == local


def test_an_order_column_must_number_each_record_once(
    cases: Any, csv_frame: Callable[[Path], Any], messy: Path, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    frame = csv_frame(messy.with_name("contacts.csv"))
    with pytest.raises(InputError, match=r"order column 'row' gives the number \d+ to several records"):
        _dry_run(cases, messy, tmp_path / "twice", frame.withColumn("row", F.col("row") % 100))
    unnumbered = frame.withColumn("row", F.when(F.col("row") != 7, F.col("row")))
    with pytest.raises(InputError, match="order column 'row' is empty on some records"):
        _dry_run(cases, messy, tmp_path / "empty", unnumbered)
    from crm_activation.spark import SparkAudienceSource

    options = RunOptions(dry_run=True, state=str(tmp_path / "s.sqlite"), outbox=tmp_path / "o")
    with pytest.raises(InputError, match="no order column 'line'"):
        Engine(load_campaign(messy), options, audience=SparkAudienceSource(frame, order="line")).run()


def test_an_empty_table_runs_like_an_empty_export(cases: Any, spark: Any, tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    shutil.copytree(ROOT / "examples", folder)
    header = (folder / "contacts.csv").read_text().splitlines()[0]
    (folder / "contacts.csv").write_text(header + "\n")
    local = _dry_run(cases, folder / "campaign.yaml", tmp_path / "local", None)
    frame = spark.createDataFrame([], ", ".join(f"`{name}` string" for name in header.split(",")) + ", row long")
    assert _dry_run(cases, folder / "campaign.yaml", tmp_path / "spark", frame) == local
    assert local["summary"]["rows_read"] == 0
