"""Reading a source as batches of columns (`RowBatch`): the unit every later step of the pipeline works on.

Per-row work in Python costs microseconds a row; the same work a column at a time, with each distinct value
handled once, costs a fraction of that. So the source is cut into batches of about `BATCH_ROWS` records, each
holding one list of values per column.

CSV files take a fast path while their text is *simple*. The file is read in chunks of whole lines (about
`CHUNK_BYTES`), and a chunk is simple when its bytes hold no quote character, no NUL, no blank line and no
carriage return other than in CRLF line ends. Simple text means exactly what splitting each line at the
delimiter means, so Arrow's CSV reader (C++) parses it, refusing a chunk that is not valid UTF-8 or has a line
with another cell count than the header. At the first chunk that is not simple, or that Arrow refuses, the rest
of the file from that chunk's first line goes to the resilient row reader (`sources.py`), with the line numbers
the fast path counted: row numbers, errors and the resumption after a broken record are then the row reader's
own. A file the fast path cannot start on at all (another encoding, a header with quotes or unnamed columns, a
one-column file, where a whitespace-only line is a blank line to skip) is read by the row reader throughout.
`tests/pipeline/test_batch_source.py` checks the two readers agree record for record on generated messy files.

JSON Lines and SQL sources are read by the row reader and gathered into batches; a JSON line's missing key is
`MISSING` in its column, which is not the line's `null`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final

import pyarrow as pa
import pyarrow.csv as pacsv

from ..campaign.schema import SourceConfig
from .sources import MAX_FIELD_CHARS, CsvResume, SourceRow, csv_file, open_rows, resume_csv_rows

#: Records per batch: large enough that per-batch overhead vanishes, small enough that a batch stays a few MB.
BATCH_ROWS = 8192
#: Bytes per fast-path CSV chunk (whole lines are added to reach a line end).
CHUNK_BYTES = 1 << 20
_BOM = b"\xef\xbb\xbf"


class _Missing:
    """The value of a column a JSON line does not have (distinct from its `null`)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        return "MISSING"  # pickles as the module's singleton, so identity survives worker processes


MISSING: Final = _Missing()


class RowBatch:
    """Consecutive records of one source, by column.

    Attributes:
        source: the file name (or masked SQL URL) rejects name.
        rows: each record's row number (see `sources.py`).
        errors: record index → (error, column, detail) for malformed records, as `SourceRow` words them.

    A batch from the fast CSV path holds its cells as an Arrow table until a column is asked for (`columns`,
    `column`): sent to a worker process, it travels as Arrow's buffers, not as one Python string per cell.
    """

    def __init__(
        self,
        source: str,
        rows: Sequence[int],
        columns: dict[str, list[Any]] | None = None,
        errors: dict[int, tuple[str, str | None, str | None]] | None = None,
        table: pa.Table | None = None,
    ) -> None:
        self.source = source
        self.rows = rows
        self.errors = errors or {}
        self._columns = columns
        self._table = table

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self._table is not None:
            state["_columns"] = None  # rebuilt from the table where it is needed
            # Arrow's IPC format, not its pickle: a slice of a chunk's table pickles the whole chunk's buffers
            # (three times the batch for short rows) and takes 25x as long.
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self._table.schema) as writer:
                writer.write_table(self._table)
            state["_table"] = sink.getvalue()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("_table"), pa.Buffer):
            state["_table"] = pa.ipc.open_stream(state["_table"]).read_all()
        self.__dict__.update(state)

    @property
    def names(self) -> list[str]:
        """The column names, in source order."""
        return list(self._table.column_names) if self._table is not None else list(self._columns or {})

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Column name → one value per record (`MISSING` where a JSON line lacks the key)."""
        if self._columns is None:
            table = self._table
            self._columns = {name: table.column(name).to_pylist() for name in table.column_names} if table else {}
        return self._columns

    def column(self, name: str) -> list[Any]:
        """One column's values (without building the others)."""
        if self._columns is None and self._table is not None:
            return self._table.column(name).to_pylist()
        return self.columns[name]

    def source_row(self, index: int) -> SourceRow:
        """Record `index` as the row reader yields it (for the few steps that want one whole record)."""
        fields = {name: values[index] for name, values in self.columns.items() if values[index] is not MISSING}
        error, column, detail = self.errors.get(index, (None, None, None))
        return SourceRow(self.source, self.rows[index], fields, error, column, detail)


def batches_of_rows(rows: Iterable[SourceRow], size: int = BATCH_ROWS) -> Iterator[RowBatch]:
    """Row-reader records gathered into batches of at most `size` (one source's rows)."""
    pending: list[SourceRow] = []
    for row in rows:
        pending.append(row)
        if len(pending) >= size:
            yield _batch_of(pending)
            pending = []
    if pending:
        yield _batch_of(pending)


def _batch_of(rows: list[SourceRow]) -> RowBatch:
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row.fields))
    columns: dict[str, list[Any]] = {name: [row.fields.get(name, MISSING) for row in rows] for name in names}
    errors = {i: (row.error, row.column, row.detail) for i, row in enumerate(rows) if row.error is not None}
    return RowBatch(rows[0].source, [row.row for row in rows], columns, errors)


def read_batches(
    config: SourceConfig,
    base_dir: Path,
    on_header: Callable[[list[str]], None] | None = None,
    size: int | None = None,
) -> Iterator[RowBatch]:
    """The source's records in batches (of `BATCH_ROWS` by default), in order; `open_rows`'s, by column."""
    size = size or BATCH_ROWS
    if config.type != "csv":
        return batches_of_rows(open_rows(config, base_dir, on_header), size)
    rows = open_rows(config, base_dir, on_header)  # checks the file and reads the header as a run must
    path, encoding = csv_file(config, base_dir)
    header: list[str] = []
    try:
        first = next(rows)
    except StopIteration:  # a header and no records
        return iter(())
    header = list(first.fields) if first.error is None else []
    if encoding != "utf-8-sig" or len(config.delimiter) != 1 or len(header) < 2 or first.row != 2:
        return batches_of_rows(_chain(first, rows), size)
    if isinstance(rows, Generator):
        rows.close()  # the row reader's file: the fast path opens its own
    return _fast_csv(config, base_dir, path, header, size)


def _chain(first: SourceRow, rest: Iterator[SourceRow]) -> Iterator[SourceRow]:
    yield first
    yield from rest


def _fast_csv(config: SourceConfig, base_dir: Path, path: Path, header: list[str], size: int) -> Iterator[RowBatch]:
    """Fast-path batches while the text is simple, then the row reader's from the first line that is not."""
    name = path.name
    delimiter = config.delimiter.encode()
    with path.open("rb") as handle:
        offset = _data_start(handle, header, config.delimiter)
        line = 2
        if offset is not None:
            for chunk in _chunks(handle, offset):
                table = _parse_simple(chunk, header, delimiter) if chunk.endswith(b"\n") or _at_end(handle) else None
                if table is None:
                    break
                count = table.num_rows
                for start in range(0, count, size):
                    stop = min(start + size, count)
                    yield RowBatch(name, range(line + start, line + stop), table=table.slice(start, stop - start))
                line += count
                offset += len(chunk)
            else:
                return
    if offset is None:  # the header itself is not simple: the row reader reads it all
        yield from batches_of_rows(open_rows(config, base_dir), size)
        return
    yield from batches_of_rows(resume_csv_rows(config, base_dir, CsvResume(offset, line, header)), size)


def _data_start(handle: BinaryIO, header: list[str], delimiter: str) -> int | None:
    """The byte offset of the first record when the header is one simple line naming `header`, else None."""
    first = handle.readline(MAX_FIELD_CHARS)  # bounded: a file without `\n` line ends is one long "line"
    if not first.endswith(b"\n"):
        return None
    start = len(_BOM) if first.startswith(_BOM) else 0
    text = first[start:]
    if b'"' in text or b"\x00" in text:
        return None
    try:
        cells = [cell.strip() for cell in text.decode("utf-8").rstrip("\r\n").split(delimiter)]
    except UnicodeDecodeError:
        return None
    return len(first) if cells == header else None


def _chunks(handle: BinaryIO, offset: int) -> Iterator[bytes]:
    """Whole lines from `offset` on, about `CHUNK_BYTES` at a time (the last may end without a line end).

    A line is completed up to `MAX_FIELD_CHARS` bytes only: a chunk that still does not end a line, short of the
    file's end, is not simple (a file of CR line ends, or a giant line), and the row reader takes over there.
    """
    handle.seek(offset)
    while True:
        chunk = handle.read(CHUNK_BYTES)
        if not chunk:
            return
        if not chunk.endswith(b"\n"):
            chunk += handle.readline(MAX_FIELD_CHARS)
        yield chunk


def _at_end(handle: io.BufferedReader) -> bool:
    """Whether the file has nothing after what was read."""
    return not handle.peek(1)


def _parse_simple(chunk: bytes, header: list[str], delimiter: bytes) -> pa.Table | None:
    """The chunk's cells (all text), or None when the chunk is not simple text (see the module doc)."""
    if (
        b'"' in chunk
        or b"\x00" in chunk
        or b"\n\n" in chunk
        or b"\n\r\n" in chunk
        or chunk.startswith((b"\n", b"\r", _BOM))  # Arrow would drop a byte-order mark the row reader keeps
        or (b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"))
        or len(chunk) > MAX_FIELD_CHARS
    ):
        return None
    options = pacsv.ParseOptions(
        delimiter=delimiter.decode(),
        quote_char=False,
        escape_char=False,
        newlines_in_values=False,
        ignore_empty_lines=False,
    )
    try:
        table = pacsv.read_csv(
            io.BytesIO(chunk),
            read_options=pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(chunk) + 1),
            parse_options=options,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False, check_utf8=True
            ),
        )
    except pa.ArrowInvalid:  # a line with another cell count, or bytes that are not UTF-8
        return None
    return table
