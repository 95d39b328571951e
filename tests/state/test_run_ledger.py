"""Issue 11 §4: a run killed without a chance to write its end is marked abandoned by the next run.

On SQLite and PostgreSQL, including state written before the `last_seen` column existed. Also: the state
connection is shared by the push threads, so its transactions must never interleave.
"""

from __future__ import annotations

import threading

import pytest

from crm_activation.state.database import open_database
from crm_activation.state.store import StateStore

OLD_RUNS = """
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, mode TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, status TEXT NOT NULL, summary TEXT
);
INSERT INTO runs VALUES ('old-run', 'spring', 'incremental', 100.0, NULL, 'running', NULL);
"""


@pytest.fixture(params=["sqlite", "postgres"])
def target(request, tmp_path):
    return tmp_path / "state.sqlite" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def run_rows(target) -> dict[str, tuple]:
    db = open_database(target)
    try:
        rows = db.execute("SELECT run_id, status, finished_at, last_seen FROM runs").fetchall()
        return {run_id: (status, finished, seen) for run_id, status, finished, seen in rows}
    finally:
        db.close()


def test_a_killed_run_is_marked_abandoned_when_last_seen(target):
    killed = StateStore(target)
    dead = killed.start_run("spring", "incremental", lock_wait=0)
    killed.heartbeat(dead, at=1234.5)  # its last acknowledged batch
    killed.db.close()  # killed: the lock goes with the process, the row still says "running"
    assert run_rows(target)[dead][0] == "running"

    store = StateStore(target)
    other = StateStore(target)
    other_run = other.start_run("autumn", "incremental", lock_wait=0)  # another campaign's live run is left alone
    run_id = store.start_run("spring", "incremental", lock_wait=0)
    assert store.abandoned == [(dead, 1234.5)]
    rows = run_rows(target)
    assert rows[dead] == ("abandoned", 1234.5, 1234.5)
    assert rows[run_id][0] == "running" and rows[other_run][0] == "running"
    store.finish_run(run_id, "succeeded", {})
    assert run_rows(target)[run_id][0] == "succeeded"
    store.close()
    other.close()


def test_state_from_before_the_heartbeat_column_is_migrated(target):
    db = open_database(target)
    db.apply_schema(OLD_RUNS)
    db.close()
    store = StateStore(target)
    StateStore(target).close()  # a second open finds the column there: no error
    store.start_run("spring", "incremental", lock_wait=0)
    assert store.abandoned == [("old-run", 100.0)]  # never seen: abandoned when it started
    assert run_rows(target)["old-run"] == ("abandoned", 100.0, None)
    store.close()


def test_the_push_threads_never_land_a_statement_inside_another_threads_transaction(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    store.db.apply_schema("CREATE TABLE IF NOT EXISTS t (n INTEGER)")
    inside = threading.Event()
    release = threading.Event()

    def transaction_with_rollback() -> None:
        with pytest.raises(RuntimeError), store.transaction():
            store.db.execute("INSERT INTO t VALUES (1)")
            inside.set()
            release.wait(30)
            raise RuntimeError("rolled back")

    worker = threading.Thread(target=transaction_with_rollback)
    worker.start()
    assert inside.wait(30)
    writer = threading.Thread(target=lambda: store.db.execute("INSERT INTO t VALUES (2)"))
    writer.start()  # must wait for the transaction to end, not join it (and be rolled back with it)
    writer.join(0.2)
    assert writer.is_alive()  # still waiting: with correct locking it waits for `release`, however long
    release.set()
    worker.join()
    writer.join()
    assert [row[0] for row in store.db.execute("SELECT n FROM t").fetchall()] == [2]
    store.close()
