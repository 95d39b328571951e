"""`crm-activation simulate`, `simulate-conversions` and `report` end to end, on real files and SQLite state."""

from __future__ import annotations

import json

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.cli.main import main
from crm_activation.measurement.commands import measurement_config

from .conftest import CAMPAIGN_ID
from .conftest import write_campaign as write_base_campaign

# Three segments and a channel plan with three treatments: `simulate` follows the campaign's own plan.
CAMPAIGN = f"""
campaign: {CAMPAIGN_ID}
audience:
  source: {{type: csv, path: contacts.csv}}
segments:
  - {{name: high_potential, when: [{{field: score, op: ">=", value: 0.7}}]}}
  - {{name: medium_potential, when: [{{field: score, op: ">=", value: 0.4}}]}}
  - {{name: low_potential}}
channels:
  default: [facebook]
  by_country:
    - {{countries: [US, CA, GB, AU], platforms: [facebook, linkedin, dv360]}}
    - {{countries: [DE, FR, NL, ES, IT, IE, SE], platforms: [facebook, linkedin]}}
platforms:
  facebook: {{}}
  linkedin: {{}}
  dv360: {{}}
state:
  path: state.sqlite
measurement:
  kpis: [{{name: account_created}}, {{name: first_job_post}}, {{name: hire}}]
  min_cut_size: 200
"""


def write_campaign(folder):
    path = folder / "campaign.yaml"
    path.write_text(CAMPAIGN, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim")
    campaign = write_campaign(folder)
    code = main(["simulate", str(campaign), "--contacts", "25000", "--state", str(folder / "sim.sqlite"),
                 "--conversions", str(folder / "conversions.csv"), "--seed", "3"])
    assert code == 0
    return folder, campaign


def test_report_recovers_the_simulated_truth(simulated, capsys):
    folder, campaign = simulated
    capsys.readouterr()
    code = main(["report", str(campaign), "--state", str(folder / "sim.sqlite"), "--json",
                 "--conversions", str(folder / "conversions.csv"), "--out", str(folder / "report")])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    truth = json.loads((folder / "conversions.truth.json").read_text())["uplift"]
    checked = covered = 0
    for cut in report["cuts"]:
        expected = truth[cut["kpi"]].get(cut["cut"])
        if expected is None or cut["dimension"] not in ("overall", "segment", "treatment"):
            continue
        checked += 1
        covered += cut["uplift_low"] <= expected <= cut["uplift_high"]
        assert cut["anytime_uplift_low"] <= expected <= cut["anytime_uplift_high"], cut["cut"]
        assert "days" not in cut  # --json prints the latest day only
    assert checked == 21  # 3 KPIs x (overall + 3 segments + 3 treatments)
    print(f"\nsimulated campaign: {covered} of {checked} fixed-horizon 95% intervals cover the truth")
    assert covered >= 18  # 95% intervals: about one miss in twenty is expected
    overall = next(c for c in report["cuts"] if c["kpi"] == "account_created" and c["cut"] == "overall")
    assert overall["uplift_low"] > 0.2  # the Upwork-like +34%-and-more is found
    assert report["conversions"]["not_in_experiment"] > 0 and report["conversions"]["rejected"]
    for name in ("report.json", "summary.csv", "daily.csv", "recommendations.csv", "report.html",
                 "conversion-rejects.csv"):
        assert (folder / "report" / name).stat().st_size > 0, name


def test_terminal_report_and_simulate_conversions_on_an_existing_ledger(simulated, capsys, tmp_path):
    folder, campaign = simulated
    code = main(["simulate-conversions", str(campaign), "--state", str(folder / "sim.sqlite"),
                 "--out", str(tmp_path / "again.csv"), "--seed", "9", "--noise", "0"])
    assert code == 0 and (tmp_path / "again.truth.json").exists()
    capsys.readouterr()
    code = main(["report", str(campaign), "--state", str(folder / "sim.sqlite"),
                 "--conversions", str(tmp_path / "again.csv"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0
    assert "account_created (cumulative)" in out and "spend ranking" in out and "always-valid" in out
    assert "0 not in the experiment, 0 dated before entry, 0 dated after the report's time, 0 rejected" in out


def test_refuses_to_simulate_into_an_existing_ledger(simulated, capsys):
    folder, campaign = simulated
    code = main(["simulate", str(campaign), "--contacts", "10", "--state", str(folder / "sim.sqlite"),
                 "--conversions", str(folder / "x.csv")])
    assert code == 2 and "already holds a ledger" in capsys.readouterr().err


def test_input_errors_exit_2(simulated, capsys, tmp_path):
    folder, campaign = simulated
    state = str(folder / "sim.sqlite")
    out = str(tmp_path / "out")
    assert main(["report", str(campaign), "--state", state, "--conversions", str(tmp_path / "none.csv"),
                 "--out", out]) == 2
    assert "input file not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written when an input is missing
    assert main(["report", str(campaign), "--state", state, "--out", str(tmp_path / "o")]) == 2
    assert "pass --conversions FILE" in capsys.readouterr().err
    assert main(["report", str(campaign), "--state", str(tmp_path / "missing.sqlite"), "--out", out,
                 "--conversions", str(folder / "conversions.csv")]) == 2
    assert "state database not found" in capsys.readouterr().err
    assert not (tmp_path / "missing.sqlite").exists()


def test_measurement_section_errors_point_at_the_line(tmp_path, capsys):
    kpis = "measurement:\n  kpis:\n    - {name: hire}\n    - {name: hire2, events: [hire]}\n"
    campaign = write_base_campaign(tmp_path, kpis)
    assert main(["report", str(campaign), "--conversions", "x.csv", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "campaign.yaml:" in err and "event 'hire' is mapped to two KPIs" in err


def test_a_measurement_section_without_kpis_measures_the_default_ones(tmp_path):
    """`measurement:` is optional throughout: setting costs alone keeps the three default KPIs."""
    loaded = load_campaign(write_base_campaign(tmp_path, "measurement:\n  costs: {facebook: 0.5}\n"))
    config = measurement_config(loaded)
    assert [kpi.name for kpi in config.kpis] == ["account_created", "first_job_post", "hire"]
    assert config.costs == {"facebook": 0.5}
