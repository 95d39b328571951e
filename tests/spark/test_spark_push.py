"""`run_campaign` end to end: a DataFrame's audience pushed to every platform's sandbox from the driver.

The push is a local run's (same connectors, HTTP policy and state acknowledgements): the platforms end up holding
what a local run of the same records gives them, the acknowledged membership is written back as a table equal to
the state database's, and a resync after churn sends only the changes and leaves the platforms holding what a
first push of the churned records gives them.
"""

from __future__ import annotations

import csv
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from crm_activation import SandboxServer
from crm_activation.campaign.loader import load_campaign
from crm_activation.cli.local_sandboxes import start_sandboxes
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.summary import RunSummary
from crm_activation.state.store import StateStore

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("sandbox_credentials")]


@pytest.fixture
def campaign(cases: Any, tmp_path: Path) -> Path:
    rows = cases._messy_export(tmp_path, 800, seed=5)
    with (tmp_path / "contacts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "campaign.yaml").write_text(cases.CAMPAIGN.format(kind="csv", path="contacts.csv"))
    return tmp_path / "campaign.yaml"


@contextmanager
def sandboxes(campaign: Path) -> Iterator[dict[str, SandboxServer]]:
    platforms = load_campaign(campaign).campaign.platforms
    servers = start_sandboxes(collect_connectors(make_plugin_manager()), list(platforms), dict(platforms))
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def held(servers: dict[str, SandboxServer]) -> dict[str, dict[str, list[str]]]:
    """What each platform holds: its audiences by name, with their members (platform ids left out)."""
    return {
        slug: {
            audience["name"]: sorted(json.dumps(member, sort_keys=True) for member in audience["members"])
            for audience in server.app.state()["audiences"].values()
        }
        for slug, server in servers.items()
    }


def push_on_spark(frame: Any, campaign: Path, state: Path, servers: dict[str, SandboxServer]) -> RunSummary:
    from crm_activation.spark import run_campaign

    options = RunOptions(state=str(state), base_urls={slug: s.url for slug, s in servers.items()})
    return run_campaign(frame, campaign, order="row", options=options, acknowledged_table="crm_acknowledged")


def acknowledged(state: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(state) as db:
        return db.execute(
            "SELECT platform, audience_key, contact_id, fingerprint, payload FROM memberships ORDER BY 1, 2, 3"
        ).fetchall()


def test_the_platforms_hold_what_a_local_run_gives_them(
    spark: Any, csv_frame: Callable[[Path], Any], campaign: Path, tmp_path: Path
) -> None:
    with sandboxes(campaign) as servers:
        local = Engine(
            load_campaign(campaign),
            RunOptions(state=str(tmp_path / "local.sqlite"), base_urls={s: v.url for s, v in servers.items()}),
        ).run()
        assert local.status == "succeeded"
        expected = held(servers)
    with sandboxes(campaign) as servers:
        frame = csv_frame(campaign.with_name("contacts.csv"))
        summary = push_on_spark(frame, campaign, tmp_path / "s.sqlite", servers)
        assert summary.status == "succeeded", {s: p.error for s, p in summary.platforms.items() if p.error}
        assert held(servers) == expected
    assert sum(p.eligible for p in summary.platforms.values()) > 500
    table = spark.table("crm_acknowledged").drop("synced_at").orderBy("platform", "audience_key", "contact_id")
    assert [tuple(row) for row in table.collect()] == acknowledged(tmp_path / "s.sqlite") == acknowledged(
        tmp_path / "local.sqlite"
    )
    # written again in pages of 97 members (the first replaces the table, the others append): the same table
    from crm_activation.spark import write_acknowledged

    state = StateStore(load_campaign(campaign).open_state(str(tmp_path / "s.sqlite"), readonly=True))
    try:
        write_acknowledged(frame, state, "compare", "crm_acknowledged", page_rows=97)
    finally:
        state.close()
    table = spark.table("crm_acknowledged").drop("synced_at").orderBy("platform", "audience_key", "contact_id")
    assert [tuple(row) for row in table.collect()] == acknowledged(tmp_path / "s.sqlite")


def test_a_resync_after_churn_sends_only_the_changes(
    spark: Any, csv_frame: Callable[[Path], Any], campaign: Path, tmp_path: Path
) -> None:
    from pyspark.sql import functions as F

    frame = csv_frame(campaign.with_name("contacts.csv"))
    state = tmp_path / "state.sqlite"
    with sandboxes(campaign) as servers:
        first = push_on_spark(frame, campaign, state, servers)
        assert first.status == "succeeded"
        changed = F.col("row") % 50 == 0  # one record in fifty gets a new address
        churned = frame.withColumn("email", F.when(changed, F.concat(F.lit("new."), "email")).otherwise(F.col("email")))
        second = push_on_spark(churned, campaign, state, servers)
        assert second.status == "succeeded"
        sent = sum(s.added + s.removed for p in second.platforms.values() for s in p.stages.values())
        members = sum(s.added for p in first.platforms.values() for s in p.stages.values())
        assert 0 < sent < members * 0.1
        resynced = held(servers)
    with sandboxes(campaign) as servers:  # the churned records pushed at once, on fresh platforms
        assert push_on_spark(churned, campaign, tmp_path / "fresh.sqlite", servers).status == "succeeded"
        assert held(servers) == resynced
    table = spark.table("crm_acknowledged").drop("synced_at").orderBy("platform", "audience_key", "contact_id")
    assert [tuple(row) for row in table.collect()] == acknowledged(tmp_path / "fresh.sqlite") == acknowledged(state)
