"""The report model on a hand-built experiment whose counts are known exactly."""

from __future__ import annotations

import csv
import json
import sqlite3

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.measurement.commands import build_report
from crm_activation.pipeline.holdout import chi_square_p_value

from .conftest import CAMPAIGN_ID, iso, write_campaign, write_ledger

MEASUREMENT = """
measurement:
  kpis: [{name: hire}]
  window_days: 10
  min_cut_size: 50
  costs: {facebook: 2.0, email: 0.1}
"""


def _experiment(tmp_path, variants: bool = False):
    """segment big: 500/500 (test converts 100, control 50); skewed: 300/150; tiny: 10/10, no control conversion."""
    rows, events = [], []

    def add(segment, group, n, converters, treatment, day=0):
        for i in range(n):
            cid = f"{segment}-{group}-{i}"
            rows.append((cid, group, "US" if i % 2 else "DE", segment, treatment, treatment, "awareness"))
            if i < converters:
                events.append((cid, "hire", iso(day + (i % 3))))

    add("big", "test", 500, 100, "email+facebook")
    add("big", "control", 500, 50, "email+facebook")
    add("skewed", "test", 300, 30, "email")
    add("skewed", "control", 150, 15, "email")
    add("tiny", "test", 10, 2, "email")
    add("tiny", "control", 10, 0, "email")
    write_ledger(tmp_path, rows)
    if variants:
        db = sqlite3.connect(tmp_path / "state.sqlite")
        db.execute("CREATE TABLE email_sends (campaign TEXT, contact_id TEXT, step INTEGER, variant TEXT)")
        db.executemany(
            "INSERT INTO email_sends VALUES (?, ?, 1, ?)",
            [(CAMPAIGN_ID, r[0], "A" if int(r[0].rsplit("-", 1)[1]) % 2 else "B") for r in rows if r[1] == "test"],
        )
        db.commit()
        db.close()
    with (tmp_path / "conversions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("contact_id", "event", "timestamp", "value"))
        writer.writerows((*e, "") for e in events)
    loaded = load_campaign(write_campaign(tmp_path, MEASUREMENT))
    return build_report(loaded, tmp_path / "out", tmp_path / "conversions.csv")


def test_counts_checks_and_flags(tmp_path):
    built = _experiment(tmp_path)
    report = built.report
    assert report.days == 3 and report.contacts == {"test": 810, "control": 660}
    overall = report.cut("hire", "overall").final.cumulative
    assert (overall.n_test, overall.conv_test, overall.n_control, overall.conv_control) == (810, 132, 660, 65)

    big = report.cut("hire", "segment=big")
    assert big.final.cumulative.uplift == pytest.approx(1.0)
    assert not big.small and not big.srm_mismatch and big.q_value is not None

    skewed = report.cut("hire", "segment=skewed")
    assert skewed.srm_p == pytest.approx(chi_square_p_value(300, 150, 0.5)) and skewed.srm_mismatch

    tiny = report.cut("hire", "segment=tiny")
    assert tiny.small and tiny.final.cumulative.uplift is None
    assert "no control conversions" in tiny.final.cumulative.note
    assert tiny.final.anytime.uplift_low is None and tiny.final.anytime.diff_low is not None

    # Pairs of dimensions: shown when both groups have 50+, hidden (and counted) otherwise.
    assert report.cut("hire", "country=US & segment=big") is not None
    assert report.cut("hire", "country=US & segment=tiny") is None and report.hidden_pairs >= 2
    assert report.of_dimension("hire", "segment")[0].key == "segment=big"  # largest first


def test_daily_and_cumulative_series(tmp_path):
    big = _experiment(tmp_path).report.cut("hire", "segment=big")
    # Converters on days 0, 1, 2 in turn: test 34/33/33, control 17/17/16.
    assert [p.cumulative.conv_test for p in big.days] == [34, 67, 100]
    assert [p.daily.conv_test for p in big.days] == [34, 33, 33]
    assert [p.daily.n_test for p in big.days] == [500, 466, 433]  # at risk: not converted before the day
    assert [p.daily.n_control for p in big.days] == [500, 483, 466]
    anytime_p = [p.anytime_p for p in big.days]
    assert anytime_p == sorted(anytime_p, reverse=True)  # running minimum
    for point in big.days:  # the always-valid interval is wider than the fixed-horizon one
        assert point.anytime.uplift_low < point.cumulative.uplift_low
        assert point.anytime.uplift_high > point.cumulative.uplift_high


def test_spend_ranking_with_costs(tmp_path):
    report = _experiment(tmp_path).report
    segments = [r for r in report.recommendations if r.dimension == "segment"]
    assert [r.cut for r in segments] == ["segment=big", "segment=skewed", "segment=tiny"]  # tiny: small, last
    big = segments[0]
    assert big.per_contact == pytest.approx(0.1) and big.cost_per_contact == pytest.approx(2.1)
    assert big.per_cost == pytest.approx(0.1 / 2.1) and big.verdict == "positive"
    assert big.cost_per_incremental == pytest.approx(21.0)
    treatments = [r for r in report.recommendations if r.dimension == "treatment"]
    # email: +0.95 points for 0.1 per contact beats email+facebook: +10 points for 2.1 per contact.
    assert [r.cut for r in treatments] == ["treatment=email", "treatment=email+facebook"]
    assert treatments[0].per_cost == pytest.approx((32 / 310 - 15 / 160) / 0.1)
    assert all(r.dimension != "treatment" or "(none)" not in r.cut for r in report.recommendations)


def test_output_files_are_strict_json_and_csv(tmp_path):
    built = _experiment(tmp_path)
    text = built.files["json"].read_text()

    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data["campaign"] == CAMPAIGN_ID and data["recommendations"]
    tiny = next(c for c in data["cuts"] if c["cut"] == "segment=tiny")
    assert tiny["uplift"] is None and len(tiny["days"]) == 3
    with built.files["summary"].open() as handle:
        summary = list(csv.DictReader(handle))
    assert {row["cut"] for row in summary} >= {"overall", "segment=big", "country=US"}
    with built.files["daily"].open() as handle:
        assert sum(1 for row in csv.DictReader(handle) if row["cut"] == "overall") == 3


def test_variant_cuts_compare_with_the_control_email_would_reach(tmp_path):
    report = _experiment(tmp_path, variants=True).report
    variants = report.of_dimension("hire", "variant")
    assert [v.key for v in sorted(variants, key=lambda v: v.key)] == ["variant=A", "variant=B"]
    for cut in variants:
        assert not cut.randomized and cut.srm_p is None
        # Every control contact was reachable by email here, so each variant is compared with all of them.
        assert cut.final.cumulative.n_test == 405 and cut.final.cumulative.n_control == 660
    assert any("would have reached" in note for note in report.notes)
