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


def _engine(campaign: Path, options: RunOptions, frame: Any | None, source: str = "contacts.csv") -> Engine:
    from crm_activation.spark import SparkAudienceSource

    audience = SparkAudienceSource(frame, order="row", source=source) if frame is not None else None
    return Engine(load_campaign(campaign), options, audience=audience)


def _dry_run(cases: Any, campaign: Path, out: Path, frame: Any | None) -> dict[str, Any]:
    """A dry run's every output: summary, rejects file, plan (sorted) and requests (the outbox), byte for byte."""
    from crm_activation.spark import SparkAudienceSource

    audience = SparkAudienceSource(frame, order="row", source="contacts.csv") if frame is not None else None
    return cases._run(campaign, out, audience=audience)


def _staged(
    campaign: Path, out: Path, frame: Any | None, monkeypatch: pytest.MonkeyPatch, source: str = "contacts.csv"
) -> dict[str, Any]:
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
    _engine(campaign, options, frame, source).run()
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
    with pytest.raises(InputError, match="order column 'row' is empty or not a whole number on some records"):
        _dry_run(cases, messy, tmp_path / "empty", unnumbered)
    as_text = frame.withColumn("row", F.when(F.col("row") != 7, F.col("row").cast("string")).otherwise("7th"))
    with pytest.raises(InputError, match="order column 'row' is empty or not a whole number on some records"):
        _dry_run(cases, messy, tmp_path / "text", as_text)
    with pytest.raises(InputError, match="order column 'row' is double; it must hold whole numbers"):
        _dry_run(cases, messy, tmp_path / "double", frame.withColumn("row", F.col("row") + 0.5))
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


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def test_typed_columns_are_read_as_a_typed_export_gives_them(
    cases: Any, spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lakehouse table's numbers and arrays are read as the same values in a JSON Lines export are.

    On the bundled demo, whose e-mail channel stages each contact whole, categories included: an array read as
    its text (`[a, b]`) would stage other contacts.
    """
    import json

    import pyarrow as pa

    folder = tmp_path / "typed"
    shutil.copytree(ROOT / "examples", folder)
    with (folder / "contacts.csv").open(newline="") as handle:
        records = [
            {
                **record,
                "score": _number(record["score"]),
                "history_hires": int(record["history_hires"]) if record["history_hires"].isdigit() else None,
                "preferred_categories": [c for c in record["preferred_categories"].split("|") if c],
            }
            for record in csv.DictReader(handle)
        ]
    (folder / "contacts.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    campaign = folder / "campaign.yaml"
    jsonl = campaign.read_text().replace("{type: csv, path: contacts.csv}", "{type: jsonl, path: contacts.jsonl}")
    campaign.write_text(jsonl)
    local = cases._run(campaign, tmp_path / "local")

    from crm_activation.spark import SparkAudienceSource

    typed = {"score": pa.float64(), "history_hires": pa.int64(), "preferred_categories": pa.list_(pa.string())}
    schema = pa.schema([(name, typed.get(name, pa.string())) for name in records[0]] + [("row", pa.int64())])
    rows = [{**record, "row": number} for number, record in enumerate(records, start=1)]
    frame = spark.createDataFrame(pa.Table.from_pylist(rows, schema)).repartition(3)
    assert dict(frame.dtypes)["preferred_categories"] == "array<string>"
    audience = SparkAudienceSource(frame, order="row", source="contacts.jsonl")
    assert cases._run(campaign, tmp_path / "spark", audience=audience) == local
    staged = _staged(campaign, tmp_path / "staged-local", None, monkeypatch)
    on_spark = _staged(campaign, tmp_path / "staged-spark", frame, monkeypatch, "contacts.jsonl")
    assert on_spark == staged
    assert any('"preferred_categories":["translation","data science"]' in row[4].replace(", ", ",")
               for row in staged["desired"] if row[0] == "email")


def test_a_column_whose_text_depends_on_the_session_is_refused(
    cases: Any, csv_frame: Callable[[Path], Any], messy: Path, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    frame = csv_frame(messy.with_name("contacts.csv")).withColumn("score", F.current_timestamp())
    with pytest.raises(InputError, match=r"contacts\.csv: column 'score' is a timestamp"):
        _dry_run(cases, messy, tmp_path / "timestamp", frame)
    frame = csv_frame(messy.with_name("contacts.csv")).withColumn("score", F.create_map(F.lit("a"), F.lit(1)))
    with pytest.raises(InputError, match="column 'score' is map<string,int>, which no CRM export has a cell for"):
        _dry_run(cases, messy, tmp_path / "map", frame)
