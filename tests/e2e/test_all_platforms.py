"""The bundled campaign on every platform's sandbox at once, clean and with every sandbox misbehaving."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crm_activation import FaultPlan, SandboxServer
from crm_activation.campaign.loader import LoadedCampaign, load_campaign
from crm_activation.campaign.schema import HttpConfig, SyncConfig
from crm_activation.cli.local_sandboxes import start_sandboxes
from crm_activation.email.smtp_relay import SmtpSandbox
from crm_activation.pipeline.engine import Engine, RunOptions, RunProgress
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.summary import RunSummary

from .conftest import ROOT
from .test_demo import sandbox_env


def membership(state: dict[str, Any]) -> dict[str, list[str]]:
    """A sandbox's audiences by name with their members (the standard state shape), platform ids left out."""
    return {
        audience["name"]: [json.dumps(member, sort_keys=True) for member in audience["members"]]
        for audience in state["audiences"].values()
    }


@pytest.fixture
def campaign(monkeypatch: pytest.MonkeyPatch) -> LoadedCampaign:
    for name, value in sandbox_env().items():
        if name.startswith("CRM_ACTIVATION_"):
            monkeypatch.setenv(name, value)
    loaded = load_campaign(ROOT / "examples" / "campaign.yaml")
    fast = HttpConfig(max_attempts=12, initial_wait=0.001, max_wait=0.01, read_timeout=0.5)
    settings = {"sync": SyncConfig(batch_size=40), "http": fast}
    return dataclasses.replace(loaded, campaign=loaded.campaign.model_copy(update=settings))


def run(campaign: LoadedCampaign, state: Path, faults: FaultPlan | None) -> Iterator[tuple[RunSummary, dict]]:
    connectors = collect_connectors(make_plugin_manager())
    servers: dict[str, SandboxServer] = start_sandboxes(
        connectors, list(campaign.campaign.platforms), dict(campaign.campaign.platforms), faults=faults
    )
    relay = SmtpSandbox().start()
    try:
        options = RunOptions(
            state=state, base_urls={slug: s.url for slug, s in servers.items()}, smtp=(relay.host, relay.port)
        )
        summary = Engine(campaign, options).run()
        yield summary, servers, relay
    finally:
        relay.stop()
        for server in servers.values():
            server.stop()


def test_every_platform_reaches_the_intended_state_despite_faults(campaign: LoadedCampaign, tmp_path: Path):
    for clean, clean_servers, relay in run(campaign, tmp_path / "clean.sqlite", None):
        assert clean.status == "succeeded"
        recipients = [r for mail in relay.received for r in mail.recipients]
        assert len(recipients) == len(set(recipients)) == clean.platforms["email"].messages["sent"] > 0
        assert clean.rows_read == sum(clean.outcomes.values()) == 2000
        intended = {slug: membership(server.app.state()) for slug, server in clean_servers.items()}
        for slug, platform in clean.platforms.items():
            assert sum(s.added for s in platform.stages.values()) == platform.eligible > 0, slug  # e-mail: sent
            assert platform.offered == platform.eligible + platform.suppressed + platform.unreachable, slug

    faults = FaultPlan(throttle_rate=0.15, server_error_rate=0.1, timeout_rate=0.04, timeout_seconds=0.7, seed=7)
    for faulty, servers, _ in run(campaign, tmp_path / "faulty.sqlite", faults):
        assert faulty.status == "succeeded", {s: p.error for s, p in faulty.platforms.items() if p.error}
        seen = {r["fault"] for server in servers.values() for r in server.app.requests if r["fault"]}
        assert seen == {"throttle", "server_error", "timeout"}
        for slug, server in servers.items():
            assert membership(server.app.state()) == intended[slug], f"{slug} differs from the clean run"
        for server in servers.values():
            server.app.set_faults(FaultPlan())
        before = {slug: len(server.app.requests) for slug, server in servers.items()}
        options = RunOptions(state=tmp_path / "faulty.sqlite", base_urls={s: v.url for s, v in servers.items()})
        options.smtp = None  # nothing is due again today: the e-mail phase must not even connect
        again = Engine(campaign, options).run()
        assert again.status == "succeeded"
        for slug, platform in again.platforms.items():
            assert all(s.added == 0 and s.removed == 0 for s in platform.stages.values()), slug
            if slug in servers:  # e-mail has no sandbox platform state: nothing was due, nothing sent
                assert membership(servers[slug].app.state()) == intended[slug]
        assert sum(len(s.app.requests) - before[slug] for slug, s in servers.items()) < 40  # checks and lookups only


def test_every_platform_records_only_what_it_holds_when_every_batch_is_partly_refused(
    campaign: LoadedCampaign, tmp_path: Path
):
    """Each batch refuses about one record in ten, naming at most two per answer where the platform can leave names
    out (Meta's samples, Xandr's error log): per audience, the state records as many members as the sandbox
    holds, no refused contact among them, and the rejects file names each refused one."""
    import csv
    import sqlite3

    faults = FaultPlan(partial_reject_rate=1.0, reject_names=2, seed=3)
    connectors = collect_connectors(make_plugin_manager())
    servers = start_sandboxes(
        connectors, list(campaign.campaign.platforms), dict(campaign.campaign.platforms), faults=faults
    )
    state_path, rejects_path = tmp_path / "state.sqlite", tmp_path / "rejects.csv"
    try:
        options = RunOptions(
            state=state_path, rejects=rejects_path, base_urls={slug: s.url for slug, s in servers.items()},
            platforms=list(servers),
        )
        summary = Engine(campaign, options).run()
        assert summary.status == "succeeded", {s: p.error for s, p in summary.platforms.items() if p.error}
        with sqlite3.connect(state_path) as db:
            remote = dict(db.execute("SELECT platform || ' ' || audience_key, remote_id FROM audiences"))
            recorded = db.execute("SELECT platform, audience_key, contact_id FROM memberships").fetchall()
        with rejects_path.open() as handle:
            refused = {(r["platform"], r["contact_id"]) for r in csv.DictReader(handle) if r["contact_id"]}
        named_some = set()
        for slug, server in servers.items():
            held = {rid: len(a["members"]) for rid, a in server.app.state()["audiences"].items()}
            mine = {rid: 0 for rid in held}
            for platform, key, _ in recorded:
                if platform == slug:
                    mine[remote[f"{slug} {key}"]] += 1
            stages = summary.platforms[slug].stages.values()
            if slug == "xandr":  # its sandbox holds users (one per id a contact has), not contacts
                assert all(mine[rid] <= held[rid] for rid in held), slug
            else:
                assert mine == held, slug
                assert sum(s.added for s in stages) == sum(held.values()), slug
            assert sum(s.refused for s in stages) == len({c for p, c in refused if p == slug}), slug
            if any(s.refused for s in stages):
                named_some.add(slug)
        assert not refused & {(platform, contact_id) for platform, _, contact_id in recorded}
        assert {"facebook", "xandr", "linkedin"} <= named_some  # DV360 accepts or refuses whole requests
    finally:
        for server in servers.values():
            server.stop()


class RecordingProgress(RunProgress):
    """Every progress call, summed per kind and channel (the push threads call it concurrently)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.linked_rows = self.onboarded = 0
        self.total: int | None = None
        self.started: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def linked(self, n: int) -> None:
        self.linked_rows += n

    def rows_total(self, total: int) -> None:
        self.total = total

    def rows(self, n: int) -> None:
        self.onboarded += n

    def platform_started(self, platform: str, total: int) -> None:
        with self.lock:
            self.started[platform] = total

    def pushed(self, platform: str, n: int) -> None:
        with self.lock:
            self.done[platform] = self.done.get(platform, 0) + n


def test_every_long_phase_reports_progress_with_its_total(campaign: LoadedCampaign, tmp_path: Path):
    connectors = collect_connectors(make_plugin_manager())
    servers = start_sandboxes(connectors, list(campaign.campaign.platforms), dict(campaign.campaign.platforms))
    relay = SmtpSandbox().start()
    progress = RecordingProgress()
    try:
        options = RunOptions(
            state=tmp_path / "s.sqlite", base_urls={s: v.url for s, v in servers.items()}, smtp=(relay.host, relay.port)
        )
        summary = Engine(campaign, options, progress=progress).run()
    finally:
        relay.stop()
        for server in servers.values():
            server.stop()
    assert summary.status == "succeeded"
    assert progress.linked_rows == progress.total == progress.onboarded == summary.rows_read == 2000
    assert set(progress.started) == set(summary.platforms)  # every channel, e-mail included
    assert progress.done == progress.started and progress.started["email"] == summary.platforms["email"].eligible
