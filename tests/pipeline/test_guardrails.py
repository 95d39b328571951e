"""Guardrails: required columns, change-size thresholds, rules that cannot apply, `--platform` subsets."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.campaign.schema import Campaign, SourceConfig
from crm_activation.pipeline.channel_plan import check_platforms
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.guardrails import (
    ColumnCheck,
    country_alias_warnings,
    large_changes,
    rule_field_warnings,
)
from crm_activation.pipeline.onboarding import ContactParser
from crm_activation.pipeline.sources import open_rows
from crm_activation.sdk.errors import ConfigError, InputError
from crm_activation.sdk.summary import RunSummary
from crm_activation.sdk.types import BatchResult, Member
from crm_activation.state.store import StateStore, encode_member

from .test_channels import FakeChannel, write_campaign


def base_campaign(**update: object) -> Campaign:
    data: dict[str, object] = {
        "campaign": "guard",
        "audience": {"source": {"type": "csv", "path": "contacts.csv"}},
        "channels": {"default": ["first"]},
        "platforms": {"first": {}},
    }
    data.update(update)
    return Campaign.model_validate(data)


def rows_read(config: SourceConfig, folder: Path, check: ColumnCheck) -> int:
    read = 0
    for _ in open_rows(config, folder, check.header):
        read += 1
    return read


def test_a_csv_without_the_id_column_fails_before_any_row(tmp_path: Path):
    (tmp_path / "contacts.csv").write_text("id,email\n1,a@example.com\n2,b@example.com\n")
    config = SourceConfig(type="csv", path="contacts.csv")
    check = ColumnCheck(ContactParser({}, "awareness"), config)
    read = 0
    with pytest.raises(InputError, match=r"no column 'contact_id'.*columns found: id, email"):
        for _ in open_rows(config, tmp_path, check.header):
            read += 1
    assert read == 0


def test_a_column_the_mapping_names_is_required_and_a_mapped_id_is_found(tmp_path: Path):
    (tmp_path / "contacts.csv").write_text("id,mail\n1,a@example.com\n")
    config = SourceConfig(type="csv", path="contacts.csv")
    mapped = ContactParser({"contact_id": "id", "email": "mail"}, "awareness")
    assert rows_read(config, tmp_path, ColumnCheck(mapped, config)) == 1
    typo = ContactParser({"contact_id": "id", "email": "EmailAddress"}, "awareness")
    with pytest.raises(InputError, match=r"'EmailAddress'.*columns found: id, mail"):
        rows_read(config, tmp_path, ColumnCheck(typo, config))


def test_a_sql_result_is_checked_from_its_columns(tmp_path: Path):
    db = sqlite3.connect(tmp_path / "crm.db")
    db.execute("CREATE TABLE people (id TEXT, email TEXT)")
    db.execute("INSERT INTO people VALUES ('1', 'a@example.com')")
    db.commit()
    db.close()
    config = SourceConfig(type="sql", url="sqlite:///crm.db", table="people")
    check = ColumnCheck(ContactParser({}, "awareness"), config)
    with pytest.raises(InputError, match=r"'contact_id'.*columns found: id, email"):
        rows_read(config, tmp_path, check)
    assert rows_read(config, tmp_path, ColumnCheck(ContactParser({"contact_id": "id"}, "awareness"), config)) == 1


def test_json_lines_are_checked_against_every_key_seen(tmp_path: Path):
    config = SourceConfig(type="jsonl", path="contacts.jsonl")
    parser = ContactParser({}, "awareness")
    (tmp_path / "contacts.jsonl").write_text('{"email": "a@example.com"}\n{"contact_id": "2"}\n')
    check = ColumnCheck(parser, config)
    for row in open_rows(config, tmp_path):
        check.saw(row.fields)
    check.finish()  # contact_id is a key of some record: a record without it is that record's problem
    assert check.columns == ["email", "contact_id"]
    (tmp_path / "contacts.jsonl").write_text('{"id": "1", "email": "a@example.com"}\n')
    check = ColumnCheck(parser, config)
    for row in open_rows(config, tmp_path):
        check.saw(row.fields)
    with pytest.raises(InputError, match=r"no record has column 'contact_id'.*columns found: id, email"):
        check.finish()


def test_a_rule_on_a_field_the_source_lacks_is_a_warning():
    campaign = base_campaign(
        segments=[
            {"name": "hot", "when": [{"field": "scroe", "op": ">=", "value": 1}]},
            {"name": "buyers", "when": [{"field": "orders", "op": ">", "value": 0}]},
            {"name": "named", "when": [{"field": "tier", "op": "==", "value": "gold"}]},
            {"name": "rest", "when": [{"field": "segment", "op": "is empty"}]},
        ],
        audience={"source": {"type": "csv", "path": "x.csv"}, "columns": {"tier": "Tier"}},
    )
    parser = ContactParser(campaign.audience.columns, "awareness")
    warnings = rule_field_warnings(campaign, parser, ["contact_id", "score", "history_orders", "Tier"])
    assert len(warnings) == 1 and "'hot' tests field 'scroe'" in warnings[0]


def test_a_country_alias_in_the_channel_rules_is_a_warning():
    campaign = base_campaign(
        channels={"countries": ["GB", "US"], "by_country": [{"countries": ["UK", "US"], "platforms": ["first"]}]}
    )
    [warning] = country_alias_warnings(campaign)
    assert "channels.by_country[0].countries lists 'UK'" in warning and "write GB" in warning
    assert country_alias_warnings(base_campaign(channels={"countries": ["GB", "US"]})) == []


def test_unknown_platforms_are_refused_with_the_known_names():
    campaign = base_campaign(platforms={"first": {}, "off": {"enabled": False}})
    check_platforms(campaign, ("first",))
    check_platforms(campaign, None)
    with pytest.raises(ConfigError, match=r"--platform frist: not a channel of this campaign; known: first"):
        check_platforms(campaign, ("frist",))
    with pytest.raises(ConfigError, match=r"off: enabled: false"):
        check_platforms(campaign, ("off",))


def add_members(state: StateStore, key: str, ids: list[str]) -> None:
    members = [Member(cid, {"xid": cid}, "US", {}) for cid in ids]
    state.apply_batch("r0", "guard", "first", key, "add", members, BatchResult(received=len(ids)))


def stage(state: StateStore, key: str, ids: list[str], payload_of: str = "") -> None:
    rows = []
    for cid in ids:
        payload, fingerprint = encode_member(Member(cid, {"xid": cid + payload_of}, "US", {}))
        rows.append(("first", key, cid, fingerprint, payload))
    state.stage_desired(rows)


def test_removes_are_counted_per_audience_and_compared_with_the_threshold(tmp_path: Path):
    state = StateStore(tmp_path / "state.sqlite")
    campaign = base_campaign()
    summary = RunSummary(campaign="guard", mode="incremental", rows_read=100)
    ids = [f"c{i:03}" for i in range(100)]
    add_members(state, "guard/awareness", ids)
    add_members(state, "guard/small", ids[:10])
    state.reset_desired()
    stage(state, "guard/awareness", ids[:70], payload_of="-changed")  # changed payloads are not removes
    assert state.removal_counts("guard", "first") == {"guard/awareness": (100, 30), "guard/small": (10, 10)}
    assert large_changes(campaign, summary, state, ["first"]) == []  # 30% is not above 30%; small is ignored
    state.reset_desired()
    stage(state, "guard/awareness", ids[:69])
    [problem] = large_changes(campaign, summary, state, ["first"])
    assert problem == (
        "first audience guard/awareness: 31 of its 100 members would be removed (31%), "
        "above sync.max_remove_fraction 30%"
    )
    strict = base_campaign(sync={"remove_check_min_members": 10, "max_remove_fraction": 0.5})
    [problem] = large_changes(strict, summary, state, ["first"])
    assert "guard/small: 10 of its 10 members" in problem
    state.close()


def test_the_reject_share_is_worded_with_its_figure(tmp_path: Path):
    state = StateStore(tmp_path / "state.sqlite")
    campaign = base_campaign()
    summary = RunSummary(campaign="guard", mode="incremental", rows_read=1000)
    summary.outcomes["rejected"] = 420
    assert large_changes(campaign, summary, state, []) == [
        "42% of rows rejected (420 of 1,000), above sync.max_reject_fraction 20%"
    ]
    summary.outcomes["rejected"] = 200
    assert large_changes(campaign, summary, state, []) == []
    small = RunSummary(campaign="guard", mode="incremental", rows_read=19)
    small.outcomes["rejected"] = 19
    assert large_changes(campaign, small, state, []) == []  # below sync.reject_check_min_rows
    state.close()


ENABLED = """\
campaign: seam
audience:
  source: {type: csv, path: contacts.csv}
holdout: {fraction: 0.01}
channels:
  default: [first, second]
platforms:
  first: {}
  second: {}
state: {path: state.sqlite}
"""


def contacts(n: int, blank_every: int = 0) -> list[dict[str, str]]:
    return [
        {"contact_id": "" if blank_every and i % blank_every == 0 else f"c{i:03}", "external_id": f"x-{i}",
         "country": "US"}
        for i in range(n)
    ]


def ledger(folder: Path) -> dict[str, tuple[str, str]]:
    db = sqlite3.connect(folder / "state.sqlite")
    try:
        return {c: (o, r) for c, o, r in db.execute("SELECT contact_id, offered, reachable FROM holdout")}
    finally:
        db.close()


def test_a_refused_run_pushes_no_channel_and_says_why_in_the_summary(tmp_path: Path):
    path = write_campaign(tmp_path, contacts(30, blank_every=2))
    (tmp_path / "campaign.yaml").write_text(ENABLED)
    pushed: list[str] = []
    channels = [FakeChannel("first", pushed), FakeChannel("second", pushed)]
    summary = Engine(load_campaign(path), RunOptions(), channels=channels).run()
    assert pushed == [] and summary.status == "refused"
    assert summary.error and summary.error.startswith("50% of rows rejected (15 of 30)")
    db = sqlite3.connect(tmp_path / "state.sqlite")
    status, stored = db.execute("SELECT status, summary FROM runs").fetchone()
    assert status == "refused" and json.loads(stored)["error"] == summary.error
    assert db.execute("SELECT COUNT(*) FROM holdout").fetchone() == (0,)  # nobody entered the experiment
    allowed = Engine(load_campaign(path), RunOptions(allow_large_changes=True), channels=channels).run()
    assert pushed == ["first", "second"] and allowed.status == "succeeded"
    entered = db.execute("SELECT COUNT(*), MIN(first_run) FROM holdout").fetchone()
    db.close()
    assert entered == (15, allowed.run_id)  # the 15 accepted contacts, entered with the run that pushed
    assert allowed.warnings == ["pushed with --allow-large-changes: " + summary.error.split(". Nothing")[0]]


def test_strict_makes_a_rule_that_cannot_apply_refuse_the_run(tmp_path: Path):
    path = write_campaign(tmp_path, contacts(5))
    rule = "segments:\n  - {name: hot, when: [{field: scroe, op: '>', value: 1}]}\n"
    (tmp_path / "campaign.yaml").write_text(ENABLED + rule)
    pushed: list[str] = []
    lenient = Engine(load_campaign(path), RunOptions(), channels=[FakeChannel("first", pushed)]).run()
    assert lenient.status == "succeeded" and any("'scroe'" in w for w in lenient.warnings)
    strict = Engine(load_campaign(path), RunOptions(strict=True), channels=[FakeChannel("first", pushed)]).run()
    assert strict.status == "refused" and strict.error and "--strict" in strict.error
    assert pushed == ["first"]  # the lenient run only


def test_a_subset_run_records_the_plans_treatment_and_keeps_other_channels_reachability(tmp_path: Path):
    path = write_campaign(tmp_path, contacts(5))
    (tmp_path / "campaign.yaml").write_text(ENABLED)
    pushed: list[str] = []
    both = [FakeChannel("first", pushed), FakeChannel("second", pushed)]
    Engine(load_campaign(path), RunOptions(), channels=both).run()
    full = ledger(tmp_path)
    assert set(full.values()) == {("first+second", "first+second")}

    rows = contacts(6)
    rows[0]["external_id"] = ""  # c000 is no longer reachable on `first`; the run cannot know about `second`
    write_campaign(tmp_path, rows)
    (tmp_path / "campaign.yaml").write_text(ENABLED)
    Engine(load_campaign(path), RunOptions(), channels=[FakeChannel("first", pushed)]).run()
    after = ledger(tmp_path)
    assert after["c000"] == ("first+second", "second")
    assert after["c005"] == ("first+second", "first")  # first seen in a subset run: its channels only
    assert {c: after[c] for c in full if c != "c000"} == {c: v for c, v in full.items() if c != "c000"}
