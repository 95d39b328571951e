"""Issue 11 §4: channels push concurrently; one slow or failing platform delays neither the others nor e-mail.

Also the ledger heartbeat and Ctrl-C during the push: what the channels acknowledged is recorded, the run is
closed as interrupted, and the workers are told to stop.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions, RunProgress
from crm_activation.pipeline.heartbeat import HeartbeatProgress
from crm_activation.sdk.errors import ConfigError, RunInterrupted
from crm_activation.sdk.summary import PlatformSummary
from crm_activation.state.database import open_database
from crm_activation.state.store import StateStore

from .test_channels import ROWS, FakeChannel, write_campaign

#: A bound on waits that succeed at once when the code is right; reaching it fails the test instead of hanging.
BOUND = 30.0


class SlowChannel(FakeChannel):
    """Pushes only once `release` is set: a platform that takes its time."""

    def __init__(self, name: str, pushed: list[str], release: threading.Event) -> None:
        super().__init__(name, pushed)
        self.release = release
        self.released = False

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        self.released = self.release.wait(BOUND)
        super().push(state, summary, run_id)


class SignallingChannel(FakeChannel):
    """Pushes, then sets `done` (letting the slow channel finish)."""

    def __init__(self, name: str, pushed: list[str], done: threading.Event, fail: bool = False) -> None:
        super().__init__(name, pushed, fail=fail)
        self.done = done

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        try:
            super().push(state, summary, run_id)
        finally:
            self.done.set()


def test_a_slow_platform_delays_neither_a_failing_one_nor_email(tmp_path: Path) -> None:
    pushed: list[str] = []
    failing_done, email_done = threading.Event(), threading.Event()
    both = threading.Event()
    slow = SlowChannel("slow", pushed, both)
    failing = SignallingChannel("failing", pushed, failing_done, fail=True)
    email = SignallingChannel("email", pushed, email_done)
    email.email_consent = True
    threading.Thread(target=lambda: (failing_done.wait(BOUND), email_done.wait(BOUND), both.set())).start()
    loaded = load_campaign(write_campaign(tmp_path, ROWS))
    summary = Engine(loaded, RunOptions(), channels=[slow, failing, email]).run()

    assert slow.released  # pushed sequentially, the slow one would have waited out BOUND for the two behind it
    assert pushed[-1] == "slow"
    assert list(summary.platforms) == ["slow", "failing", "email"]  # the summary keeps the campaign's order
    assert summary.platforms["failing"].error is not None and summary.platforms["slow"].error is None
    assert summary.status == "failed"


def test_the_heartbeat_is_recorded_as_batches_are_acknowledged_at_most_once_a_second() -> None:
    beats: list[float] = []
    now = [0.0]
    progress = HeartbeatProgress(RunProgress(), clock=lambda: now[0])
    progress.pushed("x", 10)  # not attached: nothing recorded
    progress.attach(lambda: beats.append(now[0]))
    for at in (0.0, 0.5, 0.99, 1.0, 1.2, 2.5):
        now[0] = at
        progress.pushed("x", 10)
    assert beats == [0.0, 1.0, 2.5]
    progress.attach(None)
    progress.pushed("x", 10)
    assert beats == [0.0, 1.0, 2.5]


class InterruptedChannel(FakeChannel):
    """Acknowledges a batch (heartbeat included), then the user presses Ctrl-C while its next request is out."""

    def __init__(self, name: str, pushed: list[str], engine: list[Engine]) -> None:
        super().__init__(name, pushed)
        self.engine = engine

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        super().push(state, summary, run_id)
        self.engine[0].progress.pushed(self.name, 2)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Python raises it in the main thread, waiting for workers
        self.engine[0].options.cancel.wait(BOUND)  # a worker stops at its next request once told to
        if not self.engine[0].options.cancel.is_set():
            raise ConfigError("the worker was never told to stop")


def test_ctrl_c_during_the_push_closes_the_run_as_interrupted_and_stops_the_workers(tmp_path: Path) -> None:
    pushed: list[str] = []
    holder: list[Engine] = []
    channel = InterruptedChannel("first", pushed, holder)
    loaded = load_campaign(write_campaign(tmp_path, ROWS))
    engine = Engine(loaded, RunOptions(), channels=[channel])
    holder.append(engine)
    with pytest.raises(RunInterrupted, match="Run the same command again to resume"):
        engine.run()
    assert engine.options.cancel.is_set()
    db = open_database(tmp_path / "state.sqlite")
    (status, last_seen, finished, summary), = db.execute(
        "SELECT status, last_seen, finished_at, summary FROM runs"
    ).fetchall()
    assert status == "interrupted" and last_seen is not None and finished is not None
    assert '"status": "interrupted"' in summary
    db.close()
