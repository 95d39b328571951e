"""Always-valid (anytime) intervals: confidence sequences that stay valid however often the report is read.

A team that reads the daily report and stops when a cut "looks significant" runs many tests; with fixed
horizon intervals its false-positive rate grows with every look (Armitage et al. 1969). A confidence sequence
covers the truth at *every* look simultaneously with probability 1 - alpha, so stopping at any day, for any
reason, keeps the error rate at alpha.

Method: the two-sided normal-mixture boundary (Robbins 1970; Howard, Ramdas, McAuliffe and Sekhon 2021,
"Time-uniform, nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2); the same martingale
as the mixture SPRT of Johari, Koomen, Pekelis and Walsh 2022, "Always valid inference", Oper. Res. 70(3)).
For a process S with intrinsic time (variance) V that behaves like Brownian motion, the mixture martingale
over lambda ~ N(0, 1/rho),

    M = sqrt(rho / (V + rho)) * exp(S^2 / (2 (V + rho))),

exceeds 1/alpha with probability at most alpha (Ville's inequality), which gives the boundary
|S| < sqrt((V + rho) * log((V + rho) / (rho * alpha^2))) at every V at once. The counts are large, so S is
approximately Gaussian: this is the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy and
Ramdas (2024, "Time-uniform central limit theory and asymptotic confidence sequences", Ann. Statist. 52(6)).
The full derivation and its assumptions are in docs/measurement.md.

Here the sample is (mostly) fixed on day 0 and the outcomes accumulate: the process grows with conversions.

- Difference of rates: S = n_eff * (rate_t - rate_c), n_eff = n_t n_c / (n_t + n_c), V = n_eff^2 * Var(diff).
  lambda is then diff / (p (1 - p)), about the relative uplift for small rates.
- Relative uplift: S = log(ratio) / v, V = 1 / v, with v the delta-method variance of log(ratio);
  lambda is the log ratio itself.

In both, 1/sqrt(rho) = PRIOR_EFFECT is the scale of effects the mixture is tuned for (about +-30% relative).
It is fixed before seeing data, as the guarantee requires; the width depends on it only logarithmically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Mixture scale: relative effects of about this size are detected soonest (1 / sqrt(rho)).
PRIOR_EFFECT = 0.3


def mixture_radius(intrinsic_time: float, alpha: float, prior_effect: float = PRIOR_EFFECT) -> float:
    """The two-sided normal-mixture boundary for |S| at intrinsic time V."""
    rho = 1.0 / (prior_effect * prior_effect)
    total = intrinsic_time + rho
    return math.sqrt(total * math.log(total / (rho * alpha * alpha)))


def mixture_p_value(statistic: float, intrinsic_time: float, prior_effect: float = PRIOR_EFFECT) -> float:
    """min(1, 1 / M): the look's always-valid p-value for "no effect"; take the running minimum over looks."""
    rho = 1.0 / (prior_effect * prior_effect)
    total = intrinsic_time + rho
    log_m = 0.5 * math.log(rho / total) + statistic * statistic / (2.0 * total)
    return 1.0 if log_m <= 0 else math.exp(-log_m)


@dataclass(frozen=True, slots=True)
class AnytimeInterval:
    """The always-valid intervals of one look (cumulative data up to a day).

    Attributes:
        diff_low: lower end for the difference of rates.
        diff_high: upper end for the difference of rates.
        uplift_low: lower end for the relative uplift (None when a group has no conversions).
        uplift_high: upper end for the relative uplift.
        p_value: the always-valid p-value for "no difference" at this look (not yet minimized over looks).
    """

    diff_low: float | None
    diff_high: float | None
    uplift_low: float | None
    uplift_high: float | None
    p_value: float | None


def anytime_interval(
    conv_test: int, n_test: int, conv_control: int, n_control: int, alpha: float = 0.05,
    prior_effect: float = PRIOR_EFFECT,
) -> AnytimeInterval:
    """The always-valid intervals for the difference and the relative uplift at one look.

    Args:
        conv_test: converted test contacts so far.
        n_test: test contacts so far.
        conv_control: converted control contacts so far.
        n_control: control contacts so far.
        alpha: the error allowed over all looks together.
        prior_effect: the mixture scale (see the module docstring).

    Returns:
        The intervals; None where a group is empty (difference) or has no conversions (relative).
    """
    if n_test == 0 or n_control == 0:
        return AnytimeInterval(None, None, None, None, None)
    rate_t, rate_c = conv_test / n_test, conv_control / n_control
    diff = rate_t - rate_c
    n_eff = n_test * n_control / (n_test + n_control)
    variance = rate_t * (1 - rate_t) / n_test + rate_c * (1 - rate_c) / n_control
    time = n_eff * n_eff * variance
    half = mixture_radius(time, alpha, prior_effect) / n_eff
    p_value = mixture_p_value(n_eff * diff, time, prior_effect)
    if conv_test == 0 or conv_control == 0:
        return AnytimeInterval(diff - half, diff + half, None, None, p_value)
    log_var = 1 / conv_test - 1 / n_test + 1 / conv_control - 1 / n_control
    log_ratio = math.log(rate_t / rate_c)
    info = 1.0 / log_var
    log_half = mixture_radius(info, alpha, prior_effect) / info
    return AnytimeInterval(
        diff - half, diff + half, math.exp(log_ratio - log_half) - 1.0, math.exp(log_ratio + log_half) - 1.0, p_value
    )
