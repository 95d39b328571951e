from __future__ import annotations

import hashlib
from pathlib import Path

from crm_activation.campaign.schema import SourceConfig
from crm_activation.pipeline.suppression import SuppressionList, email_key
from crm_activation.sdk.contact import Contact
from crm_activation.sdk.identifier_kinds import IdentifierKind as K

HASHED = hashlib.sha256(b"hashed@example.com").hexdigest()


def load(tmp_path: Path) -> SuppressionList:
    (tmp_path / "suppress.csv").write_text(
        "contact_id,email,reason\n"
        "c1,,complaint\n"
        ", Bob@Example.com ,\n"
        f",{HASHED.upper()},legal hold\n"
        ",,orphan\n"
        "c9,too,many,cells\n",
        encoding="utf-8",
    )
    return SuppressionList.load(SourceConfig(type="csv", path="suppress.csv"), tmp_path)


def test_matches_by_id_and_normalized_email(tmp_path: Path) -> None:
    listed = load(tmp_path)
    assert (listed.stats.rows, listed.stats.contact_ids, listed.stats.emails, listed.stats.skipped) == (5, 1, 2, 2)
    assert listed.reason_for(Contact(contact_id="c1")) == "suppression list: complaint"
    bob = Contact(contact_id="c2", identifiers={K.EMAIL: "bob@example.COM  "})
    assert listed.reason_for(bob) == "suppression list: listed"
    prehashed = Contact(contact_id="c3", identifiers={K.EMAIL: hashlib.sha256(b"bob@example.com").hexdigest()})
    assert listed.reason_for(prehashed) == "suppression list: listed"
    assert listed.reason_for(Contact(contact_id="c4", identifiers={K.EMAIL: "Hashed@example.com"})) == (
        "suppression list: legal hold"
    )
    assert listed.reason_for(Contact(contact_id="c5", identifiers={K.EMAIL: "ann@example.com"})) is None
    assert listed.reason_for(Contact(contact_id="c9")) is None  # its row was malformed, and counted as skipped


def test_emails_are_held_hashed_only(tmp_path: Path) -> None:
    listed = load(tmp_path)
    held = repr(vars(listed))
    assert "bob@example.com" not in held.lower()
    assert email_key(" Bob@Example.com ") == hashlib.sha256(b"bob@example.com").hexdigest()
    assert email_key(HASHED.upper()) == HASHED
