"""Simulated campaigns with a known true uplift: for the tests that check the statistics, and for the demo.

The default spec is Upwork-like: clients in 25 countries (the US first), three segments by prospect quality,
treatments from "email" to "dv360+email+facebook+linkedin" by country, and three KPIs over 30 days whose true
relative uplift depends on the segment (strongest for high-potential prospects) and grows with the number of
channels offered. A contact offered no channel has no uplift: the campaign cannot act on it.

`spec_for_campaign` follows a real campaign instead: its countries (`channels.countries`), its segments, the
treatment each country and segment is offered by its `channels` plan (the same rules as a run), its funnel
stages, and its e-mail sequences: each test contact offered e-mail gets, per step of its stage's sequence, the
variant the e-mail channel would draw (`email.sequences.assign_variant`), recorded in an `email_sends` table
so the report can cut by variant. Variants differ in truth: a step's first variant delivers the full uplift,
each later one 30 points less (at least 40%), so a variant comparison has something to find.

Each contact converts on a KPI with probability p (control) or p * (1 + uplift) (test), independently of the
other KPIs, at a time drawn from an exponential delay (mean `delay_days`) cut at the window's end. The truth
of any cut is therefore the ratio of its contacts' expected rates, computed by `expected_uplift`.

Python 3.11 has no binomial sampler; `binomial` draws exactly by skipping geometric gaps between successes,
which costs O(n * min(p, 1 - p)) and is fast for conversion rates.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..campaign.email_settings import VariantConfig
from ..campaign.schema import EMAIL_CHANNEL, Campaign
from ..email.ledger import SCHEMA as EMAIL_SCHEMA
from ..email.sequences import assign_variant
from ..pipeline.holdout import assign_group
from ..state.store import StateStore
from .ledger import NONE_LABEL, Exposure

#: (step number, template, ((variant name, weight), ...)) of one e-mail sequence step.
EmailStep = tuple[int, str, tuple[tuple[str, float], ...]]

DAY = 86_400.0


@dataclass(frozen=True)
class KpiTruth:
    """A KPI's base rate over the window and its true relative uplift per segment (with a full treatment)."""

    name: str
    base_rate: float
    uplift: dict[str, float]
    value: float = 0.0

    def uplift_for(self, segment: str) -> float:
        """The segment's uplift; unknown segments get the middle one of the spec."""
        if segment in self.uplift:
            return self.uplift[segment]
        ordered = sorted(self.uplift.values())
        return ordered[len(ordered) // 2] if ordered else 0.0


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate (see the module docstring); the defaults are the Upwork-like demo campaign."""

    countries: tuple[tuple[str, float], ...] = (
        ("US", 40), ("GB", 8), ("CA", 6), ("AU", 6), ("IN", 5), ("DE", 4), ("FR", 3), ("NL", 2.5), ("ES", 2),
        ("IT", 2), ("BR", 2), ("MX", 1.5), ("SE", 1.5), ("IE", 1.5), ("CH", 1.5), ("BE", 1.2), ("DK", 1.2),
        ("NO", 1.2), ("FI", 1), ("AT", 1), ("PT", 1), ("PL", 1), ("SG", 1.5), ("NZ", 1.2), ("JP", 1.5),
    )
    segments: tuple[tuple[str, float, float], ...] = (
        ("high_potential", 0.2, 1.8), ("medium_potential", 0.35, 1.0), ("low_potential", 0.45, 0.5),
    )
    kpis: tuple[KpiTruth, ...] = (
        KpiTruth("account_created", 0.06, {"high_potential": 0.8, "medium_potential": 0.35, "low_potential": 0.15}),
        KpiTruth("first_job_post", 0.03, {"high_potential": 0.3, "medium_potential": 0.15, "low_potential": 0.05}),
        KpiTruth("hire", 0.012, {"high_potential": 0.2, "medium_potential": 0.08, "low_potential": 0.02}, 450.0),
    )
    treatments: dict[str, str] = field(
        default_factory=lambda: {
            **dict.fromkeys(("US", "CA", "GB", "AU"), "dv360+email+facebook+linkedin"),
            **dict.fromkeys(("DE", "FR", "NL", "ES", "IT", "IE", "SE"), "email+facebook"),
        }
    )
    default_treatment: str = "email"
    days: int = 30
    delay_days: float = 10.0
    control_fraction: float = 0.5
    #: (country, segment) → the `+`-joined platforms offered; when set, it replaces `treatments`.
    offers: dict[tuple[str, str], str] = field(default_factory=dict)
    stages: tuple[str, ...] = ("awareness",)
    #: funnel stage → its e-mail steps with variants (only steps that have variants).
    email_steps: dict[str, tuple[EmailStep, ...]] = field(default_factory=dict)
    #: variant name → share of the full uplift it delivers.
    variant_effects: dict[str, float] = field(default_factory=dict)

    def treatment(self, country: str, segment: str) -> str:
        """The `+`-joined platforms a country and segment are offered ("" for none)."""
        if self.offers:
            return self.offers.get((country, segment), "")
        return self.treatments.get(country, self.default_treatment)

    def variant_factor(self, variant: str | None) -> float:
        """The share of the uplift a contact's variant(s) deliver (1 without a variant)."""
        factor = 1.0
        for name in (variant or "").split("+"):
            factor *= self.variant_effects.get(name, 1.0) if name else 1.0
        return factor

    def country_rate(self, country: str) -> float:
        """A fixed per-country multiplier of the base rates (0.75 to 1.25), so countries differ."""
        return 0.75 + (sum(map(ord, country)) % 11) / 20

    def kpi(self, name: str) -> KpiTruth:
        """The truth of a KPI; a name the spec does not know gets a generic one (3%, +30/15/5%)."""
        for kpi in self.kpis:
            if kpi.name == name:
                return kpi
        names = [s[0] for s in self.segments]
        return KpiTruth(name, 0.03, dict(zip(names, (0.3, 0.15, 0.05), strict=False)))


def strength(treatment: str) -> float:
    """How much of a segment's full uplift a treatment delivers: 0 with no channel, 0.6 with one, +0.3 each."""
    if not treatment or treatment == NONE_LABEL:
        return 0.0
    return min(1.5, 0.6 + 0.3 * (len(treatment.split("+")) - 1))


def rates(spec: SimulationSpec, kpi: KpiTruth, exposure: Exposure) -> tuple[float, float]:
    """A contact's true (control, test) probability of converting within the window."""
    segment_rate = next((mult for name, _, mult in spec.segments if name == exposure.segment), 1.0)
    p_control = min(0.9, kpi.base_rate * segment_rate * spec.country_rate(exposure.country))
    uplift = kpi.uplift_for(exposure.segment) * strength(exposure.treatment) * spec.variant_factor(exposure.variant)
    return p_control, min(1.0, p_control * (1.0 + uplift))


def expected_uplift(
    spec: SimulationSpec, kpi: str, contacts: Iterable[Exposure], where: Callable[[Exposure], bool] | None = None
) -> float:
    """The true relative uplift of a cut: its contacts' summed test rates over their summed control rates."""
    truth = spec.kpi(kpi)
    total_t = total_c = 0.0
    for exposure in contacts:
        if where is None or where(exposure):
            p_c, p_t = rates(spec, truth, exposure)
            total_c += p_c
            total_t += p_t
    return total_t / total_c - 1.0 if total_c else 0.0


def binomial(rng: random.Random, n: int, p: float) -> int:
    """An exact Binomial(n, p) draw: count successes by jumping geometric gaps between them."""
    if n <= 0 or p <= 0.0:
        return 0
    if p >= 1.0:
        return n
    if p > 0.5:
        return n - binomial(rng, n, 1.0 - p)
    log_q = math.log1p(-p)
    successes, position = 0, 0
    while True:
        position += int(math.log(1.0 - rng.random()) / log_q) + 1
        if position > n:
            return successes
        successes += 1


def delay_cdf(day: float, spec_days: int, delay_days: float) -> float:
    """Share of a window's conversions that happen by `day` (exponential delay cut at the window's end)."""
    return (1.0 - math.exp(-day / delay_days)) / (1.0 - math.exp(-spec_days / delay_days))


def daily_counts(
    rng: random.Random, n: int, p_total: float, days: int = 30, delay_days: float = 10.0
) -> list[int]:
    """Cumulative converters per day of a group of n contacts who each convert within `days` with p_total.

    Counts only (no contacts), so thousands of repeated experiments take a fraction of a second.
    """
    remaining, total, previous, out = n, 0, 0.0, []
    for day in range(1, days + 1):
        share = delay_cdf(day, days, delay_days)
        hazard = (share - previous) * p_total / (1.0 - p_total * previous)
        previous = share
        new = binomial(rng, remaining, hazard)
        remaining -= new
        total += new
        out.append(total)
    return out


def simulate_ledger(spec: SimulationSpec, n_contacts: int, campaign: str, seed: int = 1) -> list[tuple[Any, ...]]:
    """Ledger rows (contact_id, group, country, segment, offered, reachable, funnel_stage) of a campaign.

    Groups come from the project's own hash assignment (salt = campaign id), as in a real run; the treatment
    from the spec's channel plan, the stage uniformly from the spec's funnel stages.
    """
    rng = random.Random(seed)
    countries = [c for c, _ in spec.countries]
    weights = [w for _, w in spec.countries]
    segments = [s for s, _, _ in spec.segments]
    shares = [share for _, share, _ in spec.segments]
    rows = []
    for i in range(n_contacts):
        contact_id = f"sim-{i:07d}"
        country = rng.choices(countries, weights)[0]
        segment = rng.choices(segments, shares)[0]
        offered = spec.treatment(country, segment)
        group = assign_group(campaign, contact_id, spec.control_fraction).value
        stage = spec.stages[0] if len(spec.stages) == 1 else rng.choice(spec.stages)
        rows.append((contact_id, group, country, segment, offered, offered, stage))
    return rows


def spec_for_campaign(campaign: Campaign, days: int) -> SimulationSpec:
    """The default truths on the campaign's own countries, segments, channel plan, stages and e-mail variants.

    Countries and segments the default spec knows keep its weights and rates; others get weight 1 (countries)
    or an equal share and rate 1 (segments). A campaign without segments puts everyone in its default segment,
    as a run does. The offer per country and segment follows `pipeline.eligibility.ChannelRules.offered`: the
    country's rule (or `default`), narrowed by the segment's `by_segment` list, limited to configured platforms.
    """
    base = SimulationSpec(days=days)
    channels = campaign.channels
    known = dict(base.countries)
    names = list(channels.countries) if channels.countries is not None else [c for c, _ in base.countries]
    for rule in channels.by_country:
        names += [c for c in rule.countries if c not in names and channels.countries is None]
    countries = tuple((c, known.get(c, 1.0)) for c in names)
    segment_names = [rule.name for rule in campaign.segments] or [campaign.default_segment]
    known_segments = {name: (share, mult) for name, share, mult in base.segments}
    segments = tuple(
        (name, *known_segments.get(name, (1.0 / len(segment_names), 1.0))) for name in segment_names
    )
    enabled = set(campaign.platforms) | ({EMAIL_CHANNEL} if campaign.email is not None else set())
    by_country: dict[str, tuple[str, ...]] = {}
    for rule in channels.by_country:
        for country in rule.countries:
            by_country.setdefault(country, rule.platforms)
    offers = {}
    for country, _ in countries:
        for segment, _, _ in segments:
            platforms = by_country.get(country, channels.default)
            narrowed = channels.by_segment.get(segment)
            if narrowed is not None:
                platforms = tuple(p for p in platforms if p in narrowed)
            offers[(country, segment)] = "+".join(p for p in platforms if p in enabled)
    steps: dict[str, tuple[EmailStep, ...]] = {}
    effects: dict[str, float] = {}
    if campaign.email is not None:
        for stage, sequence in campaign.email.sequences.items():
            chosen = []
            for number, step in enumerate(sequence, start=1):
                if step.variants:
                    chosen.append((number, step.template, tuple((v.name, v.weight) for v in step.variants)))
                for index, variant in enumerate(step.variants):
                    effects.setdefault(variant.name, max(0.4, 1.0 - 0.3 * index))
            if chosen:
                steps[stage] = tuple(chosen)
    return SimulationSpec(
        countries=countries, segments=segments, days=days, offers=offers, stages=tuple(campaign.funnel.stages),
        email_steps=steps, variant_effects=effects,
    )


def simulate_email_sends(
    spec: SimulationSpec, rows: Iterable[tuple[Any, ...]], campaign: str
) -> list[tuple[str, str, int, str, str]]:
    """The e-mails a run would send the simulated test contacts: (contact_id, stage, step, template, variant).

    Only steps with variants (the rest carry nothing to measure); variants drawn by the e-mail channel's own
    `assign_variant`, so their shares follow the configured weights exactly as in a run.
    """
    sends = []
    for contact_id, group, _country, _segment, offered, _reachable, stage in rows:
        if group != "test" or EMAIL_CHANNEL not in str(offered).split("+"):
            continue
        for number, template, variants in spec.email_steps.get(stage, ()):
            configs = [VariantConfig(name=name, weight=weight) for name, weight in variants]
            sends.append((contact_id, stage, number, template, assign_variant(campaign, contact_id, stage, number,
                                                                               configs)))
    return sends


def write_email_sends(store: StateStore, campaign: str, sends: Sequence[tuple[str, str, int, str, str]],
                      sent_at: float) -> None:
    """Record simulated sends in the state database's `email_sends` table (created if missing), as sent."""
    store.db.apply_schema(EMAIL_SCHEMA)
    store.db.executemany(
        "INSERT INTO email_sends (campaign, contact_id, stage, step, template, variant, status, message_id, "
        "attempts, attempted_at, sent_at, detail) VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, 1, ?, ?, 'simulated')",
        [(campaign, cid, stage, step, template, variant, f"<sim-{cid}-{stage}-{step}@simulated>", sent_at, sent_at)
         for cid, stage, step, template, variant in sends],
    )


def write_ledger(store: StateStore, campaign: str, rows: Sequence[tuple[Any, ...]], started_at: float) -> str:
    """Record simulated ledger rows in a state database under one run that started at `started_at`."""
    run_id = "sim-" + dt.datetime.fromtimestamp(started_at, dt.UTC).strftime("%Y%m%dT%H%M%S")
    store.db.execute(
        "INSERT INTO runs (run_id, campaign, mode, started_at, finished_at, status) "
        "VALUES (?, ?, 'simulated', ?, ?, 'succeeded') ON CONFLICT (run_id) DO UPDATE SET "
        "started_at=excluded.started_at, finished_at=excluded.finished_at",
        (run_id, campaign, started_at, started_at),
    )
    store.record_holdout(campaign, run_id, rows)
    return run_id


def simulate_events(
    spec: SimulationSpec, contacts: Iterable[Exposure], kpis: Sequence[str], start: float, seed: int = 1,
    noise: float = 0.0, events: Sequence[str] | None = None,
) -> list[tuple[str, str, str, str]]:
    """Conversion events (contact_id, event, ISO timestamp, value) for a ledger, with the spec's true uplift.

    Args:
        spec: the truth.
        contacts: the ledger's contacts (test contacts get the uplift).
        kpis: KPI names.
        events: the event name written for each KPI (default: the KPI's name).
        start: Unix time of day 0.
        seed: random seed (the same seed gives the same events).
        noise: share of extra bad rows (unknown event, contact not in the experiment, bad timestamp), so a
            demo shows how rejects are reported; they do not change the truth.

    Returns:
        Events in time order, then the noise rows.
    """
    rng = random.Random(seed)
    truths = list(zip([spec.kpi(name) for name in kpis], events or kpis, strict=True))
    end = start + spec.days * DAY
    drawn: list[tuple[float, str, str, str]] = []
    for exposure in contacts:
        for truth, event in truths:
            p_control, p_test = rates(spec, truth, exposure)
            if rng.random() >= (p_test if exposure.group == "test" else p_control):
                continue
            span = max(end - exposure.entered_at, 1.0) / DAY
            cut = 1.0 - math.exp(-span / spec.delay_days)
            delay = -spec.delay_days * math.log(1.0 - rng.random() * cut)
            # Whole seconds, rounded up: a timestamp must never fall before its contact's entry.
            moment = min(math.ceil(exposure.entered_at + delay * DAY), math.floor(end - 1.0))
            value = f"{rng.expovariate(1 / truth.value):.2f}" if truth.value else ""
            drawn.append((moment, exposure.contact_id, event, value))
    drawn.sort()
    rows = [(cid, event, _iso(moment), value) for moment, cid, event, value in drawn]
    for i in range(int(len(rows) * noise)):
        kind = i % 3
        when = _iso(start + rng.random() * spec.days * DAY)
        if kind == 0:
            rows.append((f"not-in-campaign-{i}", truths[0][1], when, ""))
        elif kind == 1:
            rows.append((rows[i][0], "newsletter_open", when, ""))
        else:
            rows.append((rows[i][0], truths[0][1], "yesterday-ish", ""))
    return rows


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_events(path: Path, rows: Iterable[tuple[str, str, str, str]]) -> int:
    """Write events as the conversions CSV the report reads; returns the number of rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("contact_id", "event", "timestamp", "value"))
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def truth_table(spec: SimulationSpec, contacts: Sequence[Exposure], kpis: Sequence[str]) -> dict[str, Any]:
    """The true relative uplift of every KPI overall and per segment, treatment, country and variant."""
    out: dict[str, Any] = {}
    for kpi in kpis:
        truth = spec.kpi(kpi)
        sums: dict[str, list[float]] = {}
        for exposure in contacts:
            p_control, p_test = rates(spec, truth, exposure)
            keys = ["overall", *(f"{d}={getattr(exposure, d)}" for d in ("segment", "treatment", "country"))]
            if exposure.variant:
                keys.append(f"variant={exposure.variant}")
            for key in keys:
                total = sums.setdefault(key, [0.0, 0.0])
                total[0] += p_test
                total[1] += p_control
        out[kpi] = {key: t / c - 1.0 if c else 0.0 for key, (t, c) in sorted(sums.items(), key=_overall_first)}
    return out


def _overall_first(item: tuple[str, Any]) -> tuple[bool, str]:
    return item[0] != "overall", item[0]
