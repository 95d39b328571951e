"""Property tests through the real engine and the Facebook sandbox.

For arbitrary small audiences — with e-mails, devices and ids shared between contacts, so one person can sit in
both holdout groups — no identifier of a control contact is ever sent, and a rerun with nothing changed sends
nothing.
"""

from __future__ import annotations

import csv
import os
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_activation.campaign.loader import load_campaign
from crm_activation.normalization import email_trimmed_lower, external_id_trimmed, maid_lower, sha256_hex
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.holdout import Group

from .conftest import CAMPAIGN, TOKEN

EMAILS = ["ann@example.com", " Ann@Example.com", "bob@example.org", "cy@example.net", "dee@example.com", "bad-email"]
MAIDS = ["", "", "6D92078A-8246-4BA4-AE5B-76104861E7DC", "a3f1c2d4-5b6e-4f70-8a9b-0c1d2e3f4a5b"]
EXTERNAL = ["", "", "mkt-1", "mkt-2"]

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "contact_id": st.text(alphabet="ABCDEFGHJK0123456789", min_size=1, max_size=6),
            "email": st.sampled_from([*EMAILS, ""]),
            "maid": st.sampled_from(MAIDS),
            "external_id": st.sampled_from(EXTERNAL),
            "country": st.sampled_from(["US", "GB", "FR", ""]),
            "funnel_stage": st.sampled_from(["awareness", "conversion", ""]),
            "score": st.sampled_from(["0.9", "0.5", "0.1", ""]),
            "consent_ad_user_data": st.sampled_from(["", "yes", "no"]),
        }
    ),
    min_size=1,
    max_size=25,
    unique_by=lambda row: row["contact_id"],
)


def identifiers_of(row: dict[str, str]) -> set[str]:
    """Every value Facebook could receive for this row, as the connector would send it."""
    values = set()
    if "@" in row["email"]:
        values.add(sha256_hex(email_trimmed_lower(row["email"], None)))
    if row["maid"]:
        values.add(maid_lower(row["maid"], None))
    if row["external_id"]:
        values.add(external_id_trimmed(row["external_id"], None))
    return values


@pytest.fixture(scope="module")
def token_env():
    os.environ["CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN"] = TOKEN
    yield
    del os.environ["CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=rows_strategy)
def test_no_control_identifier_is_ever_sent_and_rerun_sends_nothing(rows, facebook_server, token_env, tmp_path_factory):
    app, server = facebook_server
    app.reset()
    folder: Path = tmp_path_factory.mktemp("prop")
    (folder / "campaign.yaml").write_text(
        CAMPAIGN.format(base_url=server.url, batch_size=7, max_attempts=3, rps=1000, read_timeout=30)
    )
    with (folder / "contacts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    loaded = load_campaign(folder / "campaign.yaml")
    summary = Engine(loaded, RunOptions()).run()
    assert summary.status == "succeeded"
    assert sum(summary.outcomes.values()) == len(rows)

    ledger = sqlite3.connect(folder / "state.sqlite")
    groups = dict(ledger.execute("SELECT contact_id, grp FROM holdout"))
    ledger.close()
    control = [r for r in rows if groups[r["contact_id"]] == Group.CONTROL.value]
    forbidden = set().union(*(identifiers_of(r) for r in control)) if control else set()
    sent = "\n".join(r["body"] for r in app.requests)
    assert not [value for value in forbidden if value in sent]

    before = len(app.requests)
    again = Engine(loaded, RunOptions()).run()
    assert again.status == "succeeded"
    assert not [r for r in app.requests[before:] if "/users" in r["path"]]
