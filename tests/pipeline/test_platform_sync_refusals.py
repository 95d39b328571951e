"""Refused members are never recorded: unnamed refusals are bisected until each refused member is named.

The platform here is an in-memory set that refuses chosen contacts and names at most `names` of them per
answer, counting the rest, as Meta does with its samples. Every request it answers is logged, so the tests can
bound the extra requests the bisection costs.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crm_activation import AudienceRef, BatchResult, Member, RecordRejection
from crm_activation.pipeline.platform_sync import UNNAMED_REASON, PlatformSync, audience_key
from crm_activation.pipeline.rejects import RejectsWriter
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.summary import PlatformSummary, StageCounts
from crm_activation.state.store import StateStore, encode_member

CAMPAIGN = "c1"
STAGE = "awareness"
KEY = audience_key(CAMPAIGN, STAGE)
REF = AudienceRef(key=KEY, remote_id="42")


@dataclass
class CountingPlatform:
    """Holds a set of members; refuses `refuse` on add (and on remove), naming at most `names` per answer."""

    refuse: set[str]
    names: int | None
    held: set[str] = field(default_factory=set)
    requests: list[list[str]] = field(default_factory=list)

    def _answer(self, members: Sequence[Member], apply: Any) -> BatchResult:
        self.requests.append([m.contact_id for m in members])
        refused = [m.contact_id for m in members if m.contact_id in self.refuse]
        for member in members:
            if member.contact_id not in self.refuse:
                apply(member.contact_id)
        named = refused if self.names is None else refused[: self.names]
        return BatchResult(
            received=len(members),
            invalid=len(refused),
            rejections=tuple(RecordRejection(contact_id=cid, reason="value is not a hash") for cid in named),
        )

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._answer(members, self.held.add)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._answer(members, self.held.discard)


def member(cid: str) -> Member:
    return Member(cid, {"EMAIL": f"hash-{cid}"}, "US", {})


def ids(n: int) -> list[str]:
    return [f"{i:04d}" for i in range(n)]


def planned(tmp_path: Path, contacts: list[str]) -> StateStore:
    """A state database with `contacts` desired in the one audience and the adds planned."""
    store = StateStore(tmp_path / "state.sqlite")
    store.reset_desired()
    store.stage_desired([("fb", KEY, cid, *reversed(encode_member(member(cid)))) for cid in contacts])
    store.plan(CAMPAIGN, "fb", full=False)
    return store


def push(
    store: StateStore, platform: CountingPlatform, operation: str, rejects: RejectsWriter, batch_size: int,
    budget: int | None = None,
) -> PlatformSummary:
    pm = make_plugin_manager(load_entry_points=False)
    pm.register(rejects)
    sync = PlatformSync(
        campaign=SimpleNamespace(campaign=CAMPAIGN),  # type: ignore[arg-type]  # only its id is read here
        platform="fb",
        connector=platform,  # type: ignore[arg-type]  # add_members and remove_members are all _push calls
        state=store,
        run_id="run",
        dry_run=False,
        hooks=pm.hook,
        batch_size=batch_size,
        **({} if budget is None else {"verify_budget": budget}),
    )
    summary = PlatformSummary(stages={STAGE: StageCounts()})
    sync._push(STAGE, REF, operation, summary)
    rejects.close()
    return summary


def rejects_of(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("names", [0, 1, 3, 10])
def test_unnamed_refusals_are_bisected_until_every_refused_member_is_named(tmp_path: Path, names: int):
    contacts = ids(200)
    refuse = {cid for i, cid in enumerate(contacts) if i % 7 == 3}  # 29 refused, spread over every batch
    platform = CountingPlatform(refuse, names)
    store = planned(tmp_path, contacts)

    summary = push(store, platform, "add", RejectsWriter(tmp_path / "rejects.csv"), batch_size=50)

    recorded = set(store.members("fb", KEY))
    assert recorded == platform.held == set(contacts) - refuse  # the state says what the platform holds
    counts = summary.stages[STAGE]
    assert counts.added == len(recorded) and counts.refused == len(refuse) and counts.unconfirmed == 0
    assert counts.invalid_reported == len(refuse)  # the platform's own count, once per planned batch
    rows = rejects_of(tmp_path / "rejects.csv")
    assert sorted(r["contact_id"] for r in rows) == sorted(refuse)  # each refused member named, once
    assert {(r["platform"], r["stage"], r["source"]) for r in rows} == {("fb", STAGE, KEY)}
    assert all(r["reason"] in {"value is not a hash", UNNAMED_REASON} for r in rows)
    assert summary.batches == len(platform.requests)


def test_extra_requests_stay_within_the_documented_bound(tmp_path: Path):
    contacts = ids(256)
    refuse = {contacts[5], contacts[77], contacts[200]}
    platform = CountingPlatform(refuse, names=0)  # names nothing: the worst case
    store = planned(tmp_path, contacts)

    push(store, platform, "add", RejectsWriter(None), batch_size=256)

    extra = len(platform.requests) - 1
    u, n = len(refuse), len(contacts)
    assert extra <= 2 * u * math.ceil(math.log2(n / u)) + 2 * u, extra  # about 2·u·log2(n/u)
    rows_resent = sum(len(r) for r in platform.requests[1:])
    assert rows_resent <= n * math.ceil(math.log2(n))
    assert set(store.members("fb", KEY)) == set(contacts) - refuse


def test_a_part_all_of_whose_unnamed_members_were_refused_is_not_resent(tmp_path: Path):
    contacts = ids(6)
    platform = CountingPlatform({"0001", "0002", "0003", "0004"}, names=2)
    store = planned(tmp_path, ["0001", "0002", "0003", "0004"])

    summary = push(store, platform, "add", RejectsWriter(tmp_path / "rejects.csv"), batch_size=10)

    assert len(platform.requests) == 1  # two named, two counted: the two unnamed are both refused
    assert store.members("fb", KEY) == {} and summary.stages[STAGE].refused == 4
    reasons = {r["contact_id"]: r["reason"] for r in rejects_of(tmp_path / "rejects.csv")}
    assert reasons == {"0001": "value is not a hash", "0002": "value is not a hash", "0003": UNNAMED_REASON,
                       "0004": UNNAMED_REASON}
    assert contacts  # six ids, four planned: the others were never offered


def test_past_the_budget_the_members_in_doubt_are_left_unrecorded(tmp_path: Path):
    contacts = ids(64)
    refuse = {contacts[3], contacts[40]}
    platform = CountingPlatform(refuse, names=0)
    store = planned(tmp_path, contacts)

    summary = push(store, platform, "add", RejectsWriter(None), batch_size=64, budget=2)

    assert len(platform.requests) == 3  # the batch and two halves, no more
    recorded = set(store.members("fb", KEY))
    assert not recorded & refuse  # never a refused member, whatever the budget
    assert recorded <= platform.held
    counts = summary.stages[STAGE]
    assert counts.added == len(recorded) and counts.added + counts.refused + counts.unconfirmed == 64
    assert counts.unconfirmed > 0

    # the next run offers the unrecorded members again and, with its budget, settles them
    store.plan(CAMPAIGN, "fb", full=False)
    push(store, platform, "add", RejectsWriter(None), batch_size=64)
    assert set(store.members("fb", KEY)) == platform.held == set(contacts) - refuse


def test_a_refused_remove_leaves_the_member_recorded(tmp_path: Path):
    contacts = ids(40)
    platform = CountingPlatform(set(), names=None)
    store = planned(tmp_path, contacts)
    push(store, platform, "add", RejectsWriter(None), batch_size=40)
    store.reset_desired()  # nobody is wanted any more: every member is planned for removal
    store.plan(CAMPAIGN, "fb", full=False)
    platform.refuse = {contacts[2], contacts[30]}
    platform.names = 0

    summary = push(store, platform, "remove", RejectsWriter(None), batch_size=40)

    assert set(store.members("fb", KEY)) == platform.held == {contacts[2], contacts[30]}
    assert summary.stages[STAGE].removed == 38 and summary.stages[STAGE].refused == 2


@dataclass
class ReplacingPlatform(CountingPlatform):
    """A platform that can also swap a whole audience, refusing and naming as on add."""

    def replace_members(self, audience: AudienceRef, batches: Any) -> BatchResult:
        self.held.clear()
        results = [self._answer(batch, self.held.add) for batch in batches]
        return BatchResult(
            received=sum(r.received for r in results),
            invalid=sum(r.invalid for r in results),
            rejections=tuple(rejection for r in results for rejection in r.rejections),
        )


@pytest.mark.parametrize("names", [None, 1])  # every refusal named / some only counted
def test_a_replace_records_the_audience_without_its_refused_members(tmp_path: Path, names: int | None):
    contacts = ids(120)
    refuse = {cid for i, cid in enumerate(contacts) if i % 9 == 4}
    platform = ReplacingPlatform(refuse, names, held={"stale-1", "stale-2"})
    store = planned(tmp_path, contacts)
    store.apply_batch("run0", CAMPAIGN, "fb", KEY, "add", [member("stale-1")], BatchResult(received=1), frozenset())
    pm = make_plugin_manager(load_entry_points=False)
    rejects = RejectsWriter(tmp_path / "rejects.csv")
    pm.register(rejects)
    sync = PlatformSync(
        campaign=SimpleNamespace(campaign=CAMPAIGN),  # type: ignore[arg-type]
        platform="fb", connector=platform, state=store, run_id="run", dry_run=False,  # type: ignore[arg-type]
        hooks=pm.hook, batch_size=40,
    )
    summary = PlatformSummary(stages={STAGE: StageCounts(desired=len(contacts))})
    sync._replace(STAGE, REF, summary)
    rejects.close()

    assert set(store.members("fb", KEY)) == platform.held == set(contacts) - refuse
    counts = summary.stages[STAGE]
    assert counts.added == len(contacts) - len(refuse) and counts.refused == len(refuse)
    assert sorted(r["contact_id"] for r in rejects_of(tmp_path / "rejects.csv")) == sorted(refuse)
    assert (len(platform.requests) == 3) is (names is None)  # re-added only when a refusal went unnamed
