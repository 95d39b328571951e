"""The exposure ledger comes from the state database, read-only, with email variants when they exist."""

from __future__ import annotations

import sqlite3

import pytest

from crm_activation.measurement.ledger import load_ledger
from crm_activation.sdk.errors import InputError
from crm_activation.state.database import DatabaseError, open_database

from .conftest import CAMPAIGN_ID, DAY, START, write_ledger

ROWS = [
    ("a", "test", "US", "high", "email+facebook", "email+facebook", "awareness"),
    ("b", "control", "US", "high", "email+facebook", "email", "awareness"),
    ("c", "test", None, None, "", "", "awareness", "run-2"),
]


def open_state_readonly(path):
    return open_database(path, readonly=True)


def test_ledger_rows_entry_times_and_labels(tmp_path):
    path = write_ledger(tmp_path, ROWS, {"run-1": START, "run-2": START + 5 * DAY})
    ledger = load_ledger(open_state_readonly(path), CAMPAIGN_ID)
    assert ledger.start == START and len(ledger) == 3
    a, b, c = (ledger.contacts[k] for k in "abc")
    assert (a.group, a.treatment, a.reachable, a.entered_at) == ("test", "email+facebook", ("email", "facebook"), START)
    assert (b.group, b.reachable) == ("control", ("email",))
    assert (c.country, c.segment, c.treatment, c.entered_at) == ("(none)", "(none)", "(none)", START + 5 * DAY)
    assert all(e.variant is None for e in ledger) and "email_sends" in ledger.variant_source


def test_variants_from_the_email_send_ledger(tmp_path):
    path = write_ledger(tmp_path, ROWS)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE email_sends (campaign TEXT, contact_id TEXT, step INTEGER, variant TEXT, sent_at REAL)")
    db.executemany(
        "INSERT INTO email_sends VALUES (?, ?, ?, ?, 0)",
        [(CAMPAIGN_ID, "a", 1, "B"), (CAMPAIGN_ID, "a", 2, "B"), ("other", "b", 1, "A")],
    )
    db.commit()
    db.close()
    ledger = load_ledger(open_state_readonly(path), CAMPAIGN_ID)
    assert ledger.contacts["a"].variant == "B" and ledger.contacts["b"].variant is None
    assert not ledger.variants_matched and "would have reached" in ledger.variant_source


def test_missing_database_or_ledger_is_an_input_error_and_creates_nothing(tmp_path):
    with pytest.raises(InputError, match="state database not found"):
        open_state_readonly(tmp_path / "nope.sqlite")
    assert not (tmp_path / "nope.sqlite").exists()
    path = write_ledger(tmp_path, ROWS)
    with pytest.raises(InputError, match="no holdout ledger for campaign 'other'"):
        load_ledger(open_state_readonly(path), "other")
    db = open_state_readonly(path)
    with pytest.raises(DatabaseError, match="readonly"):
        db.execute("DELETE FROM holdout")
