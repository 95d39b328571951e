"""The answer the report leads with: a verdict per KPI, the spend advice in words, and the warnings.

Unit checks of the verdict rules on hand-built experiments (known counts), then the CLI end to end through a
subprocess (`crm-activation simulate` / `report`), as a campaign manager runs it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.measurement.commands import build_report
from crm_activation.measurement.summary import (
    NO_EFFECT,
    RAISED,
    TOO_FEW,
    detectable_uplift,
    needed_per_group,
)

from .conftest import START, iso, write_campaign, write_ledger

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"
CLI = [sys.executable, "-m", "crm_activation.cli.main"]

MEASUREMENT = """
measurement:
  kpis: [{name: hire}]
  window_days: 30
  min_cut_size: 50
  costs: {email: 0.1, facebook: 0.5}
"""


def _experiment(tmp_path: Path, n: int, test_rate: float, control_rate: float, extra: list[str] | None = None,
                as_of_day: float = 40):
    """n contacts per group (two segments, two treatments), converting at the given rates on day 3."""
    rows, lines = [], ["contact_id,event,timestamp,value"]
    for group, rate in (("test", test_rate), ("control", control_rate)):
        converters = round(n * rate)
        for i in range(n):
            segment, treatment = ("a", "email") if i % 2 else ("b", "email+facebook")
            cid = f"{group}-{i}"
            rows.append((cid, group, "US", segment, treatment, treatment, "awareness"))
            if i < converters:
                lines.append(f"{cid},hire,{iso(3)},")
    write_ledger(tmp_path, rows)
    (tmp_path / "conversions.csv").write_text("\n".join(lines + (extra or [])) + "\n", encoding="utf-8")
    loaded = load_campaign(write_campaign(tmp_path, MEASUREMENT))
    return build_report(loaded, tmp_path / "out", tmp_path / "conversions.csv", as_of=START + as_of_day * 86_400)


def test_power_formulas_match_the_textbook():
    # Two groups of 10,000 at 5%: the 80%-power detectable difference is 2.8 standard errors.
    se = (0.05 * 0.95 * 2 / 10_000) ** 0.5
    assert detectable_uplift(0.05, 10_000, 10_000, 0.05) == pytest.approx(2.8016 * se / 0.05, rel=1e-3)
    # Fleiss' classic example: 5% vs 6.25% (+25%) needs about 5,300 per group at 80% power, alpha 0.05.
    assert needed_per_group(0.05, 0.25, 0.05) == pytest.approx(5_300, rel=0.03)
    assert detectable_uplift(0.0, 100, 100, 0.05) is None and needed_per_group(0.0, 0.25, 0.05) is None


def test_a_clear_effect_is_named_with_its_interval(tmp_path):
    report = _experiment(tmp_path, 6000, 0.12, 0.08).report
    verdict = report.summary.verdicts[0]
    assert verdict.verdict == RAISED and verdict.interval == "fixed-horizon"
    assert verdict.low > 0.3 and verdict.high < 0.7
    assert re.fullmatch(r"The campaign raised hire by 50% \(95% CI \+\d+% to \+\d+%, fixed-horizon\)\.",
                        verdict.sentence)
    advice = report.summary.spend[0]
    assert report.summary.per_cost and "per 1,000 spent" in advice.sentence
    assert "segment=a" in advice.grow and "treatment=email" in advice.grow and advice.cut == []


def test_no_effect_in_a_large_enough_test(tmp_path):
    verdict = _experiment(tmp_path, 6000, 0.08, 0.08).report.summary.verdicts[0]
    assert verdict.verdict == NO_EFFECT and verdict.detectable < 0.25
    assert verdict.sentence.startswith("hire: no detectable effect. Estimated uplift +0%")


def test_too_few_contacts_even_when_the_interval_excludes_zero(tmp_path):
    report = _experiment(tmp_path, 300, 0.12, 0.04).report
    verdict = report.summary.verdicts[0]
    assert verdict.low > 0  # "significant"...
    assert verdict.verdict == TOO_FEW and verdict.detectable > 0.25  # ...but far too small a test to trust it
    assert "overstates" in verdict.sentence and "contacts per group are needed" in verdict.sentence
    assert report.summary.spend[0].grow == [] and "hold everything" in report.summary.spend[0].sentence


def test_a_running_window_is_judged_on_the_always_valid_interval(tmp_path):
    report = _experiment(tmp_path, 6000, 0.12, 0.08, as_of_day=5).report  # day 5 of a 30-day window
    verdict = report.summary.verdicts[0]
    assert not report.window_complete and verdict.interval == "always-valid"
    overall = report.cut("hire", "overall").final
    assert (verdict.low, verdict.high) == (overall.anytime.uplift_low, overall.anytime.uplift_high)
    assert "always-valid" in verdict.sentence


def test_out_of_range_conversions_are_counted_apart_and_warned_about(tmp_path):
    early = [f"test-{i},hire,{iso(-2)}," for i in range(3)]  # before the campaign started
    future = [f"control-{i},hire,{iso(45)}," for i in range(2)]  # after the report's time (day 40)
    built = _experiment(tmp_path, 200, 0.1, 0.1, early + future)
    account = built.report.conversions
    assert account["before_entry"] == 3 and account["after_report"] == 2
    assert sum(account["rejected"].values()) == 0 and account["accepted"] == 40
    warnings = " ".join(built.report.warnings)
    assert "3 conversion rows are dated before their contact entered" in warnings
    assert "2 conversion rows are dated after the report's time" in warnings
    with (tmp_path / "out" / "conversion-rejects.csv").open(newline="") as handle:
        reasons = [row["reason"] for row in csv.DictReader(handle)]
    assert sum("before the contact entered" in r for r in reasons) == 3
    assert sum("after the report's time" in r for r in reasons) == 2
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert html.index("dated after the report") < html.index('class="kpi"')  # in the summary, at the top


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_warns_about_future_and_early_conversions(tmp_path):
    _experiment(tmp_path, 200, 0.1, 0.1)
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3 * 86_400))
    with (tmp_path / "conversions.csv").open("a", encoding="utf-8") as handle:
        handle.write(f"test-5,hire,{stamp},\n")  # three days in the future
        handle.write(f"test-6,hire,{iso(-1)},\n")  # the day before the campaign
    out = _run("report", str(tmp_path / "campaign.yaml"), "--conversions", str(tmp_path / "conversions.csv"),
               "--out", str(tmp_path / "cli"), cwd=tmp_path).stdout
    summary_at = out.index("Summary")
    assert out.index("1 conversion rows are dated after the report's time") < summary_at
    assert out.index("1 conversion rows are dated before their contact entered") < summary_at
    assert "1 dated before entry, 1 dated after the report's time, 0 rejected" in out


@pytest.fixture(scope="module")
def example_2000(tmp_path_factory) -> tuple[Path, str]:
    """The bundled example at the demo's size (2,000 contacts) through `simulate` and `report`."""
    folder = tmp_path_factory.mktemp("example2000")
    _run("simulate", str(EXAMPLE), "--contacts", "2000", "--state", str(folder / "sim.sqlite"),
         "--conversions", str(folder / "sim.csv"), cwd=folder)
    out = _run("report", str(EXAMPLE), "--state", str(folder / "sim.sqlite"), "--conversions",
               str(folder / "sim.csv"), "--out", str(folder / "report"), cwd=folder).stdout
    return folder, out


def test_the_2000_contact_example_says_it_is_too_small(example_2000):
    folder, out = example_2000
    # The answer comes before the tables, per KPI, in words.
    assert out.index("Summary") < out.index("Where to spend") < out.index("(cumulative)")
    for kpi in ("account_created", "first_job_post", "hire"):
        assert f"{kpi}: too few contacts to conclude" in out
        assert f"{kpi}: hold everything: too few contacts" in out
    report = json.loads((folder / "report" / "report.json").read_text())
    assert {v["verdict"] for v in report["summary"]["verdicts"]} == {TOO_FEW}
    html = (folder / "report" / "report.html").read_text(encoding="utf-8")
    assert html.count('data-verdict="too few contacts to conclude"') == 3


def test_the_example_sets_costs_so_advice_is_per_dollar(example_2000):
    folder, out = example_2000
    assert "incremental conversions per 1,000 spent" in out
    report = json.loads((folder / "report" / "report.json").read_text())
    assert report["summary"]["per_cost"] is True
    costs = {r["cut"]: r["cost_per_contact"] for r in report["recommendations"] if r["dimension"] == "treatment"}
    assert costs["treatment=email"] == pytest.approx(0.02)
    seven = "treatment=email+facebook+linkedin+dv360+amazon_dsp+xandr+google_data_manager"
    assert costs[seven] == pytest.approx(0.02 + 0.60 + 1.50 + 0.90 + 0.70 + 0.30 + 0.50)


def test_readme_demo_report_says_too_few_contacts(tmp_path):
    """The README's walkthrough as written: the sandbox run of the 2,000 bundled contacts, simulated conversions,
    then `report` now (they are all in the future: warned about) and `report --as-of window-end`."""
    env = dict(os.environ)
    for line in (EXAMPLE.parent / "sandbox.env").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    state = str(tmp_path / "state.sqlite")
    done = subprocess.run([*CLI, "run", str(EXAMPLE), "--sandbox", "--state", state, "--rejects",
                           str(tmp_path / "rejects.csv")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    _run("simulate-conversions", str(EXAMPLE), "--state", state, "--out", str(tmp_path / "conversions.csv"),
         cwd=tmp_path)
    common = ("report", str(EXAMPLE), "--state", state, "--conversions", str(tmp_path / "conversions.csv"))
    now = _run(*common, "--out", str(tmp_path / "now"), cwd=tmp_path).stdout
    assert re.search(r"Warning: [\d,]+ conversion rows are dated after the report's time", now)
    out = _run(*common, "--out", str(tmp_path / "report"), "--as-of", "window-end", cwd=tmp_path).stdout
    assert "dated after the report's time" not in out.split("Summary")[0]
    for kpi in ("account_created", "first_job_post", "hire"):
        assert re.search(rf"{kpi}: too few contacts to conclude\. Estimated uplift .*fixed-horizon", out)
    html = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert html.count('data-verdict="too few contacts to conclude"') == 3
