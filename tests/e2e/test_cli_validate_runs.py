"""The real CLI, in a subprocess: `validate`, the dry run's plan file, default rejects, `runs`."""

from __future__ import annotations

import csv
import json

from crm_activation.pipeline.holdout import Group, assign_group

from .conftest import TOKEN, CampaignDir


def contact(cid: str, stage: str = "awareness", score: str = "0.9", **extra: str) -> dict[str, str]:
    return {"contact_id": cid, "email": f"{cid.lower()}@example.com", "country": "US", "funnel_stage": stage,
            "score": score, **extra}


def group_ids(n: int, prefix: str = "V") -> list[str]:
    return [f"{prefix}{i}" for i in range(400) if assign_group("e2e-winback", f"{prefix}{i}", 0.5) is Group.TEST][:n]


def validate_json(campaign: CampaignDir, *args: str, token: str = TOKEN) -> tuple[int, dict]:
    done = campaign.run("validate", str(campaign.yaml), "--json", *args, token=token)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_validate_passes_a_good_campaign_and_checks_the_token_with_connect(campaign: CampaignDir, facebook):
    app, _ = facebook
    campaign.write_contacts([contact(cid) for cid in group_ids(5)])
    code, report = validate_json(campaign, "--connect")
    assert code == 0, report["errors"]
    assert report["valid"] and report["campaign"] == "e2e-winback"
    checked = {(c["check"], c["where"]) for c in report["checked"]}
    assert {("credentials", "facebook"), ("connect", "facebook"), ("source", "contacts.csv")} <= checked
    assert report["sample"]["rows"] == report["sample"]["accepted"] == 5
    assert not [r for r in app.requests if r["path"].endswith(("/users", "/customaudiences"))]  # nothing pushed
    assert not (campaign.folder / "state.sqlite").exists()  # and no state written

    code, report = validate_json(campaign, "--connect", token="wrong-token-31337")
    assert code == 2 and not report["valid"]
    assert [(e["check"], e["where"]) for e in report["errors"]] == [("connect", "facebook")]
    assert "wrong-token-31337" not in json.dumps(report)


def test_validate_lists_every_problem_at_once(campaign: CampaignDir, facebook):
    """A missing token, a mapped column the file lacks, a segment field no column provides: all in one go."""
    text = campaign.yaml.read_text().replace("field: score", "field: scroe")
    text = text.replace("source: {type: csv, path: contacts.csv}",
                        "source: {type: csv, path: contacts.csv}\n  columns: {email: Email_Address}")
    campaign.yaml.write_text(text)
    rows = [contact(cid) for cid in group_ids(3)] + [contact("", score="0.5")]
    campaign.write_contacts(rows)
    code, report = validate_json(campaign, token="")
    assert code == 2 and not report["valid"]
    errors = {(e["check"], e["where"]): e["message"] for e in report["errors"]}
    assert "CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN" in errors[("credentials", "facebook")]
    assert "'Email_Address'" in errors[("source", "contacts.csv")]
    segment_errors = [m for (check, _), m in errors.items() if check == "segments"]
    assert len(segment_errors) == 2 and all("'scroe'" in m and "did you mean 'score'" in m for m in segment_errors)
    warnings = [w["message"] for w in report["warnings"] if w["check"] == "sample"]
    assert warnings == ["1 rows rejected: contact_id: missing contact id (first at row 5)"]
    assert report["sample"] == {"rows": 4, "accepted": 3, "rejected": 1,
                                "rejected_reasons": {"contact_id: missing contact id": 1}, "field_issues": {}}
    assert not [r for r in rows if r["email"] and r["email"] in json.dumps(report)]  # never a value

    done = campaign.run("check", str(campaign.yaml), token="")  # the alias, as text
    assert done.returncode == 2
    assert "not valid: 4 error(s)" in done.stdout and "CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN" in done.stdout


def test_validate_reports_a_broken_campaign_file_as_json(campaign: CampaignDir):
    campaign.yaml.write_text(campaign.yaml.read_text().replace("holdout: {fraction: 0.5}", "holdout: {fraction: 2}"))
    code, report = validate_json(campaign)
    assert code == 2 and report["campaign"] is None
    assert [(e["check"], e["where"].rsplit(":", 1)[1]) for e in report["errors"]] == [("campaign", "8")]
    assert "holdout.fraction" in report["errors"][0]["message"]


def test_validate_fails_when_every_sampled_row_would_be_rejected(campaign: CampaignDir):
    campaign.write_contacts([contact("", score="0.1") for _ in range(3)])
    code, report = validate_json(campaign, "--sample", "2")
    assert code == 2
    assert [e["message"] for e in report["errors"]] == ["all 2 sampled rows would be rejected"]


def test_dry_run_writes_the_planned_changes_per_record(campaign: CampaignDir, facebook):
    ids = group_ids(6)
    campaign.write_contacts([contact(cid) for cid in ids[:4]])
    assert campaign.run_json()[0] == 0
    # next export: the first leaves, the second moves to conversion, two are new
    rows = [contact(ids[1], "conversion"), contact(ids[2]), contact(ids[3]), contact(ids[4]), contact(ids[5])]
    campaign.write_contacts(rows)
    code, summary = campaign.run_json("--dry-run", "--outbox", "out", "--plan", "plan.csv")
    assert code == 0 and summary["plan_file"] == "plan.csv"
    text = (campaign.folder / "plan.csv").read_text()
    planned = [(r["platform"], r["stage"], r["contact_id"], r["operation"]) for r in csv.DictReader(text.splitlines())]
    assert planned == [  # removes first, as a real run sends them
        ("facebook", "awareness", ids[0], "remove"),
        ("facebook", "awareness", ids[1], "remove"),
        ("facebook", "awareness", ids[4], "add"),
        ("facebook", "awareness", ids[5], "add"),
        ("facebook", "conversion", ids[1], "add"),
    ]
    assert "@" not in text  # contact ids only, never an identifier

    code, summary = campaign.run_json("--dry-run", "--outbox", "out2")  # default: in the outbox
    assert summary["plan_file"] == "out2/plan.csv" and (campaign.folder / "out2" / "plan.csv").is_file()
    assert campaign.run_json()[1]["plan_file"] is None  # a real run writes no plan


def test_rejects_go_next_to_the_state_by_default(campaign: CampaignDir, facebook):
    campaign.write_contacts([contact(cid) for cid in group_ids(9)] + [contact("", score="0.5")])
    code, summary = campaign.run_json()
    assert code == 0
    expected = campaign.folder / "e2e-winback-rejects.csv"
    assert summary["rejects_file"] == str(expected)
    with expected.open() as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["row"], r["field"], r["row_rejected"]) for r in rejects] == [("11", "contact_id", "yes")]
    done = campaign.run("run", str(campaign.yaml))
    assert "e2e-winback-rejects.csv" in done.stdout


def test_runs_lists_past_runs_newest_first(campaign: CampaignDir, facebook):
    campaign.write_contacts([contact(cid) for cid in group_ids(3)])
    code, first = campaign.run_json()
    assert code == 0
    failed = campaign.run("run", str(campaign.yaml), "--json", "--mode", "full", token="wrong-token-31337")
    assert failed.returncode == 1
    second = json.loads(failed.stdout)

    done = campaign.run("runs", str(campaign.yaml), "--json")
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], first["run_id"]]
    assert [(r["status"], r["mode"]) for r in listed] == [("failed", "full"), ("succeeded", "incremental")]
    assert listed[1]["rows_read"] == 3 and listed[1]["added"] == 3 and listed[1]["removed"] == 0
    assert listed[1]["error"] is None and listed[1]["seconds"] >= 0
    assert listed[0]["error"].startswith("facebook: ") and "wrong-token-31337" not in done.stdout

    limited = json.loads(campaign.run("runs", str(campaign.yaml), "--json", "--limit", "1").stdout)
    assert [r["run_id"] for r in limited] == [second["run_id"]]
    table = campaign.run("runs", str(campaign.yaml))
    assert table.returncode == 0 and first["run_id"] in table.stdout and "failed" in table.stdout

    missing = campaign.run("runs", str(campaign.yaml), "--state", "nowhere.sqlite")
    assert missing.returncode == 2 and "state database not found" in missing.stderr


def test_validate_points_account_setting_errors_at_their_campaign_line(campaign: CampaignDir, facebook):
    text = campaign.yaml.read_text().replace('ad_account_id: "act_55501"', 'ad_acount_id: "act_55501"')
    campaign.yaml.write_text(text)
    campaign.write_contacts([contact(cid) for cid in group_ids(2)])
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "ad_acount_id" in row)
    code, report = validate_json(campaign)
    assert code == 2
    message = {(e["check"], e["where"]): e["message"] for e in report["errors"]}[("credentials", "facebook")]
    assert f"campaign.yaml:{line}: platforms.facebook.account.ad_account_id" in message
    assert "input_value" not in message and "act_55501" not in message  # no pydantic dump, no value
