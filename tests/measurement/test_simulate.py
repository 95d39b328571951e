"""The simulator: an exact binomial sampler, the project's own group assignment, and truths that add up."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from scipy import stats as scipy_stats

from crm_activation.measurement.conversions import parse_timestamp
from crm_activation.measurement.ledger import Exposure
from crm_activation.measurement.simulate import (
    SimulationSpec,
    binomial,
    daily_counts,
    expected_uplift,
    rates,
    simulate_events,
    simulate_ledger,
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
