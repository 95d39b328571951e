"""End-to-end fixtures: a running Facebook sandbox, campaign folders, and the real CLI in a subprocess."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from crm_activation import SandboxServer
from crm_activation.connectors.facebook.sandbox import FacebookSandbox
from crm_activation.connectors.facebook.settings import FacebookCredentials

TOKEN = "e2e-facebook-token-7d1f0c9b"
ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).with_name("crm-activation")


def load_synth() -> Any:
    spec = importlib.util.spec_from_file_location("synth", ROOT / "bench" / "synth.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


CAMPAIGN = """\
campaign: e2e-winback
audience:
  source: {{type: csv, path: contacts.csv}}
segments:
  - {{name: high, when: [{{field: score, op: ">=", value: 0.7}}]}}
  - {{name: medium, when: [{{field: score, op: ">=", value: 0.4}}]}}
  - {{name: low}}
holdout: {{fraction: 0.5}}
channels:
  default: []
  by_country:
    - {{countries: [US, CA, GB, AU], platforms: [facebook]}}
platforms:
  facebook:
    account: {{ad_account_id: "act_55501", base_url: "{base_url}", requests_per_second: {rps}}}
    audiences:
      awareness: {{name: "E2E awareness"}}
      consideration: {{name: "E2E consideration"}}
      conversion: {{name: "E2E conversion"}}
sync: {{mode: incremental, batch_size: {batch_size}}}
state: {{path: state.sqlite}}
http: {{max_attempts: {max_attempts}, initial_wait: 0.001, max_wait: 0.01, read_timeout: {read_timeout}}}
"""


class CampaignDir:
    """A campaign folder: contacts CSV + campaign YAML pointing at the sandbox."""

    def __init__(self, folder: Path, base_url: str) -> None:
        self.folder = folder
        self.base_url = base_url
        self.yaml = folder / "campaign.yaml"
        self.contacts = folder / "contacts.csv"
        self.write_campaign()

    def write_campaign(
        self, batch_size: int = 10_000, max_attempts: int = 8, rps: float = 500, read_timeout: float = 30.0
    ) -> None:
        """The campaign file; the read timeout is generous unless a test injects slow responses and lowers it."""
        settings = {"batch_size": batch_size, "max_attempts": max_attempts, "rps": rps, "read_timeout": read_timeout}
        self.yaml.write_text(CAMPAIGN.format(base_url=self.base_url, **settings))

    def write_contacts(self, rows: list[dict[str, str]]) -> None:
        columns = list(rows[0]) if rows else ["contact_id"]
        with self.contacts.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def env(self, token: str = TOKEN) -> dict[str, str]:
        return {**os.environ, "CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN": token}

    def run(self, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CLI), *args], cwd=self.folder, env=self.env(token), capture_output=True, text=True, timeout=120
        )

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(CLI), *args], cwd=self.folder, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )

    def run_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.run("run", str(self.yaml), "--json", *args)
        assert done.stdout, done.stderr
        return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="session")
def synth() -> Any:
    return load_synth()


@pytest.fixture(scope="module")
def facebook_server() -> Iterator[tuple[FacebookSandbox, SandboxServer]]:
    app = FacebookSandbox(FacebookCredentials(access_token=SecretStr(TOKEN)))
    with SandboxServer(app) as server:
        yield app, server


@pytest.fixture
def facebook(facebook_server: tuple[FacebookSandbox, SandboxServer]) -> tuple[FacebookSandbox, SandboxServer]:
    facebook_server[0].reset()
    return facebook_server


@pytest.fixture
def campaign(tmp_path: Path, facebook: tuple[FacebookSandbox, SandboxServer]) -> CampaignDir:
    return CampaignDir(tmp_path, facebook[1].url)
