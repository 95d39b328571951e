"""Several batches of one platform in flight: removes still precede adds, and the state records exactly what the
platform acknowledged, however the push ends.

The platform here is an in-memory set of `(contact, payload)` rows answering from the push's own threads; each test
controls when its answers come, so the interleavings that matter happen every time instead of by chance.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crm_activation import AudienceRef, BatchResult, Capability, FatalError, Member
from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.platform_sync import PlatformSync, audience_key
from crm_activation.sdk.errors import RunInterrupted
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.summary import PlatformSummary
from crm_activation.sdk.types import AudienceSpec
from crm_activation.state.store import StateStore, encode_member

#: A bound on waits that succeed at once when the code is right; reaching it fails the test instead of hanging.
BOUND = 30.0
CAMPAIGN = """\
campaign: c1
audience:
  source: {type: csv, path: contacts.csv}
channels:
  default: []
platforms:
  fb: {enabled: false}
state: {path: state.sqlite}
"""
KEY = audience_key("c1", "awareness")


@dataclass
class ThreadedPlatform:
    """Holds `(contact, payload)` rows; logs each request's start and end; `gate` may hold requests back."""

    held: set[tuple[str, str]] = field(default_factory=set)
    log: list[tuple[str, str]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    capabilities: frozenset[Capability] = frozenset({Capability.REMOVE})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        return known or AudienceRef(key=spec.key, remote_id="42")

    def gate(self, operation: str, members: Sequence[Member]) -> None:
        """Called while the request is in flight; tests override it to hold requests back."""

    def _answer(self, operation: str, members: Sequence[Member]) -> BatchResult:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.log.append(("start", operation))
        try:
            self.gate(operation, members)
            with self.lock:
                for member in members:
                    row = (member.contact_id, encode_member(member)[0])
                    (self.held.add if operation == "add" else self.held.discard)(row)
                self.log.append(("end", operation))
        finally:
            with self.lock:
                self.in_flight -= 1
        return BatchResult(received=len(members))

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._answer("add", members)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return self._answer("remove", members)


def member(cid: str, version: int = 0) -> Member:
    return Member(cid, {"EMAIL": f"hash-{cid}-{version}"}, "US", {})


def stage(store: StateStore, members: list[Member], platform: str = "fb") -> None:
    store.reset_desired()
    store.stage_desired([(platform, KEY, m.contact_id, *reversed(encode_member(m))) for m in members])


def sync(tmp_path: Path, store: StateStore, platform: ThreadedPlatform, in_flight: int) -> PlatformSync:
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    return PlatformSync(
        campaign=load_campaign(tmp_path / "campaign.yaml").campaign,
        platform="fb",
        connector=platform,  # type: ignore[arg-type]  # the operations PlatformSync calls, nothing else
        state=store,
        run_id="run",
        dry_run=False,
        hooks=make_plugin_manager(load_entry_points=False).hook,
        batch_size=2,
        in_flight=in_flight,
    )


def recorded(store: StateStore) -> set[tuple[str, str]]:
    return set(store.members("fb", KEY).items())


def ledger_rows(store: StateStore) -> int:
    return int(store.db.execute("SELECT COUNT(*) FROM batches WHERE platform='fb'").fetchone()[0])


def test_every_remove_is_answered_before_the_first_add_is_sent(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    platform = ThreadedPlatform()
    first = [member(f"{i:02d}") for i in range(12)]
    stage(store, first)
    sync(tmp_path, store, platform, in_flight=4).run(PlatformSummary())
    assert recorded(store) == platform.held and len(platform.held) == 12

    add_started = threading.Event()

    def gate(operation: str, members: Sequence[Member]) -> None:
        if operation == "add":
            add_started.set()
        else:  # a remove answers late: an add sent meanwhile would be caught here
            add_started.wait(0.05)

    platform.gate = gate  # type: ignore[method-assign]
    platform.log.clear()
    # six changed payloads (each a remove of the old, an add of the new), six unchanged, six new contacts
    second = [member(m.contact_id, 1) for m in first[:6]] + first[6:] + [member(f"{i:02d}") for i in range(12, 18)]
    stage(store, second)
    summary = PlatformSummary()
    sync(tmp_path, store, platform, in_flight=4).run(summary)

    starts_of_adds = [i for i, event in enumerate(platform.log) if event == ("start", "add")]
    ends_of_removes = [i for i, event in enumerate(platform.log) if event == ("end", "remove")]
    assert len(ends_of_removes) == 3 and len(starts_of_adds) == 6
    assert max(ends_of_removes) < min(starts_of_adds)
    expected = {(m.contact_id, encode_member(m)[0]) for m in second}
    assert platform.held == recorded(store) == expected
    counts = summary.stages["awareness"]
    assert (counts.removed, counts.added) == (6, 12) and summary.batches == 9


def test_up_to_in_flight_requests_are_sent_at_once_and_never_more(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    platform = ThreadedPlatform()
    together = threading.Barrier(3, timeout=BOUND)  # passes only when three requests are in flight at once
    platform.gate = lambda operation, members: together.wait() and None  # type: ignore[method-assign]
    contacts = [member(f"{i:02d}") for i in range(18)]  # nine batches: three rounds of three
    stage(store, contacts)

    sync(tmp_path, store, platform, in_flight=3).run(PlatformSummary())

    assert platform.most_in_flight == 3
    assert recorded(store) == platform.held and len(platform.held) == 18
    assert ledger_rows(store) == 9


@pytest.mark.parametrize("failure", [RunInterrupted, FatalError])
def test_a_stopped_push_records_exactly_the_batches_the_platform_acknowledged(
    tmp_path: Path, failure: type[Exception]
) -> None:
    store = StateStore(tmp_path / "state.sqlite")
    platform = ThreadedPlatform()
    together = threading.Barrier(3, timeout=BOUND)
    stopped = threading.Event()
    requests: list[int] = []

    def gate(operation: str, members: Sequence[Member]) -> None:
        with platform.lock:
            requests.append(len(members))
        if stopped.is_set():  # after the interruption (or failure) a request is refused before it is applied
            raise failure("stopped")
        if together.wait() == 0:  # three in flight: the run is stopped while they are being answered
            stopped.set()

    platform.gate = gate  # type: ignore[method-assign]
    stage(store, [member(f"{i:02d}") for i in range(20)])  # ten batches

    with pytest.raises(failure):
        sync(tmp_path, store, platform, in_flight=3).run(PlatformSummary())

    assert len(platform.held) == 6  # the three in flight when it stopped were answered
    assert recorded(store) == platform.held  # ... and recorded; nothing refused or unsent is
    assert ledger_rows(store) == 3
    assert len(requests) <= 3 + 3  # no new batch is started once one has failed (at most the in-flight ones)

    # the rerun sends only what was not acknowledged
    platform.gate = lambda operation, members: None  # type: ignore[method-assign]
    platform.log.clear()
    store.plan("c1", "fb", full=False)
    sync(tmp_path, store, platform, in_flight=3).run(PlatformSummary())
    assert len(platform.held) == 20 and recorded(store) == platform.held
    assert platform.log.count(("start", "add")) == 7
