"""The simulator: an exact binomial sampler, the project's own group assignment, and truths that add up."""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

from crm_activation.campaign.loader import load_campaign
from crm_activation.measurement.conversions import parse_timestamp
from crm_activation.measurement.ledger import Exposure
from crm_activation.measurement.simulate import (
    SimulationSpec,
    binomial,
    daily_counts,
    expected_uplift,
    rates,
    simulate_email_sends,
    simulate_events,
    simulate_ledger,
    spec_for_campaign,
    strength,
    truth_table,
)
from crm_activation.pipeline.holdout import assign_group


@pytest.mark.parametrize(("n", "p"), [(30, 0.2), (12, 0.7), (200, 0.03)])
def test_binomial_sampler_matches_the_binomial_distribution(n, p):
    rng = random.Random(1)
    draws = Counter(binomial(rng, n, p) for _ in range(20_000))
    support = [k for k in range(n + 1) if scipy_stats.binom.pmf(k, n, p) * 20_000 >= 5]
    observed = [draws.get(k, 0) for k in support]
    expected = [scipy_stats.binom.pmf(k, n, p) * 20_000 for k in support]
    expected = [e * sum(observed) / sum(expected) for e in expected]
    assert scipy_stats.chisquare(observed, expected).pvalue > 0.001
    assert binomial(rng, 10, 0.0) == 0 and binomial(rng, 10, 1.0) == 10 and binomial(rng, 0, 0.5) == 0


def test_daily_counts_reach_the_target_rate():
    rng = random.Random(2)
    finals = [daily_counts(rng, 10_000, 0.05)[-1] for _ in range(200)]
    assert sum(finals) / len(finals) == pytest.approx(500, rel=0.02)
    series = daily_counts(rng, 10_000, 0.05)
    assert len(series) == 30 and series == sorted(series)


def test_ledger_uses_the_projects_assignment_and_is_upwork_like():
    spec = SimulationSpec()
    rows = simulate_ledger(spec, 5000, "camp", seed=1)
    assert all(group == assign_group("camp", cid, 0.5).value for cid, group, *_ in rows)
    countries = Counter(row[2] for row in rows)
    assert len(spec.countries) == 25 and len(countries) == 25 and countries.most_common(1)[0][0] == "US"
    assert {row[3] for row in rows} == {"high_potential", "medium_potential", "low_potential"}
    assert rows == simulate_ledger(spec, 5000, "camp", seed=1)  # reproducible


def test_truth_no_channel_no_uplift_and_cut_truths():
    spec = SimulationSpec()
    assert strength("(none)") == 0.0 and strength("email") == 0.6 and strength("a+b+c+d+e") == 1.5
    none = Exposure("x", "test", "US", "high_potential", "(none)", (), 0.0)
    p_control, p_test = rates(spec, spec.kpi("hire"), none)
    assert p_control == p_test > 0
    contacts = [Exposure(f"{i}", "test", "US", s, "email", ("email",), 0.0)
                for i, s in enumerate(["high_potential", "low_potential"] * 50)]
    truth = truth_table(spec, contacts, ["account_created"])["account_created"]
    assert truth["segment=high_potential"] == pytest.approx(0.8 * 0.6)
    assert truth["overall"] == pytest.approx(expected_uplift(spec, "account_created", contacts))
    assert truth["segment=low_potential"] < truth["overall"] < truth["segment=high_potential"]


def test_events_respect_entry_and_window():
    spec = SimulationSpec(days=10)
    contacts = [Exposure(f"c{i}", "test" if i % 2 else "control", "US", "high_potential", "email", ("email",),
                         1000.25 + (i % 3) * 86_400) for i in range(3000)]
    rows = simulate_events(spec, contacts, ["account_created"], 1000.25, seed=3, events=["signup"])
    entered = {c.contact_id: c.entered_at for c in contacts}
    for cid, event, moment, _ in rows:
        assert event == "signup"
        assert entered[cid] <= parse_timestamp(moment) < 1000.25 + 10 * 86_400


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"
SEVEN = "email+facebook+linkedin+dv360+amazon_dsp+xandr+google_data_manager"


def test_spec_follows_the_campaigns_channels_stages_and_variants():
    campaign = load_campaign(EXAMPLE).campaign
    spec = spec_for_campaign(campaign, 30)
    assert [c for c, _ in spec.countries] == list(campaign.channels.countries)
    assert [s for s, _, _ in spec.segments] == ["high_potential", "medium_potential", "low_potential"]
    assert spec.treatment("US", "high_potential") == SEVEN  # by_country rule, in the plan's order
    assert spec.treatment("US", "low_potential") == "email+facebook+xandr"  # narrowed by by_segment
    assert spec.treatment("DE", "medium_potential") == "email"  # the default
    assert spec.treatment("DE", "low_potential") == "email"
    assert spec.stages == ("awareness", "consideration", "conversion")
    assert spec.email_steps == {"awareness": ((1, "we-miss-you", (("warm", 1.0), ("brief", 1.0))),)}
    assert spec.variant_effects == {"warm": 1.0, "brief": pytest.approx(0.7)}
    rows = simulate_ledger(spec, 3000, campaign.campaign, seed=2)
    assert {row[6] for row in rows} == set(spec.stages)
    assert all(row[4] == spec.treatment(row[2], row[3]) for row in rows)
    sends = simulate_email_sends(spec, rows, campaign.campaign)
    awareness_test = {row[0] for row in rows if row[1] == "test" and row[6] == "awareness"}
    assert {cid for cid, *_ in sends} == awareness_test  # every test contact of the stage, no control contact
    variants = Counter(send[4] for send in sends)
    assert set(variants) == {"warm", "brief"} and abs(variants["warm"] - variants["brief"]) < 0.15 * len(sends)


def test_campaign_without_segments_or_email_simulates_what_a_run_would_record(tmp_path):
    (tmp_path / "campaign.yaml").write_text(
        "campaign: plain\naudience:\n  source: {type: csv, path: contacts.csv}\n"
        "channels:\n  countries: [US, DE]\n  default: [facebook]\n"
        "  by_country: [{countries: [US], platforms: [facebook, linkedin]}]\n"
        "platforms:\n  facebook: {}\n  linkedin: {}\n", encoding="utf-8")
    spec = spec_for_campaign(load_campaign(tmp_path / "campaign.yaml").campaign, 30)
    rows = simulate_ledger(spec, 500, "plain")
    assert {row[3] for row in rows} == {"unsegmented"} and {row[2] for row in rows} == {"US", "DE"}
    assert {(row[2], row[4]) for row in rows} == {("US", "facebook+linkedin"), ("DE", "facebook")}
    assert simulate_email_sends(spec, rows, "plain") == [] and spec.variant_effects == {}


def test_cli_simulate_records_the_campaigns_treatments_and_variants(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "crm_activation.cli.main", "simulate", str(EXAMPLE), "--contacts", "3000",
         "--state", str(tmp_path / "sim.sqlite"), "--conversions", str(tmp_path / "sim.csv")],
        capture_output=True, text=True, timeout=300, check=False, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    db = sqlite3.connect(tmp_path / "sim.sqlite")
    treatments = {row[0] for row in db.execute("SELECT DISTINCT offered FROM holdout")}
    assert treatments == {SEVEN, "email+facebook+xandr", "email"}
    variants = dict(db.execute("SELECT variant, COUNT(*) FROM email_sends GROUP BY variant").fetchall())
    assert set(variants) == {"warm", "brief"}
    truth = json.loads((tmp_path / "sim.truth.json").read_text())["uplift"]["account_created"]
    assert truth["variant=warm"] > truth["variant=brief"] > 0  # variants differ in truth
    assert truth[f"treatment={SEVEN}"] > truth["treatment=email"] > 0
