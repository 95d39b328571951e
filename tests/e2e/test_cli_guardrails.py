"""The guardrails through the real CLI: a broken export or a mistyped campaign pushes nothing (issue 11)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

from .conftest import CLI, CampaignDir
from .test_cli_facebook import user_requests
from .test_demo import sandbox_env


def memberships(campaign: CampaignDir) -> dict[str, int]:
    db = sqlite3.connect(campaign.folder / "state.sqlite")
    try:
        return dict(db.execute("SELECT audience_key, COUNT(*) FROM memberships GROUP BY 1").fetchall())
    finally:
        db.close()


def last_run(campaign: CampaignDir) -> tuple[str, dict]:
    db = sqlite3.connect(campaign.folder / "state.sqlite")
    try:
        status, summary = db.execute("SELECT status, summary FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    finally:
        db.close()
    return status, json.loads(summary)


def edit_campaign(campaign: CampaignDir, old: str, new: str) -> None:
    text = campaign.yaml.read_text()
    assert old in text
    campaign.yaml.write_text(text.replace(old, new))


def test_a_renamed_id_column_is_one_exit_2_error_and_empties_nothing(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    rows = list(synth.generate_contacts(300, seed=5))
    campaign.write_contacts(rows)
    assert campaign.run_json()[0] == 0
    before, requests = memberships(campaign), len(user_requests(app))
    assert sum(before.values()) > 0

    campaign.write_contacts([{("id" if k == "contact_id" else k): v for k, v in row.items()} for row in rows])
    done = campaign.run("run", str(campaign.yaml))
    assert done.returncode == 2, done.stderr
    error = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "'contact_id'" in error[0] and "columns found: id, " in error[0], done.stderr
    assert len(user_requests(app)) == requests  # not one remove (nor add) was sent
    assert memberships(campaign) == before
    status, summary = last_run(campaign)
    assert status == "failed" and "contact_id" in summary["error"] and summary["rows_read"] == 0


def test_too_many_rejected_rows_push_nothing_unless_allowed(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    rows = list(synth.generate_contacts(300, seed=6))
    campaign.write_contacts(rows)
    assert campaign.run_json()[0] == 0
    before, requests = memberships(campaign), len(user_requests(app))

    broken = [{**row, "contact_id": ""} if i % 2 else row for i, row in enumerate(rows)]
    campaign.write_contacts(broken)
    code, summary = campaign.run_json()
    assert code == 4
    assert summary["status"] == "refused"
    share = summary["outcomes"]["rejected"] / summary["rows_read"]
    assert f"{share:.0%} of rows rejected" in summary["error"]
    assert "above sync.max_reject_fraction 20%" in summary["error"]
    assert len(user_requests(app)) == requests and memberships(campaign) == before
    assert last_run(campaign)[0] == "refused"

    code, summary = campaign.run_json("--allow-large-changes")
    assert code == 0, summary
    assert any("--allow-large-changes" in warning for warning in summary["warnings"])
    assert sum(memberships(campaign).values()) < sum(before.values())


def test_an_export_missing_many_contacts_removes_nobody_unless_allowed(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    edit_campaign(campaign, "sync: {mode: incremental,", "sync: {mode: incremental, remove_check_min_members: 10,")
    rows = list(synth.generate_contacts(600, seed=7))
    campaign.write_contacts(rows)
    assert campaign.run_json()[0] == 0
    before, requests = memberships(campaign), len(user_requests(app))

    campaign.write_contacts(rows[: len(rows) // 2])
    done = campaign.run("run", str(campaign.yaml))
    assert done.returncode == 4, done.stderr
    assert "facebook audience e2e-winback/" in done.stderr
    assert "above sync.max_remove_fraction 30%" in done.stderr and "--allow-large-changes" in done.stderr
    assert len(user_requests(app)) == requests and memberships(campaign) == before

    assert campaign.run_json("--allow-large-changes")[0] == 0
    assert sum(memberships(campaign).values()) < sum(before.values())
    assert campaign.run_json()[0] == 0  # the override was for one run; the next compares with the new state


def test_rules_that_cannot_apply_warn_and_fail_under_strict(campaign: CampaignDir, facebook, synth):
    app, _ = facebook
    edit_campaign(campaign, "{field: score, op: \">=\", value: 0.7}", "{field: scroe, op: \">=\", value: 0.7}")
    edit_campaign(campaign, "countries: [US, CA, GB, AU]", "countries: [US, CA, UK, AU]")
    campaign.write_contacts(list(synth.generate_contacts(100, seed=8)))

    code, summary = campaign.run_json("--dry-run")
    assert code == 0, summary
    warnings = " | ".join(summary["warnings"])
    assert "segment rule 'high' tests field 'scroe'" in warnings
    assert "'UK'" in warnings and "write GB" in warnings

    code, summary = campaign.run_json("--strict")
    assert code == 4 and summary["status"] == "refused"
    assert "--strict" in summary["error"] and "scroe" in summary["error"] and "'UK'" in summary["error"]
    assert user_requests(app) == [] and memberships(campaign) == {}


def test_an_unknown_platform_is_exit_2_naming_the_known_ones(campaign: CampaignDir, facebook, synth):
    campaign.write_contacts(list(synth.generate_contacts(20, seed=9)))
    done = campaign.run("run", str(campaign.yaml), "--platform", "facebok")
    assert done.returncode == 2
    assert "--platform facebok" in done.stderr and "known: facebook" in done.stderr


TWO_PLATFORMS = """\
campaign: e2e-subset
audience:
  source: {type: csv, path: contacts.csv}
holdout: {fraction: 0.5}
channels:
  default: []
  by_country:
    - {countries: [US, CA, GB, AU], platforms: [facebook, linkedin]}
platforms:
  facebook:
    account: {ad_account_id: "act_55501"}
  linkedin:
    account: {ad_account_id: "508123456", source_platform: "CRM_ACTIVATION_SANDBOX"}
state: {path: state.sqlite}
http: {max_attempts: 3, initial_wait: 0.001, max_wait: 0.01, read_timeout: 2}
"""


def test_a_platform_subset_run_keeps_the_ledgers_treatment(tmp_path: Path, synth):
    folder = CampaignDir.__new__(CampaignDir)
    folder.contacts = tmp_path / "contacts.csv"
    folder.write_contacts(list(synth.generate_contacts(300, seed=10)))
    (tmp_path / "campaign.yaml").write_text(TWO_PLATFORMS)

    def run(*args: str) -> int:
        done = subprocess.run(
            [str(CLI), "run", "campaign.yaml", "--sandbox", "--json", *args],
            cwd=tmp_path, env=sandbox_env(), capture_output=True, text=True, timeout=120,
        )
        return done.returncode

    def ledger() -> dict[str, tuple[str, str]]:
        db = sqlite3.connect(tmp_path / "state.sqlite")
        try:
            return {c: (o, r) for c, o, r in db.execute("SELECT contact_id, offered, reachable FROM holdout")}
        finally:
            db.close()

    assert run() == 0
    full = ledger()
    assert sum(offered == "facebook+linkedin" for offered, _ in full.values()) > 50
    assert sum("linkedin" in reachable for _, reachable in full.values()) > 50
    assert run("--platform", "facebook") == 0
    assert ledger() == full  # not "offered: facebook" for everyone: the treatment is the campaign's plan
