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
    # the reason is the same for both rows (the summary groups by it); the rejects file gets the particulars
    assert rows[0].error == rows[1].error == "wrong number of cells (the header has 2)"
    assert rows[0].detail == "record on line 2 has 3 cells, the header has 2"
    assert rows[1].detail == "record on line 3 has 1 cells, the header has 2"
    assert rows[1].fields == {"contact_id": "c2"}
    assert rows[2].error is None
    for row in rows[:2]:  # no cell value (personal data) in the reason
        assert "a@x.org" not in f"{row.error} {row.detail}"


def test_csv_record_spanning_lines_reports_its_span(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text('contact_id,email\nc1,"a\nb",x\nc2,y\n', encoding="utf-8")
    rows = list(open_rows(csv_source(), tmp_path))
    assert rows[0].row == 2 and rows[0].detail == "record on lines 2-3 has 3 cells, the header has 2"
    assert rows[1].row == 4 and rows[1].error is None


def test_csv_unreadable_records_are_error_rows_and_reading_goes_on(tmp_path: Path) -> None:
    big = "x" * 200_000  # above the csv module's default field limit (131,072): read all the same
    (tmp_path / "c.csv").write_text(f'contact_id,note\nc1,{big}\nc2,"a"b\nc3,ok\nc4,"never closed\nc5,z\n')
    rows = list(open_rows(csv_source("c.csv"), tmp_path))
    assert [(r.row, r.error, r.column) for r in rows] == [
        (2, None, None),
        (3, "unreadable CSV record: ',' expected after '\"'", None),
        (4, None, None),
        (5, "unreadable CSV record: a quote is never closed", "note"),
        (6, None, None),
    ]
    assert rows[0].fields["note"] == big and rows[4].fields == {"contact_id": "c5", "note": "z"}
    assert rows[3].detail == (
        "unreadable CSV record: a quote is never closed (the record ran over lines 5-6; only line 5 is rejected, "
        "reading resumed at line 6)"
    )


def test_csv_delimiter_encoding_and_invalid_bytes(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes("contact_id;city\nc1;Zürich\n".encode("latin-1"))
    rows = list(open_rows(csv_source("c.csv", delimiter=";", encoding="latin-1"), tmp_path))
    assert rows[0].fields == {"contact_id": "c1", "city": "Zürich"}
    (tmp_path / "bad.csv").write_bytes(b"contact_id,city\nc1,Z\xfcrich\nc2,Bern\n")
    rows = list(open_rows(csv_source("bad.csv"), tmp_path))
    assert (rows[0].error, rows[0].column) == ("not valid UTF-8", "city") and rows[1].error is None
    assert rows[0].detail == "not valid UTF-8: byte 0xFC at offset 4 of line 2"


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
    from crm_activation.pipeline.sources import json_like

    assert json_like(Decimal("3")) == 3 and isinstance(json_like(Decimal("3")), int)
    assert json_like(Decimal("2.5")) == 2.5


# -- input that must not lose contacts -----------------------------------------------------------------------
def valid_rows(first: int, count: int) -> str:
    return "".join(f"c{i},user{i}@example.com,plain note {i}\n" for i in range(first, first + count))


def read_csv(tmp_path: Path, text: str) -> list[SourceRow]:
    (tmp_path / "c.csv").write_text("contact_id,email,note\n" + text, encoding="utf-8")
    return list(open_rows(csv_source("c.csv"), tmp_path))


def test_csv_megabyte_quoted_multiline_field_reads_every_record(tmp_path: Path) -> None:
    lines = [f"line {i} of a long note, with commas, and \"\"quotes\"\"" for i in range(20_000)]
    field = "\n".join(lines)  # 1 MB, 20,000 physical lines, embedded delimiters and doubled quotes
    assert len(field) > 1_000_000
    rows = read_csv(tmp_path, valid_rows(1, 3) + f'c4,d@example.com,"{field}"\n' + valid_rows(5, 3))
    assert [r.error for r in rows] == [None] * 7
    assert [r.fields["contact_id"] for r in rows] == [f"c{i}" for i in range(1, 8)]
    assert rows[3].fields["note"] == field.replace('""', '"')
    assert [r.row for r in rows] == [2, 3, 4, 5, 20_005, 20_006, 20_007]  # physical lines, as an editor shows


@pytest.mark.parametrize(
    ("after", "note_30"),
    [
        pytest.param(valid_rows(10, 50), "plain note 30", id="no-quote-after-it"),  # runs to the end of the file
        pytest.param(valid_rows(10, 20) + 'c30,x@example.com,"quoted, fine"\n' + valid_rows(31, 29), "quoted, fine",
                     id="a-later-quote-closes-it"),  # the runaway field ends in a strict-mode error
    ],
)
def test_csv_unterminated_quote_loses_only_its_record(tmp_path: Path, after: str, note_30: str) -> None:
    rows = read_csv(tmp_path, valid_rows(1, 8) + 'c9,broken@example.com,"Smith, J\n' + after)
    assert len(rows) == 59 and rows[8].row == 10
    assert rows[8].error is not None and rows[8].error.startswith("unreadable CSV record: ")
    assert rows[8].fields == {}
    assert "reading resumed at line 11" in (rows[8].detail or "")
    good = [r for r in rows if r.error is None]
    assert [r.fields["contact_id"] for r in good] == [f"c{i}" for i in range(1, 9)] + [f"c{i}" for i in range(10, 60)]
    assert [r.row for r in good[8:]] == list(range(11, 61))
    assert next(r for r in good if r.fields["contact_id"] == "c30").fields["note"] == note_30


def test_csv_quote_open_past_the_record_bound_resumes_at_the_next_line(tmp_path: Path) -> None:
    from crm_activation.pipeline.sources import MAX_RECORD_CHARS

    count = MAX_RECORD_CHARS // 40 + 1000  # more than MAX_RECORD_CHARS of valid records after the stray quote
    rows = read_csv(tmp_path, 'c0,a@example.com,"open\n' + valid_rows(1, count) + 'c-last,z@example.com,"x\n')
    assert (rows[0].row, rows[0].column) == (2, "note")
    assert rows[0].error == (
        f"unreadable CSV record: longer than {MAX_RECORD_CHARS:,} characters (a quote never closed?)"
    )
    assert len(rows) == count + 2 and all(r.error is None for r in rows[1:-1])
    assert rows[-2].fields["contact_id"] == f"c{count}" and rows[-2].row == count + 2
    assert rows[-1].error == "unreadable CSV record: a quote is never closed"  # at the end of the file: one line


def test_csv_over_long_field_rejects_only_its_record_naming_the_column(tmp_path: Path) -> None:
    from crm_activation.pipeline.sources import MAX_FIELD_CHARS

    huge = ("y" * 999 + "\n") * (MAX_FIELD_CHARS // 1000 + 1)  # a quoted multi-line field just over the maximum
    rows = read_csv(tmp_path, valid_rows(1, 2) + f'c3,c@example.com,"{huge}"\n' + valid_rows(4, 2))
    assert [r.fields.get("contact_id") for r in rows] == ["c1", "c2", "c3", "c4", "c5"]
    assert [r.error is None for r in rows] == [True, True, False, True, True]
    assert (rows[2].row, rows[2].column) == (4, "note")
    assert rows[2].error == f"field longer than {MAX_FIELD_CHARS:,} characters"
    assert rows[2].detail == f"{rows[2].error}: {len(huge):,} characters on lines 4-{4 + huge.count(chr(10))}"
    assert rows[3].row == 5 + huge.count("\n")


def test_csv_physical_line_longer_than_a_record_may_be_is_skipped_unread(tmp_path: Path) -> None:
    from crm_activation.pipeline.sources import MAX_RECORD_CHARS

    rows = read_csv(tmp_path, valid_rows(1, 1) + "c2,b@example.com," + "z" * MAX_RECORD_CHARS + "\n" + valid_rows(3, 1))
    assert [(r.row, r.error is None) for r in rows] == [(2, True), (3, False), (4, True)]
    assert rows[1].error is not None and "longer than" in rows[1].error and rows[1].column is None


def test_csv_field_size_limit_is_raised_never_lowered(tmp_path: Path) -> None:
    import csv

    from crm_activation.pipeline.sources import MAX_RECORD_CHARS

    before = csv.field_size_limit()
    try:
        csv.field_size_limit(MAX_RECORD_CHARS * 4)  # another part of the process wants more
        read_csv(tmp_path, valid_rows(1, 1))
        assert csv.field_size_limit() == MAX_RECORD_CHARS * 4
        csv.field_size_limit(1000)
        read_csv(tmp_path, valid_rows(1, 1))
        assert csv.field_size_limit() == MAX_RECORD_CHARS
    finally:
        csv.field_size_limit(before)


def test_csv_invalid_utf8_names_the_column_and_the_byte(tmp_path: Path) -> None:
    text = (
        b'contact_id,email,note\nc1,a@example.com,"caf\xc3\xa9\nna\xefve"\n'  # lines 2-3: bad byte on line 3
        b"c2,b@exa\xffmple.com,x\nc3,c@example.com,y\n"
    )
    (tmp_path / "c.csv").write_bytes(text)
    rows = list(open_rows(csv_source("c.csv"), tmp_path))
    assert [(r.row, r.error, r.column) for r in rows] == [
        (2, "not valid UTF-8", "note"),
        (4, "not valid UTF-8", "email"),
        (5, None, None),
    ]
    assert rows[0].detail == "not valid UTF-8: byte 0xEF at offset 2 of line 3"  # the bad byte's own line
    assert rows[1].detail == "not valid UTF-8: byte 0xFF at offset 8 of line 4"


def test_jsonl_errors_name_the_key_and_keep_particulars_apart(tmp_path: Path) -> None:
    from crm_activation.pipeline.sources import MAX_FIELD_CHARS

    long_note = "n" * (MAX_FIELD_CHARS + 1)
    lines = [
        b'{"contact_id": "c1", "city": "Z\xfcrich"}',
        b'{"contact_id": "c2", "email": "b@example.com"',
        b'{"contact_id": "c3", "note": "' + long_note.encode() + b'"}',
        b'{"contact_id": "c4"}',
        b'{"contact_id": "c5\\ud800", "email": "e@example.com"}',  # ASCII, but JSON's escape of no character
        b'{"contact_id": "c6", "name": "\\ud83d\\ude00"}',  # a pair: one character, fine
    ]
    (tmp_path / "c.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    rows = list(open_rows(SourceConfig(type="jsonl", path="c.jsonl"), tmp_path))
    assert [(r.row, r.error, r.column) for r in rows] == [
        (1, "not valid UTF-8", "city"),
        (2, "not valid JSON: Expecting ',' delimiter", None),
        (3, f"field longer than {MAX_FIELD_CHARS:,} characters", "note"),
        (4, None, None),
        (5, "not valid text: an unpaired surrogate escape", "contact_id"),
        (6, None, None),
    ]
    assert rows[0].detail == "not valid UTF-8: byte 0xFC at offset 31 of line 1"
    assert rows[1].detail == "not valid JSON: Expecting ',' delimiter at column 47"
    assert rows[2].fields == {}  # the record is rejected: its megabytes are not carried along


def test_sqlite_text_that_is_not_utf8_rejects_only_its_row(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "crm.db") as db:
        db.execute("CREATE TABLE contacts (contact_id TEXT, city TEXT)")
        db.execute("INSERT INTO contacts VALUES ('c1', 'Bern')")
        db.execute("INSERT INTO contacts VALUES ('c2', CAST(X'5AFC72696368' AS TEXT))")  # latin-1 'Zürich'
        db.execute("INSERT INTO contacts VALUES ('c3', 'Zürich')")
        db.executemany("INSERT INTO contacts VALUES (?, 'Bern')", [(f"x{i}",) for i in range(FETCH_SIZE)])
        db.execute("INSERT INTO contacts VALUES (CAST(X'6334FF' AS TEXT), 'Bern')")  # in the second batch
    db.close()
    rows = list(open_rows(SourceConfig(type="sql", url="sqlite:///crm.db", table="contacts"), tmp_path))
    assert [(r.row, r.error, r.column) for r in rows if r.error] == [
        (2, "not valid UTF-8", "city"), (FETCH_SIZE + 4, "not valid UTF-8", "contact_id")
    ]
    assert len(rows) == FETCH_SIZE + 4
    assert rows[1].detail == "not valid UTF-8: byte 0xFC at offset 1 of the value"
    assert rows[2].fields == {"contact_id": "c3", "city": "Zürich"}
