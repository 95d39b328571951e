"""Fixed-horizon statistics for comparing two conversion rates: pure functions on counts, standard library only.

Each comparison answers "how many more test contacts converted than the control group says they would have?":
the two rates, their difference with a Wald interval, the relative uplift with an interval built on the log
scale (the delta method for the log of a ratio, as in Katz et al. 1978), the incremental conversions the
difference implies, and the two-sided p-value of the pooled two-proportion z-test. The formulas match
statsmodels' `proportions_ztest` and `confint_proportions_2indep(method="wald" | "log")`, which the tests
check to 1e-6.

These intervals are valid for one look at a sample fixed in advance. A report read every day needs the
always-valid intervals of `sequential.py` as well; the report labels which is which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


def z_critical(alpha: float) -> float:
    """The two-sided normal critical value for level `alpha` (1.959964 for 0.05)."""
    return _NORMAL.inv_cdf(1.0 - alpha / 2.0)


def two_sided_p(z: float) -> float:
    """The two-sided normal p-value of a z statistic (erfc keeps precision far in the tail)."""
    return math.erfc(abs(z) / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class Comparison:
    """Test against control for one KPI, one cut and one period.

    Fields that cannot be estimated from the counts are None and `note` says why, rather than carrying an
    infinity or a division by zero into a chart or a spend decision.

    Attributes:
        n_test: contacts in the test group (the denominator).
        conv_test: of those, contacts who converted.
        n_control: contacts in the control group.
        conv_control: of those, contacts who converted.
        rate_test: conv_test / n_test.
        rate_control: conv_control / n_control.
        diff: rate_test - rate_control (absolute uplift), with its Wald interval diff_low..diff_high.
        uplift: rate_test / rate_control - 1 (relative uplift), with its log-scale interval.
        incremental: diff * n_test, the conversions the campaign caused in the test group, with interval.
        z: the pooled two-proportion z statistic.
        p_value: its two-sided p-value (1.0 when nobody or everybody converted: no evidence either way).
        note: why a field is None.
    """

    n_test: int
    conv_test: int
    n_control: int
    conv_control: int
    rate_test: float | None = None
    rate_control: float | None = None
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    uplift: float | None = None
    uplift_low: float | None = None
    uplift_high: float | None = None
    incremental: float | None = None
    incremental_low: float | None = None
    incremental_high: float | None = None
    z: float | None = None
    p_value: float | None = None
    note: str = ""


def compare(conv_test: int, n_test: int, conv_control: int, n_control: int, alpha: float = 0.05) -> Comparison:
    """Compare two conversion rates (see the module docstring for the method).

    Args:
        conv_test: converted test contacts.
        n_test: test contacts.
        conv_control: converted control contacts.
        n_control: control contacts.
        alpha: 1 - confidence level of the intervals.

    Returns:
        The comparison; counts of 0 in a group leave the affected fields None with a note.
    """
    if not (0 <= conv_test <= n_test and 0 <= conv_control <= n_control):
        raise ValueError("conversions must be between 0 and the group size")
    if n_test == 0 or n_control == 0:
        empty = "test" if n_test == 0 else "control"
        return Comparison(n_test, conv_test, n_control, conv_control, note=f"no {empty} contacts")
    z_crit = z_critical(alpha)
    rate_t, rate_c = conv_test / n_test, conv_control / n_control
    diff = rate_t - rate_c
    half = z_crit * math.sqrt(rate_t * (1 - rate_t) / n_test + rate_c * (1 - rate_c) / n_control)
    pooled = (conv_test + conv_control) / (n_test + n_control)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n_test + 1 / n_control))
    z = diff / se0 if se0 > 0 else 0.0
    uplift, low, high, note = relative_uplift(conv_test, n_test, conv_control, n_control, z_crit)
    return Comparison(
        n_test, conv_test, n_control, conv_control, rate_t, rate_c,
        diff, diff - half, diff + half,
        uplift, low, high,
        diff * n_test, (diff - half) * n_test, (diff + half) * n_test,
        z, two_sided_p(z) if se0 > 0 else 1.0, note,
    )


def relative_uplift(
    conv_test: int, n_test: int, conv_control: int, n_control: int, z_crit: float
) -> tuple[float | None, float | None, float | None, str]:
    """Relative uplift and its interval from the delta method on log(rate_test / rate_control).

    The variance of the log ratio is 1/x_t - 1/n_t + 1/x_c - 1/n_c. With no control conversion the ratio is
    unbounded, and with no test conversion the log is -inf: neither is reported as a number.

    Returns:
        (uplift, low, high, note); None where not estimable, with the note saying why.
    """
    if conv_control == 0:
        return None, None, None, "no control conversions: relative uplift not estimable"
    ratio = (conv_test / n_test) / (conv_control / n_control)
    if conv_test == 0:
        return ratio - 1.0, None, None, "no test conversions: relative interval not estimable"
    se = math.sqrt(1 / conv_test - 1 / n_test + 1 / conv_control - 1 / n_control)
    log_ratio = math.log(ratio)
    return ratio - 1.0, math.exp(log_ratio - z_crit * se) - 1.0, math.exp(log_ratio + z_crit * se) - 1.0, ""


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg (1995) q-values: the false-discovery-rate analogue of a p-value across many cuts.

    None entries (no test possible) are skipped and stay None.
    """
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    q: list[float | None] = [None] * len(p_values)
    running = 1.0
    for rank in range(m, 0, -1):
        p, i = indexed[rank - 1]
        running = min(running, p * m / rank)
        q[i] = running
    return q
