"""The README's commands, as a new user runs them: the bundled demo and the standalone sandbox server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from .conftest import CLI, ROOT


def sandbox_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (ROOT / "examples" / "sandbox.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            env[name] = value
    return env


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], cwd=cwd, env=sandbox_env(), capture_output=True, text=True, timeout=120)


def test_bundled_demo_runs_end_to_end(tmp_path: Path):
    done = run(
        "run", str(ROOT / "examples" / "campaign.yaml"), "--sandbox", "--json",
        "--state", str(tmp_path / "state.sqlite"), "--rejects", str(tmp_path / "rejects.csv"), cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["rows_read"] == 2000 == sum(summary["outcomes"].values())
    assert summary["outcomes"]["activated"] > 0 and summary["outcomes"]["rejected"] > 0
    assert summary["suppressed_reasons"].get("suppression list: asked not to be contacted") == 1
    for platform in summary["platforms"].values():
        assert platform["error"] is None
        assert sum(s["added"] for s in platform["stages"].values()) == platform["eligible"] > 0
    assert sum(summary["identity_enriched"].values()) > 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_standalone_sandbox_keeps_state_across_runs(tmp_path: Path):
    port = free_port()
    server = subprocess.Popen(
        [str(CLI), "sandbox", "--platform", "facebook", "--port-base", str(port), "--log-dir", str(tmp_path / "log")],
        env=sandbox_env(), stdout=subprocess.PIPE, text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/_sandbox/state", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        args = ("run", str(ROOT / "examples" / "campaign.yaml"), "--endpoint", f"facebook={url}", "--json",
                "--platform", "facebook", "--state", str(tmp_path / "state.sqlite"))
        first = json.loads(run(*args, cwd=tmp_path).stdout)
        second = json.loads(run(*args, cwd=tmp_path).stdout)
        added = [sum(s["added"] for s in r["platforms"]["facebook"]["stages"].values()) for r in (first, second)]
        assert added[0] > 0 and added[1] == 0
        state = json.loads(urllib.request.urlopen(f"{url}/_sandbox/state", timeout=5).read())
        assert sum(len(a["members"]) for a in state["audiences"].values()) == added[0]
        log_lines = (tmp_path / "log" / "facebook.jsonl").read_text().splitlines()
        assert log_lines and "sandbox-facebook-token" not in "".join(log_lines)
    finally:
        server.terminate()
        server.wait(timeout=10)
