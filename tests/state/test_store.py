"""Diffing desired membership against the last acknowledged state, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from crm_activation import BatchResult, Member
from crm_activation.state.store import StateStore, encode_member

CAMPAIGN = "c1"


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path):
    """Where a test's state lives; every test here runs on both backends."""
    return tmp_path / "s.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def member(cid: str, email: str = "e") -> Member:
    return Member(cid, {"EMAIL": f"{email}-{cid}"}, "US", {})


def stage(store: StateStore, members: dict[str, list[Member]], platform: str = "fb") -> None:
    store.reset_desired()
    rows = []
    for key, ms in members.items():
        for m in ms:
            payload, fingerprint = encode_member(m)
            rows.append((platform, key, m.contact_id, fingerprint, payload))
    store.stage_desired(rows)


def apply_all(store: StateStore, key: str, op: str, platform: str = "fb") -> list[str]:
    done = []
    for batch in store.op_batches(platform, key, op, 2):
        store.apply_batch("run", CAMPAIGN, platform, key, op, batch, BatchResult(received=len(batch)))
        done += [m.contact_id for m in batch]
    return done


def test_first_run_adds_everything_second_run_nothing(target):
    store = StateStore(target)
    stage(store, {"c1/a": [member("1"), member("2"), member("3")]})
    assert store.plan(CAMPAIGN, "fb", full=False) == {("c1/a", "add"): 3}
    assert apply_all(store, "c1/a", "add") == ["1", "2", "3"]
    stage(store, {"c1/a": [member("1"), member("2"), member("3")]})
    assert store.plan(CAMPAIGN, "fb", full=False) == {}


def test_stage_move_removes_from_old_and_adds_to_new(target):
    store = StateStore(target)
    stage(store, {"c1/a": [member("1"), member("2")]})
    store.plan(CAMPAIGN, "fb", full=False)
    apply_all(store, "c1/a", "add")
    stage(store, {"c1/a": [member("1")], "c1/b": [member("2")]})
    assert store.plan(CAMPAIGN, "fb", full=False) == {("c1/a", "remove"): 1, ("c1/b", "add"): 1}
    assert apply_all(store, "c1/a", "remove") == ["2"]
    assert apply_all(store, "c1/b", "add") == ["2"]
    assert set(store.members("fb", "c1/a")) == {"1"} and set(store.members("fb", "c1/b")) == {"2"}


def test_changed_identifiers_remove_the_old_payload_then_add_the_new(target):
    store = StateStore(target)
    stage(store, {"c1/a": [member("1", "old")]})
    store.plan(CAMPAIGN, "fb", full=False)
    apply_all(store, "c1/a", "add")
    stage(store, {"c1/a": [member("1", "new")]})
    assert store.plan(CAMPAIGN, "fb", full=False) == {("c1/a", "remove"): 1, ("c1/a", "add"): 1}
    removed = next(store.op_batches("fb", "c1/a", "remove", 10))
    assert removed[0].fields == {"EMAIL": "old-1"}  # the removal repeats what was pushed


def test_interrupted_run_resumes_with_only_the_unacknowledged_work(target):
    store = StateStore(target)
    wanted = [member(str(i)) for i in range(7)]
    stage(store, {"c1/a": wanted})
    store.plan(CAMPAIGN, "fb", full=False)
    first_batch = next(store.op_batches("fb", "c1/a", "add", 3))
    store.apply_batch("run", CAMPAIGN, "fb", "c1/a", "add", first_batch, BatchResult(received=3))
    store.close()  # killed here

    store = StateStore(target)
    stage(store, {"c1/a": wanted})
    assert store.plan(CAMPAIGN, "fb", full=False) == {("c1/a", "add"): 4}
    apply_all(store, "c1/a", "add")
    assert sorted(store.members("fb", "c1/a")) == [str(i) for i in range(7)]


def test_refused_records_are_not_stored_as_members(target):
    from crm_activation import RecordRejection

    store = StateStore(target)
    stage(store, {"c1/a": [member("1"), member("2")]})
    store.plan(CAMPAIGN, "fb", full=False)
    batch = next(store.op_batches("fb", "c1/a", "add", 10))
    result = BatchResult(received=2, invalid=1, rejections=(RecordRejection(contact_id="2", reason="bad"),))
    store.apply_batch("run", CAMPAIGN, "fb", "c1/a", "add", batch, result, frozenset({"2"}))
    assert set(store.members("fb", "c1/a")) == {"1"}


def test_other_campaigns_and_platforms_are_untouched(target):
    store = StateStore(target)
    stage(store, {"c1/a": [member("1")]}, platform="li")
    store.plan(CAMPAIGN, "li", full=False)
    apply_all(store, "c1/a", "add", platform="li")
    stage(store, {"c1/a": [member("9")]}, platform="fb")
    assert store.plan(CAMPAIGN, "fb", full=False) == {("c1/a", "add"): 1}
    assert store.plan("other-campaign", "li", full=False) == {}


def test_full_mode_readds_everything(target):
    store = StateStore(target)
    stage(store, {"c1/a": [member("1"), member("2")]})
    store.plan(CAMPAIGN, "fb", full=False)
    apply_all(store, "c1/a", "add")
    assert store.plan(CAMPAIGN, "fb", full=True) == {("c1/a", "add"): 2}
