"""The answer first: per KPI a plain verdict on the overall uplift, and the spend advice in words.

Campaign managers decide from the top of the report, so it must say in one sentence per KPI what the
experiment found and how sure it is, before any table:

- *raised* / *lowered*: the interval excludes zero and the test was large enough to detect a plausible effect;
- *no detectable effect*: the interval contains zero although an uplift of `PLAUSIBLE_UPLIFT` would probably
  have shown (the sentence says how large an effect would have);
- *too few contacts to conclude*: at this size only an effect far larger than campaigns usually have would
  reliably show. A "significant" result from such a test is flagged too, because small tests overstate the
  effects they happen to detect (Gelman and Carlin 2014, type M error); the sentence says how many contacts per
  group a conclusive test needs.

The interval quoted is the fixed-horizon one once the measurement window is complete (one final look), and the
always-valid one before (the report may be read every day); the sentence names which.

The spend advice sorts each segment, country and treatment into *grow* (the interval of incremental conversions
per contact — per unit of cost when `costs` are configured — is above zero, and its Benjamini-Hochberg q-value
below alpha, so it stays clear after correcting for the dozens of cuts compared), *cut* (likewise below zero)
and *hold* (unclear, or too small a cut to say), from the ranking in `recommend.py`. When the KPI's overall
verdict is "too few contacts to conclude", its sub-groups are smaller still: the advice is to hold everything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import NormalDist

from . import fmt
from .recommend import Recommendation
from .results import CutResult

#: The relative uplift a test should be able to detect to conclude anything: campaign effects are rarely larger.
PLAUSIBLE_UPLIFT = 0.25
#: Power at which "would have been detected" is computed (the usual 80%).
POWER = 0.8
#: Dimensions the spend advice covers (pairs stay in the ranking table).
ADVISED = ("segment", "country", "treatment")

RAISED, LOWERED, NO_EFFECT, TOO_FEW = "raised", "lowered", "no detectable effect", "too few contacts to conclude"


@dataclass(frozen=True)
class KpiVerdict:
    """The headline of one KPI.

    Attributes:
        kpi: the KPI.
        verdict: one of "raised", "lowered", "no detectable effect", "too few contacts to conclude".
        sentence: the verdict in words, with the uplift and its interval.
        uplift: the overall relative uplift (None when not estimable).
        low: lower end of the quoted interval.
        high: upper end of the quoted interval.
        interval: "fixed-horizon" (window complete) or "always-valid" (window still running).
        detectable: the smallest relative uplift this test detects with 80% power (None: no conversions).
        needed_per_group: contacts per group needed to detect `PLAUSIBLE_UPLIFT` (None: no conversions).
    """

    kpi: str
    verdict: str
    sentence: str
    uplift: float | None
    low: float | None
    high: float | None
    interval: str
    detectable: float | None
    needed_per_group: int | None


@dataclass(frozen=True)
class SpendAdvice:
    """Grow, hold and cut for one KPI, with the sentence that says it."""

    kpi: str
    grow: list[str]
    hold: list[str]
    cut: list[str]
    sentence: str


@dataclass
class Summary:
    """What the report leads with."""

    verdicts: list[KpiVerdict] = field(default_factory=list)
    spend: list[SpendAdvice] = field(default_factory=list)
    per_cost: bool = False


def detectable_uplift(rate: float, n_test: int, n_control: int, alpha: float, power: float = POWER) -> float | None:
    """The smallest relative uplift a two-sided test at `alpha` detects with `power`, at base rate `rate`."""
    if rate <= 0 or rate >= 1 or n_test <= 0 or n_control <= 0:
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return z * math.sqrt(rate * (1 - rate) * (1 / n_test + 1 / n_control)) / rate


def needed_per_group(rate: float, uplift: float, alpha: float, power: float = POWER) -> int | None:
    """Contacts per group (equal groups) to detect a relative `uplift` on base rate `rate`."""
    treated = rate * (1 + uplift)
    if rate <= 0 or treated >= 1:
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return math.ceil(z**2 * (rate * (1 - rate) + treated * (1 - treated)) / (treated - rate) ** 2)


def summarise(
    overall: Mapping[str, CutResult | None], recommendations: list[Recommendation], alpha: float,
    window_complete: bool,
) -> Summary:
    """The verdict of every KPI and the spend advice.

    Args:
        overall: KPI → its overall cut (in the campaign's KPI order; None when there are no contacts).
        recommendations: the spend ranking (`recommend.recommend`).
        alpha: 1 - the intervals' confidence level.
        window_complete: whether the measurement window is over (the verdict then uses the fixed-horizon interval).
    """
    summary = Summary(per_cost=any(r.per_cost is not None for r in recommendations))
    for kpi, cut in overall.items():
        verdict = _verdict(kpi, cut, alpha, window_complete)
        summary.verdicts.append(verdict)
        rows = [r for r in recommendations if r.kpi == kpi and r.dimension in ADVISED]
        if verdict.verdict == TOO_FEW:
            sentence = (f"{kpi}: hold everything: too few contacts to tell segments, countries or treatments apart "
                        "(the whole test cannot conclude; its sub-groups are smaller still).")
            summary.spend.append(SpendAdvice(kpi, [], [r.cut for r in rows], [], sentence))
        else:
            summary.spend.append(_advice(kpi, rows, summary.per_cost, alpha))
    return summary


def _verdict(kpi: str, overall: CutResult | None, alpha: float, complete: bool) -> KpiVerdict:
    level = round(100 * (1 - alpha))
    kind = "fixed-horizon" if complete else "always-valid"
    if overall is None:
        return KpiVerdict(kpi, TOO_FEW, f"{kpi}: {TOO_FEW} (no contacts).", None, None, None, kind, None, None)
    c, a = overall.final.cumulative, overall.final.anytime
    low, high = (c.uplift_low, c.uplift_high) if complete else (a.uplift_low, a.uplift_high)
    n = c.n_test + c.n_control
    rate = (c.conv_test + c.conv_control) / n if n else 0.0
    detectable = detectable_uplift(rate, c.n_test, c.n_control, alpha)
    needed = needed_per_group(rate, PLAUSIBLE_UPLIFT, alpha) if rate else None
    span = f"{level}% CI {_pct(low)} to {_pct(high)}, {kind}"
    estimate = f"{_pct(c.uplift)} ({span})"
    if c.uplift is None or low is None or high is None or detectable is None:
        reason = "no conversions yet" if not rate else "no conversions in the control group yet"
        verdict, sentence = TOO_FEW, f"{kpi}: {TOO_FEW} ({reason}; {c.n_test:,} test / {c.n_control:,} control)."
    elif detectable > PLAUSIBLE_UPLIFT:
        significant = low > 0 or high < 0
        caveat = (" The interval excludes zero, but a test this small overstates the effects it detects."
                  if significant else "")
        need = f" About {needed:,} contacts per group are needed to detect a {_pct(PLAUSIBLE_UPLIFT, False)} uplift." \
            if needed else ""
        verdict = TOO_FEW
        sentence = (
            f"{kpi}: {TOO_FEW}. Estimated uplift {estimate}; with {c.n_test:,} test and {c.n_control:,} control "
            f"contacts only an uplift above {_pct(detectable, False)} would reliably show.{caveat}{need}"
        )
    elif low > 0:
        verdict = RAISED
        sentence = f"The campaign raised {kpi} by {_pct(c.uplift, False)} ({span})."
    elif high < 0:
        verdict = LOWERED
        sentence = f"The campaign lowered {kpi} by {_pct(-c.uplift, False)} ({span})."
    else:
        verdict = NO_EFFECT
        sentence = (
            f"{kpi}: {NO_EFFECT}. Estimated uplift {estimate}; an uplift of {_pct(detectable, False)} or more "
            "would probably have shown."
        )
    return KpiVerdict(kpi, verdict, sentence, c.uplift, low, high, kind, detectable, needed)


def _advice(kpi: str, rows: list[Recommendation], per_cost: bool, alpha: float) -> SpendAdvice:
    def clear(r: Recommendation) -> bool:
        return not r.small and (r.q_value is None or r.q_value < alpha)

    grow = [r for r in rows if r.verdict == "positive" and clear(r)]
    cut = [r for r in rows if r.verdict == "negative" and clear(r)]
    hold = [r for r in rows if r not in grow and r not in cut]
    key = (lambda r: r.per_cost or 0.0) if per_cost else (lambda r: r.per_contact or 0.0)
    grow.sort(key=key, reverse=True)
    cut.sort(key=key)
    unit = "per 1,000 spent" if per_cost else "per 1,000 contacts"
    parts = []
    if grow:
        parts.append("grow " + "; ".join(_named(r, per_cost) for r in grow))
    if cut:
        parts.append("cut " + "; ".join(_named(r, per_cost) for r in cut))
    if hold and (grow or cut):
        parts.append(f"hold the other {len(hold)} (no clear effect yet)")
    elif hold:
        parts.append(f"hold: no segment, country or treatment has a clear effect on {kpi} yet")
    sentence = f"{kpi} ({unit}): " + "; ".join(parts) + "." if parts else f"{kpi}: nothing to rank."
    return SpendAdvice(kpi, [r.cut for r in grow], [r.cut for r in hold], [r.cut for r in cut], sentence)


def _named(r: Recommendation, per_cost: bool) -> str:
    value, low, high = (r.per_cost, r.per_cost_low, r.per_cost_high) if per_cost else (
        r.per_contact, r.per_contact_low, r.per_contact_high)
    return f"{r.cut} ({_thousand(value)} [{_thousand(low)}, {_thousand(high)}])"


def _thousand(value: float | None) -> str:
    return fmt.NOT_ESTIMABLE if value is None else f"{value * 1000:+,.1f}"


def _pct(value: float | None, signed: bool = True) -> str:
    if value is None:
        return fmt.NOT_ESTIMABLE
    if value > 10:
        return ">+1000%" if signed else ">1000%"
    return fmt.pct(value, 0, signed)
