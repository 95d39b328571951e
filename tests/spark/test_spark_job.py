"""`examples/spark_job.py`, the job a data engineer schedules, run as a script on the bundled demo (dry run).

It reads the CSV with Spark's own reader (strictly) and numbers the records itself, so its rejects name those
numbers, not the file's lines; everything sent is a local run's: the same outcomes and the same requests, byte for
byte.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("sandbox_credentials")]

ROOT = Path(__file__).resolve().parents[2]


def requests(outbox: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(outbox.rglob("*.jsonl"))}


def test_the_example_job_sends_what_a_local_run_sends(script_environment: dict[str, str], tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    campaign = tmp_path / "examples" / "campaign.yaml"
    local = Engine(
        load_campaign(campaign),
        RunOptions(dry_run=True, outbox=tmp_path / "local-outbox", state=str(tmp_path / "local.sqlite")),
    ).run()

    job = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spark_job.py"), "--master", "local[2]", "--campaign", str(campaign),
         "--csv", str(tmp_path / "examples" / "contacts.csv"), "--dry-run", "--rejects", "rejects.csv"],
        cwd=tmp_path, env=script_environment, capture_output=True, text=True, timeout=600,
    )
    assert job.returncode == 0, job.stderr[-3000:]
    summary = json.loads(job.stdout)
    assert summary["outcomes"] == local.outcomes and summary["rows_read"] == 2000
    assert requests(tmp_path / "outbox") == requests(tmp_path / "local-outbox") != {}
    assert (tmp_path / "rejects.csv").read_text().count("\n") == 1 + sum(local.rejected_reasons.values()) + (
        local.field_issues
    )


def test_a_missing_column_is_exit_2_naming_it(script_environment: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text("id,email\n1,a@example.com\n")
    job = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spark_job.py"), "--master", "local[1]",
         "--campaign", str(ROOT / "examples" / "campaign.yaml"), "--csv", str(tmp_path / "contacts.csv"), "--dry-run"],
        cwd=tmp_path, env=script_environment, capture_output=True, text=True, timeout=600,
    )
    assert job.returncode == 2, job.stderr[-3000:]
    assert "contact_id" in job.stderr.splitlines()[-1]


def test_a_malformed_csv_stops_the_job_without_quoting_its_records(
    script_environment: dict[str, str], tmp_path: Path
) -> None:
    """Spark's reader is strict here (FAILFAST): a short record stops the job, and what is printed is Spark's
    error class, never the record (Spark's message quotes it)."""
    (tmp_path / "contacts.csv").write_text(
        "contact_id,email,country\nC1,\"line one\nline two\",US\nC2,secret.person@example.com\n"
    )
    job = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "spark_job.py"), "--master", "local[1]",
         "--campaign", str(ROOT / "examples" / "campaign.yaml"), "--csv", str(tmp_path / "contacts.csv"), "--dry-run"],
        cwd=tmp_path, env=script_environment, capture_output=True, text=True, timeout=600,
    )
    assert job.returncode == 2, job.stderr[-3000:]
    assert job.stderr.splitlines()[-1].startswith("error: Spark could not run the job: ")
    assert "secret.person" not in job.stdout + job.stderr.splitlines()[-1]
