"""The real CLI, in a subprocess, against the Facebook sandbox."""

from __future__ import annotations

import csv
import json
import sqlite3
import time

import pytest

from crm_activation import FaultPlan
from crm_activation.normalization import email_trimmed_lower, sha256_hex
from crm_activation.pipeline.holdout import Group, assign_group
from crm_activation.state.store import decode_member

from .conftest import TOKEN, CampaignDir


def member_emails(app) -> dict[str, set[str]]:
    """Hashed e-mails per audience name, as the sandbox holds them."""
    return {
        audience["name"]: {row["EMAIL"] for row in audience["members"] if row.get("EMAIL")}
        for audience in app.state()["audiences"].values()
    }


def user_requests(app) -> list[dict]:
    return [r for r in app.requests if r["path"].endswith(("/users", "/usersreplace")) and r["status"] == 200]


def hashed(email: str) -> str:
    email = email.strip()
    return email.lower() if len(email) == 64 else sha256_hex(email_trimmed_lower(email, None))


def test_run_pushes_only_the_test_group_and_accounts_for_every_row(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    rows = list(synth.generate_contacts(800, seed=11))
    campaign.write_contacts(rows)
    code, summary = campaign.run_json("--rejects", "rejects.csv")
    assert code == 0, summary
    assert summary["rows_read"] == 800
    assert sum(summary["outcomes"].values()) == 800
    assert summary["outcomes"]["held_out"] > 250 and summary["outcomes"]["activated"] > 100

    ledger = sqlite3.connect(campaign.folder / "state.sqlite")
    groups = dict(ledger.execute("SELECT contact_id, grp FROM holdout"))
    ledger.close()
    control = [r for r in rows if groups.get(r["contact_id"].strip()) == Group.CONTROL.value]
    assert len(control) == summary["outcomes"]["held_out"]
    control_hashes = {hashed(r["email"]) for r in control if "@" in r["email"] or len(r["email"].strip()) == 64}
    control_hashes |= {r["external_id"] for r in control if r["external_id"]}
    control_hashes |= {r["maid"] for r in control if r["maid"]}
    sent = "".join(r["body"] for r in app.requests)
    assert not [h for h in control_hashes if h in sent], "a control contact reached the platform"

    pushed = member_emails(app)
    fb = summary["platforms"]["facebook"]
    stages = {s["audience"]: s for s in fb["stages"].values()}
    for name, emails in pushed.items():
        assert stages[name]["added"] == stages[name]["desired"] >= len(emails) > 0
    assert fb["eligible"] == sum(s["desired"] for s in stages.values())

    with open(campaign.folder / "rejects.csv") as handle:
        rejects = list(csv.DictReader(handle))
    assert rejects and all(r["source"].endswith("contacts.csv") and int(r["row"]) >= 2 and r["field"] for r in rejects)
    rejected_rows = {r["row"] for r in rejects if r["row_rejected"] == "yes"}
    assert len(rejected_rows) == summary["outcomes"]["rejected"]
    raw_values = {r[k].strip() for r in rows for k in ("email", "phone", "last_name") if r[k].strip()}
    assert not [r for r in rejects if any(v in r["reason"] for v in raw_values)]  # reasons never carry the value

    ledger = sqlite3.connect(campaign.folder / "state.sqlite").execute("SELECT grp, COUNT(*) FROM holdout GROUP BY 1")
    counts = dict(ledger.fetchall())
    assert counts["control"] == summary["outcomes"]["held_out"]


def test_rerun_with_nothing_changed_sends_nothing(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    campaign.write_contacts(list(synth.generate_contacts(300, seed=3)))
    assert campaign.run_json()[0] == 0
    before = len(user_requests(app))
    assert before > 0
    code, summary = campaign.run_json()
    assert code == 0
    assert len(user_requests(app)) == before
    assert all(s["added"] == 0 and s["removed"] == 0 for s in summary["platforms"]["facebook"]["stages"].values())


def contact(cid: str, email: str, stage: str, country: str = "US") -> dict[str, str]:
    return {"contact_id": cid, "email": email, "country": country, "funnel_stage": stage, "score": "0.9"}


def test_stage_change_moves_the_contact_between_audiences(campaign: CampaignDir, facebook):
    app, _ = facebook
    ids = [f"S{i}" for i in range(40) if assign_group("e2e-winback", f"S{i}", 0.5) is Group.TEST][:3]
    rows = [contact(cid, f"{cid.lower()}@example.com", "awareness") for cid in ids]
    campaign.write_contacts(rows)
    assert campaign.run_json()[0] == 0
    assert member_emails(app)["E2E awareness"] == {hashed(r["email"]) for r in rows}

    rows[0]["funnel_stage"] = "conversion"
    campaign.write_contacts(rows)
    code, summary = campaign.run_json()
    assert code == 0
    emails = member_emails(app)
    assert emails["E2E awareness"] == {hashed(r["email"]) for r in rows[1:]}
    assert emails["E2E conversion"] == {hashed(rows[0]["email"])}
    stages = summary["platforms"]["facebook"]["stages"]
    assert (stages["awareness"]["removed"], stages["conversion"]["added"]) == (1, 1)


def test_dry_run_writes_every_request_and_sends_none(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    campaign.write_contacts(list(synth.generate_contacts(200, seed=5)))
    code, summary = campaign.run_json("--dry-run", "--outbox", "outbox")
    assert code == 0 and summary["dry_run"]
    assert app.requests == []
    lines = [json.loads(line) for line in (campaign.folder / "outbox" / "facebook.jsonl").read_text().splitlines()]
    assert {line["platform"] for line in lines} == {"facebook"}
    assert any(line["url"].endswith("/customaudiences") or "customaudiences" in line["url"] for line in lines)
    users = [line for line in lines if "/users" in line["url"]]
    assert sum(len(line["body"]["payload"]["data"]) for line in users) == summary["platforms"]["facebook"]["eligible"]
    assert TOKEN not in (campaign.folder / "outbox" / "facebook.jsonl").read_text()
    assert not (campaign.folder / "state.sqlite").exists() or not sqlite3.connect(
        campaign.folder / "state.sqlite"
    ).execute("SELECT COUNT(*) FROM memberships").fetchone()[0]


def test_faults_still_reach_the_intended_end_state(campaign: CampaignDir, facebook, synth, tmp_path):
    from crm_activation import FaultPlan

    app, _ = facebook
    campaign.write_contacts(list(synth.generate_contacts(1000, seed=8)))
    campaign.write_campaign(batch_size=15, read_timeout=0.3)  # the injected 0.7 s delays must trip it
    _, clean = campaign.run_json("--dry-run", "--outbox", str(tmp_path / "o"))
    app.set_faults(FaultPlan(throttle_rate=0.2, server_error_rate=0.15, timeout_rate=0.1, timeout_seconds=0.7, seed=4))
    code, summary = campaign.run_json()
    assert code == 0, summary["platforms"]["facebook"]["error"]
    faults = [r["fault"] for r in app.requests if r["fault"]]
    assert {"throttle", "server_error", "timeout"} <= set(faults)
    total = sum(len(a["members"]) for a in app.state()["audiences"].values())
    assert total == clean["platforms"]["facebook"]["eligible"] == summary["platforms"]["facebook"]["eligible"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_run_killed_midway_resumes_without_losing_or_repeating_work(campaign: CampaignDir, facebook, synth,
                                                                   backend, request):
    app, _ = facebook
    state = "state.sqlite" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    campaign.write_contacts(list(synth.generate_contacts(1200, seed=9)))
    campaign.write_campaign(batch_size=20, rps=25)
    process = campaign.start("run", str(campaign.yaml), "--json", "--state", state)
    deadline = time.monotonic() + 60
    # Meta has up to 4 requests in flight, and a thread sends its next batch only once its last one is recorded:
    # a 5th answered request proves at least one batch was acknowledged and recorded before the kill.
    while len(user_requests(app)) < 6 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.005)
    process.kill()  # SIGKILL: no cleanup, no summary, mid-batch for all we know
    process.communicate()
    sent_before_kill = len(user_requests(app))
    assert sent_before_kill >= 6

    campaign.write_campaign(batch_size=20)
    code, second = campaign.run_json("--state", state)  # at once: the killed run's lock must not block it
    assert code == 0, second
    eligible = second["platforms"]["facebook"]["eligible"]
    added_second = sum(s["added"] for s in second["platforms"]["facebook"]["stages"].values())
    assert eligible - 20 * sent_before_kill <= added_second < eligible  # the rerun did only what was left ...
    total = sum(len(a["members"]) for a in app.state()["audiences"].values())
    assert total == eligible  # ... and the platform ends with exactly the intended members
    sent_rows = sum(len(json.loads(r["body"])["payload"]["data"]) for r in user_requests(app) if r["method"] == "POST")
    in_flight = 4  # Meta's default `requests_in_flight`: the batches a kill can leave unacknowledged
    assert eligible <= sent_rows <= eligible + 20 * in_flight  # at most those batches were sent twice


def test_wrong_token_fails_the_platform_without_leaking_it(campaign: CampaignDir, facebook, synth):
    campaign.write_contacts(list(synth.generate_contacts(50, seed=1)))
    done = campaign.run("run", str(campaign.yaml), "--json", token="not-the-right-token-123")
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert "credentials" in summary["platforms"]["facebook"]["error"]
    assert "not-the-right-token-123" not in done.stdout + done.stderr


def test_missing_credentials_and_bad_campaign_exit_2_with_location(campaign: CampaignDir, facebook):
    campaign.write_contacts([contact("A1", "a@example.com", "awareness")])
    done = campaign.run("run", str(campaign.yaml), token="")
    assert done.returncode == 2 and "CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN" in done.stderr
    campaign.yaml.write_text(campaign.yaml.read_text().replace("fraction: 0.5", "fraction: 2"))
    done = campaign.run("run", str(campaign.yaml))
    assert done.returncode == 2
    assert "campaign.yaml:8: holdout.fraction:" in done.stderr and "holdout.fraction" in done.stderr


def test_connectors_command_lists_facebook(campaign: CampaignDir):
    done = campaign.run("connectors", "--json")
    listing = json.loads(done.stdout)
    assert listing["skipped_plugins"] == []
    described = {c["platform"]: c for c in listing["connectors"]}
    assert described["facebook"]["max_batch_size"] == 10_000
    assert "replace" in described["facebook"]["capabilities"]


def test_a_repeated_contact_id_keeps_the_first_row_and_rejects_the_others(campaign: CampaignDir, facebook, synth):
    rows = list(synth.generate_contacts(40, seed=21))
    rows = [r for r in rows if r["contact_id"]][:30]
    repeats = [dict(rows[3], email="other@example.com"), dict(rows[3]), dict(rows[17])]
    campaign.write_contacts(rows + repeats)
    code, summary = campaign.run_json("--rejects", "rejects.csv")
    assert code == 0, summary
    assert summary["rows_read"] == 33 == sum(summary["outcomes"].values())
    with open(campaign.folder / "rejects.csv") as handle:
        duplicates = [r for r in csv.DictReader(handle) if r["reason"] == "duplicate contact_id"]
    assert [(r["row"], r["field"], r["row_rejected"]) for r in duplicates] == [
        ("32", "contact_id", "yes"), ("33", "contact_id", "yes"), ("34", "contact_id", "yes")]
    ledger = sqlite3.connect(campaign.folder / "state.sqlite").execute("SELECT COUNT(*) FROM holdout")
    assert ledger.fetchone()[0] == 30


def test_one_person_behind_several_records_is_in_one_group_and_control_reaches_nobody(campaign: CampaignDir, facebook):
    """A control record and test records of one person, linked only through spellings Meta hashes differently."""
    app, _ = facebook
    control = next(f"P{i}" for i in range(50) if assign_group("e2e-winback", f"P{i}", 0.5) is Group.CONTROL)
    test = [f"Q{i}" for i in range(50) if assign_group("e2e-winback", f"Q{i}", 0.5) is Group.TEST][:2]
    assert control < test[0] < test[1]  # the control record's id anchors the person
    rows = [
        contact(control, "Jo.Doe@gmail.com", "awareness"),
        contact(test[0], "jodoe+winback@googlemail.com", "awareness") | {"phone": "+1 201 555 0123"},
        contact(test[1], "", "awareness") | {"phone": "(201) 555-0123 ext. 9"},
        contact("Z1", "someone.else@example.com", "awareness"),
    ]
    campaign.write_contacts([{"phone": "", **row} for row in rows])
    code, summary = campaign.run_json()
    assert code == 0, summary
    assert summary["identity"]["multi_record_clusters"] == 1 and summary["identity"]["largest_cluster"] == 3
    assert summary["identity"]["regrouped"] == 2
    with sqlite3.connect(campaign.folder / "state.sqlite") as ledger:
        groups = dict(ledger.execute("SELECT contact_id, grp FROM holdout"))
    assert groups[control] == groups[test[0]] == groups[test[1]] == "control"
    sent = "".join(r["body"] for r in app.requests)
    for email in ("jo.doe@gmail.com", "jodoe+winback@googlemail.com"):
        assert sha256_hex(email) not in sent
    assert sha256_hex("12015550123") not in sent


@pytest.mark.parametrize("mode", ["incremental", "full"])
def test_partly_refused_batches_record_only_what_facebook_holds(campaign: CampaignDir, facebook, synth, mode):
    """Every batch refuses some rows, named Meta-style (a count and two samples): the state records no refused row.

    Two samples per answer where Meta gives ten, so that each batch's refusals outnumber its names and the run
    has to re-send the unnamed rows in halves to name them; in `full` mode (Meta's usersreplace) the replaced
    audience is re-added through the same path.
    """
    app, _ = facebook
    app.set_faults(FaultPlan(partial_reject_rate=1.0, reject_names=2, seed=5))
    campaign.write_contacts(list(synth.generate_contacts(1200, seed=21)))
    code, summary = campaign.run_json("--rejects", "rejects.csv", "--mode", mode)
    assert code == 0, summary

    remote_ids = {name: remote for name, remote in sqlite3.connect(campaign.folder / "state.sqlite").execute(
        "SELECT audience_key, remote_id FROM audiences WHERE platform='facebook'")}
    stored = sqlite3.connect(campaign.folder / "state.sqlite").execute(
        "SELECT audience_key, contact_id, payload FROM memberships WHERE platform='facebook'").fetchall()
    held = {remote: {frozenset((k, v) for k, v in row.items() if v) for row in audience["members"]}
            for remote, audience in app.state()["audiences"].items()}
    recorded: dict[str, set[frozenset[tuple[str, str]]]] = {remote: set() for remote in held}
    for key, contact_id, payload in stored:
        fields = decode_member(contact_id, payload).fields
        recorded[remote_ids[key]].add(frozenset((k, v) for k, v in fields.items() if v))
    assert recorded == held  # the state says exactly what the platform holds

    fb = summary["platforms"]["facebook"]
    refused = sum(s["refused"] for s in fb["stages"].values())
    assert refused > 2 * len(fb["stages"]) and sum(s["unconfirmed"] for s in fb["stages"].values()) == 0
    assert sum(s["added"] for s in fb["stages"].values()) == len(stored)  # `added` counts acknowledged members
    assert fb["batches"] > len(fb["stages"])  # the unnamed rows were re-sent
    for stage in fb["stages"].values():
        assert stage["added"] + stage["refused"] == stage["desired"]

    with open(campaign.folder / "rejects.csv") as handle:
        platform_rows = [r for r in csv.DictReader(handle) if r["platform"] == "facebook" and r["contact_id"]]
    refused_ids = {r["contact_id"] for r in platform_rows}
    recorded_ids = {contact_id for _, contact_id, _ in stored}
    assert len(platform_rows) == len(refused_ids) == refused and not refused_ids & recorded_ids
    assert all(r["stage"] in fb["stages"] and r["reason"] for r in platform_rows)

    # the next run offers the refused members again; they are refused again and still not recorded
    code, again = campaign.run_json("--rejects", "rejects2.csv", "--mode", mode)
    assert code == 0, again
    assert sum(s["refused"] for s in again["platforms"]["facebook"]["stages"].values()) == refused
    added_again = sum(s["added"] for s in again["platforms"]["facebook"]["stages"].values())
    assert added_again == (len(stored) if mode == "full" else 0)  # a full run re-sends (and re-counts) everyone
