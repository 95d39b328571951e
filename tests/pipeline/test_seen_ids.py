"""The run's set of contact ids already read: exact, and on disk."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crm_activation.pipeline.seen_ids import SeenIds


@given(st.lists(st.text(max_size=12), max_size=200))
def test_add_says_new_exactly_once_per_distinct_id(ids):
    seen = SeenIds()
    try:
        firsts = [value for value in ids if seen.add(value)]
    finally:
        seen.close()
    assert firsts == list(dict.fromkeys(ids))  # first occurrences, in order: nothing lost, nothing doubled


def test_case_and_whitespace_make_different_ids():
    seen = SeenIds()
    assert seen.add("C1") and seen.add("c1") and seen.add(" C1") and not seen.add("C1")
    seen.close()
