"""State in PostgreSQL, end to end: the same outcome as SQLite, through the CLI, with the run lock."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from crm_activation.state.database import open_database

from .conftest import CampaignDir

# `campaign` here is the bundled campaign (a fixture of test_all_platforms); the Facebook folder is `campaign_dir`.
from .test_all_platforms import campaign, membership, run  # noqa: F401
from .test_cli_facebook import user_requests

CAMPAIGN_ID = "e2e-winback"


def test_the_bundled_campaign_on_postgres_ends_exactly_as_on_sqlite(campaign, tmp_path, postgres_url):  # noqa: F811
    outcomes = {}
    for name, target in (("sqlite", tmp_path / "state.sqlite"), ("postgresql", postgres_url)):
        for summary, servers, relay in run(campaign, target, None):
            assert summary.status == "succeeded"
            platforms = {slug: membership(server.app.state()) for slug, server in servers.items()}
            sent = sorted(r for mail in relay.received for r in mail.recipients)
            outcomes[name] = (summary.outcomes, platforms, sent)
    assert outcomes["postgresql"] == outcomes["sqlite"]
    with psycopg.connect(postgres_url) as db:
        held_out = db.execute("SELECT COUNT(*) FROM holdout WHERE grp='control'").fetchone()[0]
        sends = db.execute("SELECT COUNT(*) FROM email_sends WHERE status='sent'").fetchone()[0]
    assert held_out == outcomes["postgresql"][0]["held_out"] and sends == len(outcomes["postgresql"][2]) > 0


def test_cli_run_rerun_and_report_on_a_postgres_url(campaign_dir: CampaignDir, facebook, synth, postgres_url):
    app, _ = facebook
    campaign_dir.write_contacts(list(synth.generate_contacts(400, seed=5)))
    code, summary = campaign_dir.run_json("--state", postgres_url)
    assert code == 0, summary
    pushed = len(user_requests(app))
    assert pushed > 0 and summary["outcomes"]["activated"] > 0

    code, again = campaign_dir.run_json("--state", postgres_url)
    assert code == 0 and len(user_requests(app)) == pushed  # the diff ran against the state PostgreSQL holds
    assert all(s["added"] == s["removed"] == 0 for s in again["platforms"]["facebook"]["stages"].values())

    conversions = campaign_dir.folder / "conversions.csv"
    done = campaign_dir.run("simulate-conversions", str(campaign_dir.yaml), "--state", postgres_url,
                            "--out", str(conversions))
    assert done.returncode == 0, done.stderr
    out = str(campaign_dir.folder / "report")
    done = campaign_dir.run("report", str(campaign_dir.yaml), "--state", postgres_url, "--json",
                            "--conversions", str(conversions), "--out", out)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert sum(report["contacts"].values()) == summary["rows_read"] - summary["outcomes"]["rejected"]


def test_campaign_file_url_with_the_password_from_password_env(campaign_dir: CampaignDir, facebook, synth,
                                                               postgres_url, monkeypatch):
    from postgres_server import PASSWORD

    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("CRM_STATE_PASSWORD", PASSWORD)
    use_state(campaign_dir, f"{{url: '{postgres_url}', password_env: CRM_STATE_PASSWORD}}")
    campaign_dir.write_contacts(list(synth.generate_contacts(50, seed=2)))
    code, summary = campaign_dir.run_json()
    assert code == 0, summary
    assert not (campaign_dir.folder / "state.sqlite").exists()
    with psycopg.connect(postgres_url, password=PASSWORD) as db:
        assert db.execute("SELECT status FROM runs").fetchall() == [("succeeded",)]

    monkeypatch.delenv("CRM_STATE_PASSWORD")
    done = campaign_dir.run("run", str(campaign_dir.yaml))
    assert done.returncode == 2 and "CRM_STATE_PASSWORD, which is not set" in done.stderr


def test_a_password_written_into_the_campaign_file_is_refused_and_not_echoed(campaign_dir: CampaignDir):
    use_state(campaign_dir, "{url: 'postgresql://crm:Hunter2-pg@db.internal/crm'}")
    done = campaign_dir.run("run", str(campaign_dir.yaml))
    assert done.returncode == 2
    assert "campaign.yaml:" in done.stderr and "state.url" in done.stderr and "environment variable" in done.stderr
    assert "Hunter2-pg" not in done.stderr + done.stdout


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_second_run_of_a_running_campaign_exits_3_and_sends_nothing(campaign_dir: CampaignDir, facebook, synth,
                                                                      backend, request):
    app, _ = facebook
    target: str | Path = (
        campaign_dir.folder / "state.sqlite" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    )
    campaign_dir.write_contacts(list(synth.generate_contacts(50, seed=4)))
    running = open_database(target)
    running.lock_campaign(CAMPAIGN_ID)  # what a run in progress holds
    try:
        done = campaign_dir.run("run", str(campaign_dir.yaml), "--state", str(target), "--lock-wait", "0.5")
    finally:
        running.close()
    assert done.returncode == 3, done.stderr
    assert f"campaign '{CAMPAIGN_ID}' is already running" in done.stderr
    assert user_requests(app) == []
    done = campaign_dir.run("run", str(campaign_dir.yaml), "--state", str(target))  # the lock died with its holder
    assert done.returncode == 0, done.stderr
    assert user_requests(app)


def use_state(campaign_dir: CampaignDir, state: str) -> None:
    text = campaign_dir.yaml.read_text()
    campaign_dir.yaml.write_text(text.replace("state: {path: state.sqlite}", f"state: {state}"))


@pytest.fixture
def campaign_dir(tmp_path: Path, facebook) -> CampaignDir:
    return CampaignDir(tmp_path, facebook[1].url)
