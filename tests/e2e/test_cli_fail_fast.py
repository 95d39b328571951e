"""Issue 11 §4 through the real CLI: fail fast with a platform down, recover cleanly from a kill or Ctrl-C,
and leave a running job's outputs alone when its lock cannot be taken."""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from crm_activation.state.store import StateStore

from .conftest import CampaignDir

#: A bound on waits for something the code under test does promptly; reaching it fails the test.
BOUND = 60.0


def runs(folder: Path) -> list[tuple]:
    with sqlite3.connect(folder / "state.sqlite", timeout=BOUND) as db:
        return db.execute("SELECT run_id, status, started_at, finished_at, last_seen FROM runs").fetchall()


def wait_for(condition, process: subprocess.Popen) -> None:
    """Poll until `condition()` holds (the run got that far); fail if the run ended first or took too long."""
    deadline = time.monotonic() + BOUND
    while not condition():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.01)


def acknowledged(folder: Path) -> int:
    try:
        with sqlite3.connect(folder / "state.sqlite", timeout=BOUND) as db:
            return int(db.execute("SELECT COUNT(*) FROM batches").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_a_platform_that_is_down_fails_after_a_few_attempts_saying_so(campaign: CampaignDir, synth) -> None:
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    campaign.write_contacts(list(synth.generate_contacts(50, seed=2)))
    text = campaign.yaml.read_text().replace(campaign.base_url, closed)
    campaign.yaml.write_text(text.replace("http: {max_attempts: 8,", "http: {"))  # the default waits
    code, summary = campaign.run_json()
    assert code == 1
    facebook = summary["platforms"]["facebook"]
    assert facebook["requests"] == 3  # before: 8, the last waits up to 32 s apart
    assert facebook["error"].startswith("CannotConnectError: facebook: gave up after 3 attempts over ")
    assert facebook["error"].endswith(": connection refused")


def test_a_killed_run_is_marked_abandoned_by_the_next_run(campaign: CampaignDir, facebook, synth) -> None:
    campaign.write_contacts(list(synth.generate_contacts(1200, seed=9)))
    campaign.write_campaign(batch_size=20, rps=25)
    process = campaign.start("run", str(campaign.yaml), "--json")
    wait_for(lambda: acknowledged(campaign.folder) >= 2 and runs(campaign.folder)[0][4] is not None, process)
    process.kill()  # SIGKILL: the run cannot write its end
    process.communicate()
    (killed, status, started, _, seen), = runs(campaign.folder)
    assert status == "running" and seen >= started

    campaign.write_campaign(batch_size=20)
    code, summary = campaign.run_json()
    assert code == 0, summary
    assert any(f"run {killed} never finished" in warning and "abandoned" in warning for warning in summary["warnings"])
    rows = {row[0]: row for row in runs(campaign.folder)}
    assert rows[killed][1] == "abandoned" and rows[killed][3] == rows[killed][4] == seen  # ended when last seen
    assert rows[summary["run_id"]][1] == "succeeded"


def test_ctrl_c_records_what_was_acknowledged_and_says_how_to_resume(campaign: CampaignDir, facebook, synth) -> None:
    app, _ = facebook
    campaign.write_contacts(list(synth.generate_contacts(1200, seed=9)))
    campaign.write_campaign(batch_size=20, rps=25)
    process = campaign.start("run", str(campaign.yaml))
    wait_for(lambda: acknowledged(campaign.folder) >= 2, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=BOUND)
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "Run the same command again to resume" in stderr
    (run_id, status, _, finished, _), = runs(campaign.folder)
    assert status == "interrupted" and finished is not None and run_id in stderr
    done_before = acknowledged(campaign.folder)

    campaign.write_campaign(batch_size=20)
    code, summary = campaign.run_json()
    assert code == 0, summary
    eligible = summary["platforms"]["facebook"]["eligible"]
    added = sum(stage["added"] for stage in summary["platforms"]["facebook"]["stages"].values())
    # The rerun did not redo what was acknowledged: each acknowledged batch held 20 members but the last of each
    # of the three stage audiences (with several batches in flight, more than one may be among those acknowledged).
    assert added <= eligible - 20 * (done_before - 3)
    assert sum(len(a["members"]) for a in app.state()["audiences"].values()) == eligible


def test_a_run_that_cannot_take_the_lock_touches_no_output(campaign: CampaignDir, facebook, synth) -> None:
    campaign.write_contacts(list(synth.generate_contacts(50, seed=4)))
    running = StateStore(campaign.folder / "state.sqlite")
    running.db.lock_campaign("e2e-winback", 0)  # the job that is still going
    try:
        rejects = campaign.folder / "rejects.csv"
        rejects.write_text("the running job's rejects\n")
        outbox = campaign.folder / "outbox"
        outbox.mkdir()
        (outbox / "facebook.jsonl").write_text("the running dry run's requests\n")
        (outbox / "plan.csv").write_text("the running dry run's plan\n")

        done = campaign.run("run", str(campaign.yaml), "--lock-wait", "0", "--rejects", str(rejects))
        assert done.returncode == 3, done.stderr
        assert rejects.read_text() == "the running job's rejects\n"  # before: truncated to a header

        done = campaign.run("run", str(campaign.yaml), "--dry-run", "--lock-wait", "0", "--outbox", str(outbox),
                            "--rejects", str(rejects))
        assert done.returncode == 3, done.stderr
        assert (outbox / "facebook.jsonl").read_text() == "the running dry run's requests\n"
        assert (outbox / "plan.csv").read_text() == "the running dry run's plan\n"
        assert rejects.read_text() == "the running job's rejects\n"
    finally:
        running.close()
    code, summary = campaign.run_json("--rejects", str(rejects))  # once the lock is free, all as usual
    assert code == 0 and summary["status"] == "succeeded"
