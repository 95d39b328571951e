"""Sequenced messaging by funnel stage, as pure functions (the ledger in `ledger.py` stores their inputs).

A contact is *enrolled* in the sequence of its current funnel stage on the day it is first seen there. Each
daily run asks `due_step`: the first step of that sequence the contact has not had, if its day has come.

- Never the same step twice: `sent_steps` comes from the send ledger (any terminal row, including a permanent
  failure: a step that bounced is not retried on the next day).
- One email per contact per run, and at least `min_gap_days` between two: a run that missed days catches up
  one step at a time instead of sending three emails at once.
- Stop on conversion: `converted` (from the caller's conversions data or CRM status) ends the sequence.
- A stage change ends the old enrollment and starts the new stage's sequence at its step 1, on the day of the
  change (`enroll`); the ledger records both. Steps already sent in a stage are never repeated, even when the
  contact comes back to that stage later.

Variants are assigned by hashing (campaign, contact, stage, step): deterministic, so a rerun or a second
machine picks the same variant; independent of input order; weighted. Send-time optimization picks the
contact's most likely hour from history (`best_hour`, else the most frequent of `open_hours`), else the campaign
default; hours are UTC, like the run's clock.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from ..campaign.email_settings import StepConfig, VariantConfig


@dataclass(frozen=True, slots=True)
class Enrollment:
    """The sequence a contact is in: the stage, and the day it entered it (step delays count from there)."""

    stage: str
    enrolled_on: date


@dataclass(frozen=True, slots=True)
class DueStep:
    """A step to send now."""

    stage: str
    step: int  # 1-based
    template: str
    variants: tuple[VariantConfig, ...]
    due_on: date


def enroll(current: Enrollment | None, stage: str, today: date) -> tuple[Enrollment, bool]:
    """The enrollment for a contact now in `stage`; True when it is new (first seen, or the stage changed)."""
    if current is not None and current.stage == stage:
        return current, False
    return Enrollment(stage, today), True


def due_step(
    steps: Sequence[StepConfig],
    enrollment: Enrollment,
    sent_steps: Collection[int],
    today: date,
    converted: bool,
    last_sent_on: date | None = None,
    min_gap_days: int = 1,
) -> DueStep | None:
    """The step due for a contact today, or None (converted, too soon, waiting, or sequence finished).

    Args:
        steps: the sequence of the enrollment's stage (`EmailConfig.sequences[stage]`).
        enrollment: the contact's current enrollment (stage and day entered).
        sent_steps: step numbers of this stage that already have a terminal ledger row.
        today: the run's date (UTC).
        converted: whether the contact converted; a converted contact gets nothing more.
        last_sent_on: the day of the contact's last email in this campaign (any stage), for the gap rule.
        min_gap_days: days at least between two emails.

    Returns:
        The first unsent step whose day has come, or None.
    """
    if converted:
        return None
    if last_sent_on is not None and (today - last_sent_on).days < min_gap_days:
        return None
    for number, step in enumerate(steps, start=1):
        if number in sent_steps:
            continue
        due_on = enrollment.enrolled_on + timedelta(days=step.delay_days)
        if today < due_on:
            return None  # steps go in order: a later step never jumps ahead of a waiting one
        return DueStep(enrollment.stage, number, step.template, step.variants, due_on)
    return None


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) from the parts (SHA-256; stable across machines and Python versions)."""
    text = "\x1f".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64


def assign_variant(campaign: str, contact_id: str, stage: str, step: int, variants: Sequence[VariantConfig]) -> str:
    """The contact's variant of a step ("" when the step has none), proportional to the weights."""
    if not variants:
        return ""
    point = unit_hash("variant-v1", campaign, contact_id, stage, step) * sum(v.weight for v in variants)
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight
        if point < cumulative:
            return variant.name
    return variants[-1].name  # float rounding at the very top


def _hour(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    return value if isinstance(value, int) and 0 <= value <= 23 else None


def _hours(value: Any) -> list[int]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return []
        else:
            value = text.replace(";", "|").replace(",", "|").split("|")
    if not isinstance(value, list | tuple):
        value = [value]
    return [h for h in (_hour(v) for v in value) if h is not None]


def send_hour(history: Mapping[str, Any], default_hour: int) -> tuple[int, str]:
    """The UTC hour to send at and where it came from (`best_hour`, `open_hours` or `default`).

    `history.best_hour` (a model's pick) wins; else the most frequent hour of `history.open_hours` (a list, or
    "9|14|9" from a CSV cell; ties go to the earliest hour); else the campaign default.
    """
    best = _hour(history.get("best_hour"))
    if best is not None:
        return best, "best_hour"
    hours = _hours(history.get("open_hours"))
    if hours:
        counts = Counter(hours)
        top = max(counts.values())
        return min(h for h, n in counts.items() if n == top), "open_hours"
    return default_hour, "default"


def send_now(scheduled_hour: int, due_on: date, now: datetime) -> bool:
    """Whether a due step goes out in this run: its hour has come today, or it is overdue from an earlier day.

    Run the job hourly to send each contact at its hour; a job run once a day still sends everything due (late
    hours on the following day at the latest), so nothing is starved.
    """
    return now.date() > due_on or now.hour >= scheduled_hour
