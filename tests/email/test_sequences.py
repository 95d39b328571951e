"""Sequences: due steps (never twice, stop on conversion, restart on stage change), variants, send hours."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_activation.campaign.email_settings import StepConfig, VariantConfig
from crm_activation.email.ledger import SendLedger
from crm_activation.email.sequences import Enrollment, assign_variant, due_step, send_hour, send_now

D0 = date(2026, 11, 2)
STEPS = (StepConfig(template="a", delay_days=0), StepConfig(template="b", delay_days=3),
         StepConfig(template="c", delay_days=7))
ENROLLED = Enrollment("awareness", D0)


def day(n: int) -> date:
    return D0 + timedelta(days=n)


def test_steps_come_due_in_order_on_their_day():
    assert due_step(STEPS, ENROLLED, set(), D0, False).step == 1
    assert due_step(STEPS, ENROLLED, {1}, day(2), False) is None  # step 2 waits for day 3
    step = due_step(STEPS, ENROLLED, {1}, day(3), False)
    assert (step.step, step.template, step.due_on) == (2, "b", day(3))
    assert due_step(STEPS, ENROLLED, {1, 2}, day(7), False).step == 3
    assert due_step(STEPS, ENROLLED, {1, 2, 3}, day(30), False) is None  # finished: never the same step twice


def test_conversion_stops_the_sequence():
    assert due_step(STEPS, ENROLLED, {1}, day(3), converted=True) is None


def test_a_late_run_catches_up_one_step_at_a_time():
    assert due_step(STEPS, ENROLLED, set(), day(10), False).step == 1
    assert due_step(STEPS, ENROLLED, {1}, day(10), False, last_sent_on=day(10)) is None  # gap rule
    assert due_step(STEPS, ENROLLED, {1}, day(11), False, last_sent_on=day(10)).step == 2
    assert due_step(STEPS, ENROLLED, {1}, day(12), False, last_sent_on=day(10), min_gap_days=3) is None


@settings(max_examples=60, deadline=None)
@given(
    delays=st.lists(st.integers(0, 10), min_size=1, max_size=5).map(sorted),
    run_days=st.sets(st.integers(0, 40), min_size=1, max_size=25),
    convert_on=st.one_of(st.none(), st.integers(0, 40)),
)
def test_daily_runs_send_each_step_once_in_order(delays, run_days, convert_on):
    steps = tuple(StepConfig(template=f"t{i}", delay_days=d) for i, d in enumerate(delays))
    sent: dict[int, date] = {}
    for n in sorted(run_days):
        converted = convert_on is not None and n >= convert_on
        last = max(sent.values()) if sent else None
        due = due_step(steps, ENROLLED, set(sent), day(n), converted, last)
        if due is not None:
            assert due.step not in sent and day(n) >= due.due_on and not converted
            sent[due.step] = day(n)
    assert list(sent) == list(range(1, len(sent) + 1))  # in order, no gaps, no repeats
    if convert_on is None and len(run_days) >= 41:
        assert len(sent) == len(steps)


def test_stage_change_restarts_at_the_new_stage_step_one_and_is_recorded(db):
    ledger = SendLedger(db, "wb")
    enrollment, new = ledger.enroll("c1", "awareness", D0)
    assert new and enrollment == Enrollment("awareness", D0)
    assert ledger.enroll("c1", "awareness", day(2)) == (enrollment, False)
    claim = ledger.claim("c1", "awareness", 1, "a", "", "<m1@x>")
    ledger.mark_sent(claim)
    moved, new = ledger.enroll("c1", "consideration", day(4))
    assert new and moved == Enrollment("consideration", day(4))
    assert due_step(STEPS, moved, ledger.done_steps("c1", "consideration"), day(5), False).step == 1
    rows = db.execute("SELECT stage, enrolled_on, ended_on, end_reason FROM email_enrollments ORDER BY id").fetchall()
    assert rows == [("awareness", "2026-11-02", "2026-11-06", "stage changed to consideration"),
                    ("consideration", "2026-11-06", None, None)]
    back, _ = ledger.enroll("c1", "awareness", day(9))  # back to awareness: step 1 there was already sent
    assert due_step(STEPS, back, ledger.done_steps("c1", "awareness"), day(9), False) is None
    assert due_step(STEPS, back, ledger.done_steps("c1", "awareness"), day(12), False).step == 2


def test_variant_assignment_is_deterministic_and_weighted():
    variants = (VariantConfig(name="warm", weight=3), VariantConfig(name="brief", weight=1))
    picks = [assign_variant("wb", f"C{i}", "awareness", 1, variants) for i in range(20_000)]
    assert picks == [assign_variant("wb", f"C{i}", "awareness", 1, variants) for i in range(20_000)]
    share = picks.count("warm") / len(picks)
    assert abs(share - 0.75) < 5 * math.sqrt(0.75 * 0.25 / len(picks))
    assert assign_variant("wb", "C1", "awareness", 1, ()) == ""
    # independent across steps and campaigns: a contact's arm on step 1 does not decide step 2
    other = [assign_variant("wb", f"C{i}", "awareness", 2, variants) for i in range(20_000)]
    agree = sum(a == b for a, b in zip(picks, other, strict=True)) / len(picks)
    assert abs(agree - (0.75**2 + 0.25**2)) < 0.02


def test_send_hour_from_history():
    assert send_hour({"best_hour": 7}, 10) == (7, "best_hour")
    assert send_hour({"best_hour": "21", "open_hours": [9, 9]}, 10) == (21, "best_hour")
    assert send_hour({"open_hours": [14, 9, 14, 22]}, 10) == (14, "open_hours")
    assert send_hour({"open_hours": "9|14|9|14"}, 10) == (9, "open_hours")  # tie: the earlier hour
    assert send_hour({"open_hours": "[20, 20, 8]"}, 10) == (20, "open_hours")
    assert send_hour({"best_hour": 99, "open_hours": "x|25"}, 10) == (10, "default")
    assert send_hour({}, 11) == (11, "default")


def test_send_now_waits_for_the_hour_but_never_starves():
    at = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    assert not send_now(14, D0, at)
    assert send_now(9, D0, at) and send_now(3, D0, at)
    assert send_now(23, D0, at + timedelta(days=1))  # a once-a-day job sends yesterday's late hours today
