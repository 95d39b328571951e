"""The push's batches as the state database plans, reads and records them, on SQLite and on PostgreSQL.

A resync sends only what changed; a batch is recorded from its stored columns exactly as the members would have
been; and the connectors' fast reading of the stored payloads (`StagedBatch.fields`) agrees with a full parse.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crm_activation import BatchResult, Member
from crm_activation.sdk.types import StagedBatch, member_payload
from crm_activation.state.store import PlannedBatch, StateStore, encode_member

CAMPAIGN = "c1"
A, B = "c1/a", "c1/b"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Iterator[StateStore]:
    target = tmp_path / "s.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    opened = StateStore(target)
    yield opened
    opened.close()


def member(cid: str, version: int = 0) -> Member:
    return Member(cid, {"EMAIL": f"e{version}-{cid}", "COUNTRY": "us"}, "US", {})


def stage(store: StateStore, audiences: dict[str, list[Member]]) -> None:
    store.reset_desired()
    store.stage_desired(
        [("fb", key, m.contact_id, *reversed(encode_member(m))) for key, ms in audiences.items() for m in ms]
    )


def push(store: StateStore, size: int = 7) -> dict[tuple[str, str], list[Member]]:
    """Plan, then read and record every batch as the push does (removes first); return what was sent."""
    planned = store.plan(CAMPAIGN, "fb", full=False)
    sent: dict[tuple[str, str], list[Member]] = {}
    for operation in ("remove", "add"):
        for key in sorted({key for key, op in planned if op == operation}):
            for batch in store.planned_batches("fb", key, operation, size):
                sent.setdefault((key, operation), []).extend(batch.staged.members())
                store.apply_planned("run", CAMPAIGN, "fb", key, operation, batch, BatchResult(received=len(batch)))
    assert {key: len(members) for key, members in sent.items()} == planned
    return sent


def stored(store: StateStore, key: str) -> dict[str, str]:
    return store.members("fb", key)


def test_a_resync_sends_only_the_changed_members_and_removals_repeat_the_old_payload(store: StateStore) -> None:
    first = {A: [member(f"{i:03d}") for i in range(60)], B: [member(f"{i:03d}") for i in range(60, 80)]}
    stage(store, first)
    sent = push(store)
    assert {key: len(ms) for key, ms in sent.items()} == {(A, "add"): 60, (B, "add"): 20}

    a = first[A]
    changed = [member(m.contact_id, 1) for m in a[10:13]]  # new e-mail: remove the old payload, add the new
    moved = a[20:22]  # moved to another funnel stage: removed from A, added to B
    kept = a[3:10] + a[13:20] + a[22:]  # a[0:3] leave
    new = [member(f"{i:03d}") for i in range(100, 104)]
    stage(store, {A: kept + changed + new, B: first[B] + moved})

    sent = push(store)

    def ids(ms: list[Member]) -> set[str]:
        return {m.contact_id for m in ms}

    assert ids(sent[(A, "remove")]) == ids(a[0:3] + a[10:13] + moved)
    assert {m.contact_id: m.fields["EMAIL"] for m in sent[(A, "remove")]} == {
        m.contact_id: m.fields["EMAIL"] for m in a[0:3] + a[10:13] + moved
    }
    assert sent[(A, "add")] == sorted(changed + new, key=lambda m: m.contact_id)
    assert sent[(B, "add")] == moved
    assert set(sent) == {(A, "remove"), (A, "add"), (B, "add")}
    assert stored(store, A) == {m.contact_id: encode_member(m)[0] for m in kept + changed + new}
    assert stored(store, B) == {m.contact_id: encode_member(m)[0] for m in first[B] + moved}

    stage(store, {A: kept + changed + new, B: first[B] + moved})
    assert store.plan(CAMPAIGN, "fb", full=False) == {}  # nothing changed: nothing to send


@pytest.mark.parametrize("first_sync", [True, False])
def test_a_batch_is_recorded_without_its_unacknowledged_members(store: StateStore, first_sync: bool) -> None:
    """Whole batches are recorded in SQL from the table they were read from; a part from its own columns."""
    wanted = [member(f"{i:02d}") for i in range(10)]
    if not first_sync:  # the audience has a member already: its adds are a diff, read through the ops table
        stage(store, {A: [member("zz")]})
        push(store)
    stage(store, {A: [*wanted, member("zz")]})
    store.plan(CAMPAIGN, "fb", full=False)

    batch = next(store.planned_batches("fb", A, "add", 10))
    assert batch.span is not None and batch.span[0] == ("desired" if first_sync else "ops")
    result = BatchResult(received=10, invalid=2)
    store.apply_planned("run", CAMPAIGN, "fb", A, "add", batch, result, frozenset({"03", "07"}))
    part = batch.take([3, 7])
    assert part.span is None and list(part.contact_ids) == ["03", "07"]
    store.apply_planned("run", CAMPAIGN, "fb", A, "add", part, BatchResult(received=2), frozenset({"07"}))

    expected = {m.contact_id: encode_member(m)[0] for m in wanted if m.contact_id != "07"}
    if not first_sync:  # acknowledged before; in a first sync it is the next batch, not sent here
        expected["zz"] = encode_member(member("zz"))[0]
    assert stored(store, A) == expected
    ledger = store.db.execute("SELECT size, received, invalid FROM batches WHERE run_id='run' ORDER BY at").fetchall()
    assert [tuple(row) for row in ledger][-2:] == [(10, 10, 2), (2, 2, 0)]


def test_op_batches_and_apply_batch_still_speak_members(store: StateStore) -> None:
    stage(store, {A: [member("1"), member("2"), member("3")]})
    store.plan(CAMPAIGN, "fb", full=False)
    batches = list(store.op_batches("fb", A, "add", 2))
    assert batches == [[member("1"), member("2")], [member("3")]]
    for batch in batches:
        store.apply_batch("run", CAMPAIGN, "fb", A, "add", batch, BatchResult(received=len(batch)))
    assert set(stored(store, A)) == {"1", "2", "3"}


def test_the_plan_file_lists_every_remove_then_every_add(store: StateStore) -> None:
    stage(store, {A: [member("1"), member("2")], B: [member("3")]})
    push(store)
    stage(store, {A: [member("2", 1), member("4")], B: [member("1")]})
    store.plan(CAMPAIGN, "fb", full=False)
    assert list(store.planned_operations("fb")) == [
        (A, "remove", "1"), (A, "remove", "2"), (B, "remove", "3"),
        (A, "add", "2"), (A, "add", "4"), (B, "add", "1"),
    ]


def test_full_mode_reads_every_desired_member_even_when_all_are_acknowledged(store: StateStore) -> None:
    stage(store, {A: [member("1"), member("2")]})
    push(store)
    assert store.plan(CAMPAIGN, "fb", full=True) == {(A, "add"): 2}
    (batch,) = store.planned_batches("fb", A, "add", 10)
    assert batch.staged.members() == [member("1"), member("2")]


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(
    st.lists(
        st.tuples(
            st.dictionaries(texts, texts, max_size=4),
            st.none() | texts,
            st.dictionaries(texts, st.none() | st.booleans(), max_size=2),
        ),
        max_size=6,
    )
)
def test_reading_the_fields_of_stored_payloads_agrees_with_a_full_parse(rows) -> None:
    members = [Member(str(i), fields, country, consent) for i, (fields, country, consent) in enumerate(rows)]
    batch = StagedBatch([m.contact_id for m in members], [member_payload(m) for m in members])
    assert batch.fields() == [dict(m.fields) for m in members]
    assert batch.members() == members
    planned = PlannedBatch(batch, [encode_member(m)[1] for m in members])
    assert planned.take(range(len(members) - 1, -1, -1)).staged.members() == members[::-1]
