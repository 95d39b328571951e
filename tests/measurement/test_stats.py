"""The fixed-horizon statistics agree with statsmodels and SciPy, and refuse to make up numbers."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from crm_activation.measurement.stats import benjamini_hochberg, compare, z_critical
from crm_activation.pipeline.holdout import chi_square_p_value

CASES = [
    (120, 1000, 100, 1000),
    (37, 512, 21, 498),
    (5021, 60000, 4410, 59000),
    (3, 40, 9, 45),
    (998, 1000, 990, 1000),
    (1, 10_000, 2, 10_000),
]


@pytest.mark.parametrize(("x_t", "n_t", "x_c", "n_c"), CASES)
def test_z_test_matches_statsmodels(x_t, n_t, x_c, n_c):
    z, p = proportions_ztest([x_t, x_c], [n_t, n_c])
    ours = compare(x_t, n_t, x_c, n_c)
    assert ours.z == pytest.approx(z, abs=1e-6)
    assert ours.p_value == pytest.approx(p, abs=1e-6)


@pytest.mark.parametrize(("x_t", "n_t", "x_c", "n_c"), CASES)
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
def test_intervals_match_statsmodels(x_t, n_t, x_c, n_c, alpha):
    ours = compare(x_t, n_t, x_c, n_c, alpha)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff", alpha=alpha)
    assert (ours.diff_low, ours.diff_high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="log", compare="ratio", alpha=alpha)
    assert ours.uplift_low == pytest.approx(low - 1, abs=1e-6)
    assert ours.uplift_high == pytest.approx(high - 1, abs=1e-6)
    assert ours.uplift == pytest.approx((x_t / n_t) / (x_c / n_c) - 1, abs=1e-12)
    assert ours.incremental == pytest.approx((x_t / n_t - x_c / n_c) * n_t, abs=1e-9)


def test_critical_value_and_chi_square_match_scipy():
    for alpha in (0.05, 0.01, 0.2):
        assert z_critical(alpha) == pytest.approx(scipy_stats.norm.isf(alpha / 2), abs=1e-9)
    for test, control in ((5000, 5100), (480, 520), (10, 30)):
        expected = scipy_stats.chisquare([test, control], [(test + control) / 2] * 2).pvalue
        assert chi_square_p_value(test, control, 0.5) == pytest.approx(expected, abs=1e-9)


def test_benjamini_hochberg_matches_statsmodels():
    p_values = [0.001, 0.2, 0.03, 0.04, 0.5, 0.0001, 0.049, 0.9]
    expected = multipletests(p_values, method="fdr_bh")[1]
    assert benjamini_hochberg(p_values) == pytest.approx(list(expected), abs=1e-12)
    assert benjamini_hochberg([0.01, None, 0.04]) == [0.02, None, 0.04]


def test_zero_control_conversions_are_not_estimable_not_infinite():
    result = compare(7, 500, 0, 500)
    assert result.uplift is None and result.uplift_low is None and result.uplift_high is None
    assert "no control conversions" in result.note
    assert result.diff == pytest.approx(7 / 500)
    assert math.isfinite(result.p_value)


def test_zero_test_conversions_give_minus_100_percent_without_an_interval():
    result = compare(0, 500, 6, 500)
    assert result.uplift == -1.0
    assert result.uplift_low is None and "no test conversions" in result.note


def test_nobody_converted_is_no_evidence():
    result = compare(0, 100, 0, 100)
    assert result.p_value == 1.0 and result.z == 0.0 and result.uplift is None


def test_empty_group_and_impossible_counts():
    assert compare(0, 0, 3, 10).note == "no test contacts"
    with pytest.raises(ValueError):
        compare(11, 10, 0, 10)
