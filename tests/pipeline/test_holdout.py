import random

import pytest

from crm_activation.pipeline.holdout import BalanceTracker, Group, assign_group, chi_square_p_value, holdout_draw


def test_assignment_is_a_pure_function_of_salt_and_id():
    ids = [f"C{i:06d}" for i in range(5000)]
    first = {cid: assign_group("salt", cid, 0.5) for cid in ids}
    shuffled = ids[:]
    random.Random(1).shuffle(shuffled)
    again = {cid: assign_group("salt", cid, 0.5) for cid in shuffled + [f"NEW{i}" for i in range(100)]}
    assert all(again[cid] == group for cid, group in first.items())


def test_salt_changes_assignment():
    ids = [f"C{i}" for i in range(2000)]
    same = sum(assign_group("a", c, 0.5) == assign_group("b", c, 0.5) for c in ids)
    assert 800 < same < 1200  # independent draws agree about half the time


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.8])
def test_control_share_matches_fraction(fraction):
    n = 40_000
    control = sum(assign_group("s", f"id{i}", fraction) is Group.CONTROL for i in range(n))
    # 5 standard deviations of a binomial proportion
    assert abs(control / n - fraction) < 5 * (fraction * (1 - fraction) / n) ** 0.5


def test_draw_in_unit_interval():
    assert all(0 <= holdout_draw("s", str(i)) < 1 for i in range(1000))


def test_chi_square_matches_known_values():
    # 60/40 split of 100 at p=0.5: chi2 = 4, p = 0.0455 (1 dof)
    assert chi_square_p_value(60, 40, 0.5) == pytest.approx(0.0455003, abs=1e-6)
    assert chi_square_p_value(50, 50, 0.5) == pytest.approx(1.0)
    assert chi_square_p_value(0, 0, 0.5) == 1.0


def test_balance_tracker_flags_only_skewed_strata():
    tracker = BalanceTracker(0.5, alpha=0.001)
    for i in range(2000):
        tracker.add(("US", "high"), assign_group("s", f"u{i}", 0.5))
    for _ in range(300):
        tracker.add(("FR", "low"), Group.TEST)
    for _ in range(100):
        tracker.add(("FR", "low"), Group.CONTROL)
    mismatches = tracker.mismatches()
    assert [m.stratum for m in mismatches] == [("FR", "low")]
    assert tracker.overall().test + tracker.overall().control == 2400
