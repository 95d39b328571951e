"""The CLI's manners, through the installed `crm-activation` script: version, flags, help, exit codes, paths.

Ordinary events — a closed pipe, Ctrl-C, a busy port, a typo in an account setting — must end with one clear
line and a documented exit code, never a Python traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from crm_activation.cli.main import _parser

from .conftest import CLI, ROOT


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


def env_without_credentials() -> dict[str, str]:
    """The caller's environment minus every crm-activation variable: nothing exported by hand."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CRM_ACTIVATION_")}


def copy_example(folder: Path) -> Path:
    """The bundled example campaign and its CSV files in `folder`; returns the campaign file."""
    folder.mkdir(parents=True)
    for name in ("campaign.yaml", "contacts.csv", "identity.csv", "suppression.csv"):
        shutil.copy(ROOT / "examples" / name, folder / name)
    return folder / "campaign.yaml"


def test_version_prints_the_installed_version(tmp_path: Path):
    done = cli("--version", cwd=tmp_path)
    assert done.returncode == 0
    assert done.stdout.startswith("crm-activation ") and done.stdout.split()[1][0].isdigit()


def test_verbose_flag_is_accepted_after_the_subcommand(tmp_path: Path):
    after = cli("connectors", "--json", "-v", cwd=tmp_path)
    before = cli("-v", "connectors", "--json", cwd=tmp_path)
    assert after.returncode == 0 == before.returncode, after.stderr
    assert json.loads(after.stdout) == json.loads(before.stdout)


def test_help_shows_exit_codes_and_an_example_and_every_option_has_help(tmp_path: Path):
    done = cli("--help", cwd=tmp_path)
    assert done.returncode == 0
    assert "exit codes:" in done.stdout and "141" in done.stdout and "example:" in done.stdout
    assert "crm-activation run examples/campaign.yaml --sandbox" in done.stdout
    missing: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*path, name))
            elif not action.help:
                missing.append(f"{' '.join(path)} {'/'.join(action.option_strings) or action.dest}")

    walk(_parser(), ())
    assert missing == []


def test_a_closed_pipe_ends_quietly_with_141(tmp_path: Path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: as `| head -c 10` after its bytes
    try:
        done = subprocess.run([str(CLI), "connectors", "--json"], cwd=tmp_path, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_ctrl_c_in_any_command_is_one_line_and_exit_130(tmp_path: Path):
    """`email` commands did not share the run's Ctrl-C handling; a FIFO holds the command at a known point."""
    fifo = tmp_path / "email.yaml"
    os.mkfifo(fifo)
    process = subprocess.Popen([str(CLI), "email", "render", "welcome", "--config", str(fifo)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with open(fifo, "w"):  # returns once the command has opened the FIFO: it is now waiting for the YAML
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    assert stderr.strip() == "interrupted"


def test_a_busy_sandbox_port_is_one_error_line_and_exit_2(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = cli("sandbox", "--platform", "facebook", "--port-base", str(port), cwd=tmp_path,
                   env=env_without_credentials())
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {port} is already in use" in lines[0], done.stderr
    assert lines[0].startswith("error: facebook sandbox")


def test_sandbox_runs_need_no_credential_variables(tmp_path: Path):
    """The bundled demo, every platform and e-mail, from an environment without a single CRM_ACTIVATION_ variable."""
    campaign = copy_example(tmp_path / "campaign")
    done = cli("run", str(campaign), "--sandbox", "--json", cwd=tmp_path, env=env_without_credentials())
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    assert {p["error"] for p in summary["platforms"].values()} == {None}
    assert sum(s["added"] for s in summary["platforms"]["google_data_manager"]["stages"].values()) > 0
    assert "sandbox-" not in done.stderr  # the test values are never printed (they would be, were they real)


def test_command_line_paths_are_relative_to_the_current_folder(tmp_path: Path):
    """`--state out/x.sqlite` lands where `--rejects out/r.csv` does: under the current folder, not the campaign's."""
    campaign = copy_example(tmp_path / "campaign")
    work = tmp_path / "work"
    work.mkdir()
    done = cli("run", "../campaign/campaign.yaml", "--sandbox", "--platform", "facebook", "--json",
               "--state", "out/x.sqlite", "--rejects", "out/rejects.csv", cwd=work, env=env_without_credentials())
    assert done.returncode == 0, done.stderr
    assert (work / "out" / "x.sqlite").is_file() and (work / "out" / "rejects.csv").is_file()
    assert not (campaign.parent / "out").exists()
    # inside the campaign file, paths stay relative to the campaign's folder: contacts.csv was found there
    assert json.loads(done.stdout)["rows_read"] == 2000


def test_account_setting_errors_point_at_the_campaign_line(tmp_path: Path):
    campaign = copy_example(tmp_path / "campaign")
    text = campaign.read_text()
    assert 'account: {ad_account_id: "act_1234567890"}' in text
    campaign.write_text(text.replace('account: {ad_account_id: "act_1234567890"}',
                                     'account: {ad_acount_id: "act_1234567890"}'))
    line = next(i for i, row in enumerate(campaign.read_text().splitlines(), 1) if "ad_acount_id" in row)
    done = cli("run", str(campaign), "--sandbox", "--platform", "facebook", cwd=tmp_path,
               env=env_without_credentials())
    assert done.returncode == 2
    assert f"{campaign}:{line}: platforms.facebook.account.ad_account_id: required key is missing" in done.stderr
    assert f"{campaign}:{line}: platforms.facebook.account.ad_acount_id: unknown key" in done.stderr
    assert "act_1234567890" not in done.stderr and "validation error" not in done.stderr


def test_a_bad_fault_plan_is_one_usage_error(tmp_path: Path):
    for faults, says in (('{"throttle_rat": 1}', "throttle_rat: Extra inputs are not permitted"), ("{bad", "JSON")):
        done = cli("sandbox", "--faults", faults, cwd=tmp_path)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert f"argument --faults: not a fault plan ({says}" in done.stderr
