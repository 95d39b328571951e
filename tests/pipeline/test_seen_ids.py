"""The run's set of contact ids already read: exact, and on disk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_activation.pipeline.seen_ids import SeenIds


@given(st.lists(st.text(max_size=12), max_size=200), st.integers(1, 60))
def test_add_many_says_new_exactly_once_per_distinct_id_across_calls(ids, size):
    seen = SeenIds()
    try:
        new = [flag for start in range(0, len(ids), size) for flag in seen.add_many(ids[start : start + size])]
    finally:
        seen.close()
    firsts = [value for value, is_new in zip(ids, new, strict=True) if is_new]
    assert firsts == list(dict.fromkeys(ids))  # first occurrences, in order: nothing lost, nothing doubled


def test_case_and_whitespace_make_different_ids():
    seen = SeenIds()
    assert seen.add_many(["C1", "c1", " C1"]) == [True, True, True]
    assert seen.add_many(["C1"]) == [False]
    seen.close()
