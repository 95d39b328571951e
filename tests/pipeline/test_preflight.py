"""Preflight checks, the plan and rejects files, the run listing and the default rejects path, without the CLI."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.campaign.schema import SourceConfig
from crm_activation.cli.options import default_rejects
from crm_activation.pipeline.plan_file import PlanWriter
from crm_activation.pipeline.preflight import validate_campaign
from crm_activation.pipeline.rejects import RejectsWriter
from crm_activation.pipeline.sources import source_header
from crm_activation.sdk.errors import InputError
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.types import AudienceRef, BatchResult, RecordRejection
from crm_activation.state.database import open_database
from crm_activation.state.store import StateStore, past_runs

CAMPAIGN = """\
campaign: pre
audience:
  source: {source}
segments:
  - {{name: high, when: [{{field: plan_tier, op: "==", value: pro}}]}}
  - {{name: hired, when: [{{field: hires, op: ">", value: 1}}]}}
channels: {{default: [{channels}]}}
platforms: {{}}
state: {{path: state.sqlite}}
"""
EMAIL = """\
email:
  from_address: "Acme <hello@acme.example>"
  bounce_address: bounces@acme.example
  unsubscribe_url: https://acme.example/u
  unsubscribe_mailto: unsubscribe@acme.example
  templates: templates
  sequences:
    awareness: [{template: welcome}, {template: broken}]
    consideration: [{template: welcom}]
"""


def write(folder: Path, source: str, email: bool = False) -> Path:
    path = folder / "campaign.yaml"
    text = CAMPAIGN.format(source=source, channels="email" if email else "")
    path.write_text(text + (EMAIL if email else ""))
    return path


def test_a_jsonl_source_is_judged_by_its_sampled_rows_and_misses_are_only_warnings(tmp_path: Path) -> None:
    lines = [{"contact_id": "a1", "email": "a@example.com", "history_hires": 2}, {"contact_id": "a2"}]
    (tmp_path / "contacts.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    loaded = load_campaign(write(tmp_path, "{type: jsonl, path: contacts.jsonl}"))
    result = validate_campaign(loaded, make_plugin_manager())
    assert result.valid
    problems = [(f.check, f.where, f.message) for f in result.findings if f.level != "ok"]
    assert problems == [  # `hires` comes from history_hires; plan_tier from nothing the sample showed
        ("segments", "segments[0].when[0] (high)", "field 'plan_tier' comes from no column of the source")
    ]
    assert result.sample["accepted"] == 2


def test_a_missing_source_file_is_one_error_and_nothing_else_is_guessed(tmp_path: Path) -> None:
    loaded = load_campaign(write(tmp_path, "{type: csv, path: missing.csv}"))
    result = validate_campaign(loaded, make_plugin_manager())
    assert [(f.check, f.where) for f in result.errors] == [("source", "missing.csv")]
    assert "input file not found" in result.errors[0].message
    assert not [f for f in result.findings if f.check in ("segments", "sample")]


def test_email_steps_need_an_existing_template_that_compiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "contacts.csv").write_text("contact_id,email,plan_tier,history_hires\nc1,a@example.com,pro,2\n")
    for name, html in (("welcome", "<p>Hi</p>"), ("broken", "<p>{% if x %}</p>")):
        folder = tmp_path / "templates" / name
        folder.mkdir(parents=True)
        (folder / "subject.txt.j2").write_text("Hello")
        (folder / "body.txt.j2").write_text("Hi")
        (folder / "body.html.j2").write_text(html)
    for variable in ("SMTP_HOST", "COUPON_KEY", "UNSUBSCRIBE_KEY"):
        monkeypatch.delenv(f"CRM_ACTIVATION_EMAIL_{variable}", raising=False)
    loaded = load_campaign(write(tmp_path, "{type: csv, path: contacts.csv}", email=True))
    result = validate_campaign(loaded, make_plugin_manager(), sample=0)
    errors = [(f.check, f.where, f.message) for f in result.errors]
    assert errors[0][:2] == ("credentials", "email") and "CRM_ACTIVATION_EMAIL_SMTP_HOST" in errors[0][2]
    assert errors[1][:2] == ("email", "email.sequences.awareness[1]")
    assert errors[1][2].startswith("broken/body.html.j2:1:")
    assert errors[2] == ("email", "email.sequences.consideration[0]",
                         f"no template 'welcom' in {tmp_path / 'templates'} (did you mean 'welcome'?)")
    assert len(errors) == 3 and result.sample["rows"] == 0
    assert ("segments", "every field of 2 segment rules is a source column") in [
        (f.check, f.message) for f in result.findings if f.level == "ok"
    ]


def test_source_header_reads_a_csv_header_as_a_run_does(tmp_path: Path) -> None:
    (tmp_path / "ok.csv").write_text("contact_id;Email;\nc1;a@example.com;\n")
    (tmp_path / "twice.csv").write_text("contact_id,email,email\n")
    assert source_header(SourceConfig(type="csv", path="ok.csv", delimiter=";"), tmp_path) == ["contact_id", "Email"]
    assert source_header(SourceConfig(type="jsonl", path="ok.csv"), tmp_path) is None
    with pytest.raises(InputError, match="appears twice"):
        source_header(SourceConfig(type="csv", path="twice.csv"), tmp_path)


def test_plan_writer_appends_each_platform_with_stage_and_contact_id(tmp_path: Path) -> None:
    plan = PlanWriter(tmp_path / "out" / "plan.csv")
    plan.write("facebook", [("c/awareness", "remove", "1"), ("c/conversion", "add", "1")])
    plan.write("xandr", iter([("c/awareness", "add", "2")]))
    with (tmp_path / "out" / "plan.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        list(PlanWriter.HEADER), ["facebook", "awareness", "c/awareness", "1", "remove"],
        ["facebook", "conversion", "c/conversion", "1", "add"], ["xandr", "awareness", "c/awareness", "2", "add"],
    ]
    assert plan.lines == 3


def test_planned_operations_list_the_diff_in_push_order(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    store.stage_desired([("fb", "c/awareness", cid, "f", "{}") for cid in ("b", "a")])
    store.plan("c", "fb", full=False)
    assert list(store.planned_operations("fb")) == [("c/awareness", "add", "a"), ("c/awareness", "add", "b")]
    assert list(store.planned_operations("xandr")) == []
    store.close()


def test_platform_refusals_are_written_with_the_contact_id_only(tmp_path: Path) -> None:
    writer = RejectsWriter(tmp_path / "rejects.csv")
    manager = make_plugin_manager()
    manager.register(writer)
    result = BatchResult(received=3, invalid=2, rejections=(
        RecordRejection(contact_id="c7", reason="invalid identifier format"),
        RecordRejection(contact_id=None, reason="unattributed"),
    ))
    manager.hook.after_batch(platform="xandr", audience=AudienceRef(key="camp/awareness", remote_id="9"),
                             operation="add", size=3, result=result)
    writer.close()
    with (tmp_path / "rejects.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows == [{"source": "camp/awareness", "row": "", "field": "", "reason": "invalid identifier format",
                     "platform": "xandr", "row_rejected": "no", "contact_id": "c7", "stage": "awareness"}]


def test_past_runs_are_read_newest_first_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    store = StateStore(path)
    first = store.start_run("camp", "incremental", 0)
    store.finish_run(first, "succeeded", {"rows_read": 5})
    store.close()
    connection = sqlite3.connect(path)
    with connection:
        insert = "INSERT INTO runs (run_id, campaign, mode, started_at, status, summary) VALUES (?, ?, ?, ?, ?, ?)"
        connection.execute(insert, ("later", "camp", "full", 9e9, "running", "{cut"))
        connection.execute(insert, ("other", "other", "full", 9e9, "running", None))
    connection.close()
    db = open_database(path, readonly=True)
    runs = past_runs(db, "camp")
    assert [(r.run_id, r.status, r.summary) for r in runs] == [
        ("later", "running", None), (first, "succeeded", {"rows_read": 5})
    ]
    assert [r.run_id for r in past_runs(db, "camp", 1)] == ["later"]
    db.close()
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).close()
    db = open_database(empty, readonly=True)
    assert past_runs(db, "camp") == []
    db.close()


def test_default_rejects_sit_next_to_a_sqlite_state_and_in_the_current_folder_for_postgres(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text("contact_id\n")
    loaded = load_campaign(write(tmp_path, "{type: csv, path: contacts.csv}"))
    assert default_rejects(loaded, None) == tmp_path / "pre-rejects.csv"
    assert default_rejects(loaded, tmp_path / "elsewhere" / "s.sqlite") == tmp_path / "elsewhere" / "pre-rejects.csv"
    assert default_rejects(loaded, "postgresql://crm@db.example:5432/state") == Path("pre-rejects.csv")
