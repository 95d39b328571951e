from __future__ import annotations

import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from crm_activation.campaign.schema import SourceConfig
from crm_activation.pipeline.sources import FETCH_SIZE, SourceRow, mask_url, open_rows, quote_identifier
from crm_activation.sdk.errors import InputError


def csv_source(path: str = "contacts.csv", **extra: str) -> SourceConfig:
    return SourceConfig(type="csv", path=path, **extra)


def test_csv_with_bom_and_quoted_newlines_numbers_physical_lines(tmp_path: Path) -> None:
    text = (
        "contact_id,email,note\r\n"  # line 1 (header, after a BOM)
        "c1,a@example.com,plain\r\n"  # line 2
        '"c2",b@example.com,"two\r\nlines"\r\n'  # lines 3-4
        "  \r\n"  # line 5: blank, skipped
        'c3,c@example.com,"say ""hi"""\r\n'  # line 6
    )
    (tmp_path / "contacts.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    rows = list(open_rows(csv_source(), tmp_path))
    rows_seen = [(r.row, r.fields["contact_id"], r.error) for r in rows]
    assert rows_seen == [(2, "c1", None), (3, "c2", None), (6, "c3", None)]
    assert rows[0] == SourceRow("contacts.csv", 2, {"contact_id": "c1", "email": "a@example.com", "note": "plain"})
    assert rows[1].fields["note"] == "two\r\nlines"
    assert rows[2].fields["note"] == 'say "hi"'


def test_csv_wrong_cell_count_is_still_yielded_as_an_error_row(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text("contact_id,email\nc1,a@x.org,extra\nc2\nc3,c@x.org\n", encoding="utf-8")
    rows = list(open_rows(csv_source(), tmp_path))
    assert [r.row for r in rows] == [2, 3, 4]
    assert rows[0].error == "record on line 2 has 3 cells, the header has 2"
    assert rows[1].error == "record on line 3 has 1 cells, the header has 2"
    assert rows[1].fields == {"contact_id": "c2"}
    assert rows[2].error is None
    for row in rows[:2]:  # no cell value (personal data) in the reason
        assert "a@x.org" not in (row.error or "")


def test_csv_record_spanning_lines_reports_its_span(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text('contact_id,email\nc1,"a\nb",x\nc2,y\n', encoding="utf-8")
    rows = list(open_rows(csv_source(), tmp_path))
    assert rows[0].row == 2 and rows[0].error == "record on lines 2-3 has 3 cells, the header has 2"
    assert rows[1].row == 4 and rows[1].error is None


def test_csv_unreadable_records_are_error_rows_and_reading_goes_on(tmp_path: Path) -> None:
    big = "x" * 200_000
    (tmp_path / "c.csv").write_text(f'contact_id,note\nc1,{big}\nc2,"a"b\nc3,ok\nc4,"never closed\nc5,z\n')
    rows = list(open_rows(csv_source("c.csv"), tmp_path))
    assert [(r.row, r.error) for r in rows] == [
        (2, "unreadable CSV record on line 2: field larger than field limit (131072)"),
        (3, "unreadable CSV record on line 3: ',' expected after '\"'"),
        (4, None),
        (5, "unreadable CSV record on lines 5-6: unexpected end of data"),
    ]


def test_csv_delimiter_encoding_and_invalid_bytes(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes("contact_id;city\nc1;Zürich\n".encode("latin-1"))
    rows = list(open_rows(csv_source("c.csv", delimiter=";", encoding="latin-1"), tmp_path))
    assert rows[0].fields == {"contact_id": "c1", "city": "Zürich"}
    (tmp_path / "bad.csv").write_bytes(b"contact_id,city\nc1,Z\xfcrich\nc2,Bern\n")
    rows = list(open_rows(csv_source("bad.csv"), tmp_path))
    assert rows[0].error == "not valid utf-8-sig text" and rows[1].error is None


def test_csv_trailing_delimiters_and_header_only(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(" contact_id ,email,\nc1,e,\n", encoding="utf-8")
    assert [r.fields for r in open_rows(csv_source("c.csv"), tmp_path)] == [{"contact_id": "c1", "email": "e"}]
    (tmp_path / "h.csv").write_text("contact_id,email\n", encoding="utf-8")
    assert list(open_rows(csv_source("h.csv"), tmp_path)) == []


def test_csv_empty_file_or_duplicate_header_is_an_input_error(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no header line"):
        list(open_rows(csv_source("empty.csv"), tmp_path))
    (tmp_path / "dup.csv").write_text("email,email\n", encoding="utf-8")
    with pytest.raises(InputError, match="'email' appears twice"):
        list(open_rows(csv_source("dup.csv"), tmp_path))


def test_missing_file_is_an_input_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        open_rows(csv_source("nope.csv"), tmp_path)  # raised at once, before iterating
    assert str(tmp_path / "nope.csv") in str(caught.value)
    with pytest.raises(InputError, match="not found"):
        open_rows(SourceConfig(type="jsonl", path="nope.jsonl"), tmp_path)
    with pytest.raises(InputError, match="SQLite database not found"):
        open_rows(SourceConfig(type="sql", url="sqlite:///nope.db", table="t"), tmp_path)
    assert not (tmp_path / "nope.db").exists()


def test_jsonl_lines_bad_json_and_non_objects(tmp_path: Path) -> None:
    lines = [
        '{"contact_id": "c1", "preferred_categories": ["web", "design"], "score": 0.5, "consent_email": true}',
        "",
        '{"contact_id": "c2", "email": "x@example.com"',
        "[1, 2]",
        '  {"contact_id": 3}  ',
        '"just a string"',
    ]
    (tmp_path / "c.jsonl").write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
    rows = list(open_rows(SourceConfig(type="jsonl", path="c.jsonl"), tmp_path))
    assert [r.row for r in rows] == [1, 3, 4, 5, 6]
    assert rows[0].fields == {
        "contact_id": "c1",
        "preferred_categories": ["web", "design"],
        "score": 0.5,
        "consent_email": True,
    }
    assert rows[1].error is not None and rows[1].error.startswith("not valid JSON: ")
    assert "x@example.com" not in rows[1].error
    assert rows[2].error == "a JSON array, not an object"
    assert rows[3].fields == {"contact_id": 3} and rows[3].error is None
    assert rows[4].error == "a JSON string, not an object"


def make_db(path: Path, n: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE "crm contacts" (contact_id TEXT, score REAL, hires INTEGER, blob BLOB, note TEXT)')
        db.executemany(
            'INSERT INTO "crm contacts" VALUES (?, ?, ?, ?, ?)',
            [(f"c{i}", i / 10, i, b"\xc3\xa9", None) for i in range(1, n + 1)],
        )
    db.close()


def test_sqlite_table_streams_in_batches(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.db", FETCH_SIZE + 5)
    config = SourceConfig(type="sql", url="sqlite:///crm.db", table="crm contacts")
    rows = list(open_rows(config, tmp_path))
    assert len(rows) == FETCH_SIZE + 5
    assert rows[0] == SourceRow(
        "sqlite:///crm.db", 1, {"contact_id": "c1", "score": 0.1, "hires": 1, "blob": "é", "note": None}
    )
    assert rows[-1].row == FETCH_SIZE + 5 and rows[-1].fields["contact_id"] == f"c{FETCH_SIZE + 5}"


def test_sqlite_query_with_absolute_url(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.db", 3)
    url = f"sqlite:///{tmp_path / 'crm.db'}"
    query = 'SELECT contact_id AS id, hires * 2 AS double FROM "crm contacts" WHERE hires > 1 ORDER BY hires'
    rows = list(open_rows(SourceConfig(type="sql", url=url, query=query), Path("/elsewhere")))
    assert [(r.row, r.fields) for r in rows] == [(1, {"id": "c2", "double": 4}), (2, {"id": "c3", "double": 6})]


def test_sqlite_bad_query_is_an_input_error(tmp_path: Path) -> None:
    make_db(tmp_path / "crm.db", 1)
    config = SourceConfig(type="sql", url="sqlite:///crm.db", table="missing")
    with pytest.raises(InputError, match="query failed: no such table"):
        list(open_rows(config, tmp_path))


def test_sql_helpers() -> None:
    assert quote_identifier('my."odd" table') == '"my"."""odd"" table"'
    assert quote_identifier("public.contacts") == '"public"."contacts"'
    assert mask_url("postgresql://crm:s3cret@db.internal:5432/crm") == "postgresql://crm:***@db.internal:5432/crm"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(InputError):
        quote_identifier("a..b")


def test_postgres_without_psycopg_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` sees where the extra is missing
    config = SourceConfig(type="sql", url="postgresql://u:pw@localhost/db", table="contacts")
    with pytest.raises(InputError, match=r"crm-activation\[postgres\]") as caught:
        list(open_rows(config, Path(".")))
    assert "pw" not in str(caught.value)


def test_postgres_state_without_psycopg_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from crm_activation.sdk.errors import ConfigError
    from crm_activation.state.database import open_database

    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigError, match=r"crm-activation\[postgres\]"):
        open_database("postgresql://u@localhost/db")


def test_sql_values_are_made_json_like() -> None:
    from crm_activation.pipeline.sources import _plain

    assert _plain(Decimal("3")) == 3 and isinstance(_plain(Decimal("3")), int)
    assert _plain(Decimal("2.5")) == 2.5
