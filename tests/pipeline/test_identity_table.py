from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from crm_activation.campaign.schema import IdentityTableConfig
from crm_activation.pipeline.identity_table import IdentityTable
from crm_activation.sdk.identifier_kinds import IdentifierKind as K

TABLE = (
    "crm_id,maid,uid2,rampid,country,note\n"
    "c1,maid-table-1,uid2-1,,FR,x\n"
    "c2,,uid2-2,ramp-2,,\n"
    "c2,maid-2,uid2-other,ramp-other,,\n"  # duplicate key: fills only what row 3 left empty
    ",maid-nokey,,,,\n"
    "c3,,,,,\n"
)


def load(tmp_path: Path) -> IdentityTable:
    (tmp_path / "identity.csv").write_text(TABLE, encoding="utf-8")
    return IdentityTable.load(IdentityTableConfig(type="csv", path="identity.csv", key="crm_id"), tmp_path)


def test_enrich_fills_only_empty_cells_of_routed_records_and_counts(tmp_path: Path) -> None:
    table = load(tmp_path)
    assert len(table) == 3 and "c2" in table
    assert table.kinds == (K.MAID, K.UID2, K.RAMPID)  # country and unknown columns are never taken
    assert (table.counts.rows, table.counts.skipped, table.counts.duplicates) == (5, 1, 1)

    contact_ids = ["c1", "c2", "c3", "zz", "c2"]
    identifiers: dict[K, list[str | None]] = {
        K.MAID: ["maid-crm", None, None, None, "maid-own"],
        K.COUNTRY: ["US", None, None, None, None],
        K.EMAIL: [None, None, "e", None, None],
    }
    filled = table.enrich_columns(contact_ids, identifiers, [0, 1, 2, 3])  # record 4 is not routed: untouched
    assert identifiers[K.MAID] == ["maid-crm", "maid-2", None, None, "maid-own"]  # a CRM value is never replaced
    assert identifiers[K.UID2] == ["uid2-1", "uid2-2", None, None, None]
    assert identifiers[K.RAMPID] == [None, "ramp-2", None, None, None]
    assert identifiers[K.COUNTRY] == ["US", None, None, None, None] and identifiers[K.EMAIL][2] == "e"
    assert filled == {K.MAID: 1, K.UID2: 2, K.RAMPID: 1}

    counts = table.counts
    assert (counts.looked_up, counts.matched) == (4, 3)
    assert counts.enriched == {K.MAID: 1, K.UID2: 2, K.RAMPID: 1}


def test_jsonl_table_with_varying_keys_and_numeric_ids(tmp_path: Path) -> None:
    lines = [
        {"contact_id": 1, "maid": "m1"},
        {"contact_id": 2, "xandr_uid": 1234567890123456789},
        "not json",
    ]
    text = "\n".join(json.dumps(x) if isinstance(x, dict) else x for x in lines) + "\n"
    (tmp_path / "ids.jsonl").write_text(text, encoding="utf-8")
    table = IdentityTable.load(IdentityTableConfig(type="jsonl", path="ids.jsonl"), tmp_path)
    assert table.counts.skipped == 1
    assert table.identifiers_for("1") == {K.MAID: "m1"}
    assert table.identifiers_for("2") == {K.XANDR_UID: "1234567890123456789"}


def test_sqlite_table(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "ids.db") as db:
        db.execute("CREATE TABLE ids (contact_id TEXT, rampid TEXT)")
        db.execute("INSERT INTO ids VALUES ('c9', 'XY999')")
    db.close()
    table = IdentityTable.load(IdentityTableConfig(type="sql", url="sqlite:///ids.db", table="ids"), tmp_path)
    assert table.identifiers_for("c9") == {K.RAMPID: "XY999"}
