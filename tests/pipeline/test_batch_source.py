"""The batch reader yields exactly the records the row reader yields, whichever path each part of a file takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

import crm_activation.pipeline.batch_source as batch_source
from crm_activation.campaign.schema import SourceConfig
from crm_activation.pipeline.batch_source import MISSING, read_batches
from crm_activation.pipeline.sources import open_rows


def _source(path: Path, **settings: str) -> SourceConfig:
    return TypeAdapter(SourceConfig).validate_python({"type": path.suffix.lstrip("."), "path": str(path), **settings})


def _both(config: SourceConfig, base: Path, size: int = 3) -> tuple[list, list]:
    rows = list(open_rows(config, base))
    batched = [batch.source_row(i) for batch in read_batches(config, base, size=size) for i in range(len(batch))]
    return rows, batched


CELL = st.one_of(
    st.sampled_from(["", " ", "a", "b c", "é", "1.5", "x@example.com", "+44 20 7946 0958"]),
    st.text(alphabet="ab,\"\n\r \x00é", max_size=4),
)
LINE_END = st.sampled_from(["\n", "\r\n", "\r"])  # "\r": an old Mac or Excel "CSV (Macintosh)" export


@st.composite
def messy_csv(draw: st.DrawFn) -> bytes:
    """A CSV file: mostly clean lines, with quotes, blank lines, wrong cell counts, CR, NUL and bad bytes mixed in."""
    header = ["contact_id", "email", "phone"]
    lines = [",".join(header)]
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["clean"] * 6 + ["cells", "blank", "short", "bad", "bom"]))
        if kind == "bom":  # a byte-order mark starting a record (two exports concatenated): a cell's first character
            lines.append("\ufeff1,a@b.c,")
        elif kind == "clean":
            lines.append(",".join(draw(st.lists(st.sampled_from(["1", "a@b.c", "", " x "]), min_size=3, max_size=3))))
        elif kind == "cells":
            lines.append(",".join(draw(st.lists(CELL, min_size=1, max_size=4))))
        elif kind == "blank":
            lines.append(draw(st.sampled_from(["", "  "])))
        elif kind == "short":
            lines.append("1,2")
        else:
            lines.append("1,\udcff,2")
    end = draw(LINE_END)
    text = end.join(lines) + draw(st.sampled_from(["", end]))
    return text.encode("utf-8", "surrogateescape")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=messy_csv(), chunk=st.sampled_from([8, 64, 1 << 20]))
def test_batches_hold_exactly_the_rows_the_row_reader_reads(tmp_path: Path, data: bytes, chunk: int) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batch_source, "CHUNK_BYTES", chunk)  # small chunks: hand-overs in the middle of the file
        rows, batched = _both(_source(path), tmp_path)
    assert batched == rows


def test_a_clean_file_is_read_by_the_fast_path_and_a_quote_hands_the_rest_to_the_row_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "contacts.csv"
    clean = "".join(f"{i},user{i}@example.com,\n" for i in range(1, 2001))
    path.write_text("contact_id,email,phone\n" + clean + '9999,"quoted\nacross lines",\n' + "10000,z@example.com,\n")
    handed_over: list[int] = []
    resume = batch_source.resume_csv_rows

    def spy(config: SourceConfig, base: Path, where: batch_source.CsvResume):  # type: ignore[no-untyped-def]
        handed_over.append(where.line)
        return resume(config, base, where)

    monkeypatch.setattr(batch_source, "resume_csv_rows", spy)
    monkeypatch.setattr(batch_source, "CHUNK_BYTES", 4096)
    rows, batched = _both(_source(path), tmp_path, size=500)
    assert batched == rows
    assert [row.row for row in batched[-2:]] == [2002, 2004]  # the quoted record spans lines 2002-2003
    assert len(handed_over) == 1 and 2 < handed_over[0] <= 2002  # the chunks before the quote took the fast path


def test_json_lines_keep_a_missing_key_apart_from_null(tmp_path: Path) -> None:
    path = tmp_path / "contacts.jsonl"
    path.write_text('{"contact_id": "1", "email": null}\n{"contact_id": "2"}\n')
    batch = next(read_batches(_source(path), tmp_path))
    assert batch.columns["email"] == [None, MISSING]
    rows, batched = _both(_source(path), tmp_path)
    assert batched == rows


def test_other_encodings_and_delimiters_read_alike(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes("contact_id;name\n1;Jürgen\n2;Zoë\n".encode("latin-1"))
    rows, batched = _both(_source(path, encoding="latin-1", delimiter=";"), tmp_path)
    assert batched == rows and rows[0].fields["name"] == "Jürgen"
    path.write_text("\ufeffcontact_id;name\n1;Jürgen\n2;Zoë\n", encoding="utf-8")
    rows, batched = _both(_source(path, delimiter=";"), tmp_path)
    assert batched == rows and list(rows[0].fields) == ["contact_id", "name"]


def test_a_file_without_newlines_is_not_read_whole_by_the_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CR line ends make the whole file one "line" to `readline`: the fast path reads a bounded amount of it."""
    path = tmp_path / "contacts.csv"
    path.write_bytes(("contact_id,email\r" + "".join(f"{i},u{i}@example.com\r" for i in range(5000))).encode())
    reads: list[int] = []
    real_open = Path.open

    def counting_open(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        handle = real_open(self, *args, **kwargs)
        if "b" in (args[0] if args else kwargs.get("mode", "r")):
            readline = handle.readline
            handle.readline = lambda limit=-1: reads.append(limit) or readline(limit)  # type: ignore[method-assign]
        return handle

    monkeypatch.setattr(Path, "open", counting_open)
    monkeypatch.setattr(batch_source, "MAX_FIELD_CHARS", 1000)
    rows, batched = _both(_source(path), tmp_path, size=700)
    assert batched == rows and len(rows) == 5000
    assert reads and all(0 < limit <= 1000 for limit in reads)
