"""Streaming rows out of CSV, JSON Lines and SQL sources, one `SourceRow` at a time.

Nothing here loads a whole file or result set: CSV and JSON Lines are read line by line, SQL results are
fetched in batches (a server-side cursor on PostgreSQL). A malformed row is still yielded, with `error` set,
so that the run summary can count it as a rejection rather than lose it.

Field values are JSON-like: CSV gives `str` for every cell; JSON Lines gives the line's own values (`str`,
`int`, `float`, `bool`, `None`, and lists or objects kept as native `list` / `dict`); SQL gives the driver's
values with `Decimal` made `int` or `float`, dates and times made ISO strings, UUIDs made text and bytes decoded
as UTF-8, inside arrays and JSON values too. The onboarding parser accepts all of these.

Row numbers: CSV — the physical line where the record starts (the header is line 1), so a record with a
quoted line break still points at the line an editor shows; JSON Lines — the line number; SQL — the 1-based
position in the result. Blank (or whitespace-only) lines in CSV and JSON Lines carry no record and are skipped
without a row number of their own. A CSV file without even a header line is an `InputError`: an empty export is far more
likely a broken export than an empty audience, and syncing it would remove everyone from every audience.

A malformed record never takes valid records with it. The csv module cannot tell where a broken record ends: a
quote that is never closed turns the rest of the file into one field. So a CSV record that cannot be read (a
stray quote, a quote still open at the end of the file, or a record still open past `MAX_RECORD_CHARS`) is
rejected as its *first physical line* alone, and reading resumes at the line after it: every valid record that
follows is read. A record that reads cleanly keeps all its lines, so quoted fields with line breaks (of any
length up to `MAX_FIELD_CHARS`) are read as they are. The price of resuming: a *valid* record longer than
`MAX_RECORD_CHARS` has its inner lines read as records of their own (each almost always rejected, for its cell
count); a record that long is not a CRM export, and losing every contact after it would be worse.

Errors say what is wrong in words shared by every record with that problem (`SourceRow.error`, what the run
summary groups by), name the column when it can be known (`SourceRow.column`), and keep the record's own
particulars — line span, byte offset — in `SourceRow.detail`, for the rejects file. Text that is not valid in
the source's encoding (read with `surrogateescape`, so one bad byte costs one record, not the file) is
reported with the first bad byte, its offset in its line (in bytes, from 0) and its column.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import re
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from ..campaign.schema import SourceConfig
from ..sdk.errors import InputError
from ..state.database_url import libpq_url, mask_url, postgres_reason, scrub_password

FETCH_SIZE = 2000
#: The longest field (in characters) a record may have; a longer one rejects its record, naming its column. Large
#: enough for any note or JSON blob a CRM exports (the csv module's own default, 131,072, is not), small enough
#: that a record in memory stays a few megabytes.
MAX_FIELD_CHARS = 4 * 1024 * 1024
#: The longest a CSV record (all its physical lines) may grow while it is read: a record still open past this is
#: taken for a quote that is never closed, rejected as its first line, and reading resumes at the next line.
MAX_RECORD_CHARS = 2 * MAX_FIELD_CHARS


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One input record.

    Attributes:
        source: the file name, or the SQL URL with any password masked.
        row: the record's position (see the module docstring).
        fields: column name → value; unknown columns are passed through.
        error: why the record itself is malformed (it is then still yielded, to be counted and rejected), in
            the same words for every record with the same problem: the run summary counts rows by it.
        column: the column `error` is about, when it can be known (None: the record as a whole).
        detail: `error` with this record's particulars (line span, byte offset), for the rejects file; never a
            value. None when `error` says it all.
    """

    source: str
    row: int
    fields: dict[str, Any]
    error: str | None = None
    column: str | None = None
    detail: str | None = None


def open_rows(
    config: SourceConfig, base_dir: Path, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[SourceRow]:
    """Stream the rows of a source.

    Args:
        config: the source settings from the campaign file.
        base_dir: the folder relative paths (and `sqlite:///relative.db` URLs) are resolved against.
        on_header: called with the column names of a CSV header or a SQL result before the first row is
            yielded, so that a caller can refuse a broken export (a renamed id column) before reading any row;
            what it raises propagates. JSON Lines has no header: each line has its own keys.

    Returns:
        An iterator of rows, reading lazily; a missing file or database is reported here, at once.

    Raises:
        InputError: the file or database does not exist, or (while iterating) cannot be read at all.
    """
    if config.type == "sql":
        return _sql_rows(config, base_dir, on_header)
    path = _resolve(config.path or "", base_dir)
    if not path.is_file():
        raise InputError(f"input file not found: {path}" if not path.exists() else f"not a file: {path}")
    encoding = _encoding(config.encoding, path)
    if config.type == "csv":
        return _csv_rows(path, encoding, config.delimiter, on_header)
    return _jsonl_rows(path, encoding)


def source_header(config: SourceConfig, base_dir: Path) -> list[str] | None:
    """A CSV source's column names, read and checked as a run reads them (`crm-activation validate`).

    None for JSON Lines and SQL: their columns are known only from the rows (a JSON line has its own keys).

    Raises:
        InputError: the file is missing, or its header cannot be read (empty file, repeated column, bad text).
    """
    if config.type != "csv":
        return None
    path = _resolve(config.path or "", base_dir)
    if not path.is_file():
        raise InputError(f"input file not found: {path}" if not path.exists() else f"not a file: {path}")
    _allow_long_fields()
    try:
        handle = path.open(encoding=_encoding(config.encoding, path), errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        feed = _CsvLines(handle)
        header = _csv_header(csv.reader(feed, delimiter=config.delimiter, strict=True), feed, path)
    return [column for column in header if column]


def _resolve(location: str, base_dir: Path) -> Path:
    path = Path(location).expanduser()
    return path if path.is_absolute() else base_dir / path


def _encoding(encoding: str, path: Path) -> str:
    import codecs

    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise InputError(f"{path}: unknown encoding {encoding!r}") from None
    return "utf-8-sig" if name == "utf-8" else name  # a byte-order mark is not part of the first column name


def _undecodable(text: str) -> bool:
    """Whether text read with `surrogateescape` held bytes that are not valid in the file's encoding."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_valid(encoding: str) -> str:
    """The reason for undecodable text: "not valid UTF-8" (with or without a byte-order mark), else the codec's."""
    name = "UTF-8" if encoding in ("utf-8", "utf-8-sig") else encoding
    return f"not valid {name}"


def _bad_byte(text: str, encoding: str) -> str:
    """Where the first undecodable byte of `text` is: "byte 0xFC at offset 13" (bytes from 0), or "" if none."""
    found = _SURROGATE.search(text)
    if found is None:
        return ""
    code = ord(found.group())
    byte = f"byte 0x{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"a lone surrogate U+{code:04X}"
    with contextlib.suppress(UnicodeError, LookupError):  # a codec that cannot encode the bytes back: no offset
        offset = len(text[: found.start()].encode(encoding, "surrogateescape")) - len("".encode(encoding))
        return f"{byte} at offset {offset}"
    return byte


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(_has_surrogate(key) or _has_surrogate(item) for key, item in value.items())
    return False


def _span(first: int, last: int) -> str:
    return f"lines {first}-{last}" if last > first else f"line {first}"


# -- CSV ---------------------------------------------------------------------------------------------------
class _RecordTooLong(Exception):
    """Raised through `csv.reader` when the record being read grows past `MAX_RECORD_CHARS`."""


class _CsvLines:
    """The physical lines of a CSV file, fed to `csv.reader`, remembering the lines of the record being read.

    The csv module reads a record across as many lines as its quotes say, and after an error it cannot tell
    where the broken record ends. Fed through this, the lines of the current record are known (`lines`, at
    most `MAX_RECORD_CHARS` characters), so that a broken record can be given back but for its first line
    (`resume`) and the lines after it read again. A physical line longer than `MAX_RECORD_CHARS` is never held:
    it is skipped as it is read and stands in `lines` as None.
    """

    __slots__ = ("_pending", "_readline", "chars", "eof", "line_number", "lines")

    def __init__(self, handle: TextIO) -> None:
        self._readline = handle.readline
        self._pending: deque[tuple[int, str | None]] = deque()
        self.line_number = 0  # the physical lines read so far
        self.lines: list[tuple[int, str | None]] = []
        self.chars = 0
        self.eof = False

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        if self._pending:
            number, line = self._pending.popleft()
        else:
            line = self._readline(MAX_RECORD_CHARS + 1)
            if not line:
                self.eof = True
                raise StopIteration
            self.line_number = number = self.line_number + 1
            if len(line) > MAX_RECORD_CHARS:
                while line and line[-1] not in "\r\n":  # the rest of the physical line, never all in memory
                    line = self._readline(MAX_RECORD_CHARS + 1)
                line = None
        self.lines.append((number, line))
        if line is None or self.chars + len(line) > MAX_RECORD_CHARS:
            raise _RecordTooLong
        self.chars += len(line)
        return line

    def begin(self) -> None:
        """A new record starts with the next line."""
        self.lines.clear()
        self.chars = 0
        self.eof = False

    def resume(self) -> int:
        """Give back every line of the current record but its first, to be read again; its last line's number."""
        last = self.lines[-1][0]
        self._pending.extendleft(reversed(self.lines[1:]))
        self.begin()
        return last


def _allow_long_fields() -> None:
    """Let the csv module read fields up to `MAX_RECORD_CHARS` (its default stops at 131,072 characters).

    `csv.field_size_limit` is process-wide, so it is only ever raised, never lowered below what another part of
    the process set. Raising it cannot make memory unbounded: `_CsvLines` stops any record at
    `MAX_RECORD_CHARS`, and `MAX_FIELD_CHARS` is checked on every record read.
    """
    if csv.field_size_limit() < MAX_RECORD_CHARS:
        csv.field_size_limit(MAX_RECORD_CHARS)


@dataclass(frozen=True, slots=True)
class CsvResume:
    """Where a CSV read resumes: the byte offset of a line start, that line's number, and the header read before."""

    offset: int
    line: int
    header: list[str]


def _csv_rows(
    path: Path,
    encoding: str,
    delimiter: str,
    on_header: Callable[[list[str]], None] | None = None,
    resume: CsvResume | None = None,
) -> Iterator[SourceRow]:
    """The records of a CSV file; with `resume`, those from a line on (the fast reader hands over so)."""
    name = path.name
    _allow_long_fields()
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if resume is not None:
        raw.seek(resume.offset)
        encoding = "utf-8" if encoding == "utf-8-sig" else encoding  # mid-file: no byte-order mark to skip
    handle = io.TextIOWrapper(raw, encoding=encoding, errors="surrogateescape", newline="")
    with handle:
        feed = _CsvLines(handle)
        # strict: a stray quote is an error, so that its record is rejected instead of swallowing the next ones
        reader = csv.reader(feed, delimiter=delimiter, strict=True)
        if resume is None:
            header = _csv_header(reader, feed, path)
            if on_header is not None:
                on_header([column for column in header if column])
        else:
            header, feed.line_number = resume.header, resume.line - 1
        width = len(header)
        keep = [i for i, column in enumerate(header) if column]  # unnamed columns (trailing delimiters) dropped
        everything = len(keep) == width
        lines = feed.lines
        while True:
            feed.begin()
            try:
                cells = next(reader)
            except StopIteration:
                return
            except (csv.Error, _RecordTooLong) as exc:
                yield _unreadable(name, feed, exc, header, delimiter)
                continue
            if not cells or (len(cells) == 1 and width > 1 and not cells[0].strip()):
                continue  # a blank (or whitespace-only) line
            start = lines[0][0]
            error = column = detail = None
            if len(cells) != width:
                error = f"wrong number of cells (the header has {width})"
                detail = f"record on {_span(start, lines[-1][0])} has {len(cells)} cells, the header has {width}"
            elif feed.chars > MAX_FIELD_CHARS and max(map(len, cells)) > MAX_FIELD_CHARS:
                index = max(range(width), key=lambda i: len(cells[i]))
                column = header[index] or None
                error = f"field longer than {MAX_FIELD_CHARS:,} characters"
                detail = f"{error}: {len(cells[index]):,} characters on {_span(start, lines[-1][0])}"
            elif _undecodable("".join(cells)):
                error = _not_valid(encoding)
                column = next((header[i] or None for i, cell in enumerate(cells) if _has_surrogate(cell)), None)
                detail = _csv_bad_byte(error, lines, encoding)
            if everything:
                fields = dict(zip(header, cells, strict=False))
            else:
                fields = {header[i]: cells[i] for i in keep if i < len(cells)}
            yield SourceRow(name, start, fields, error, column, detail)


def _csv_bad_byte(error: str, lines: Iterable[tuple[int, str | None]], encoding: str) -> str:
    for number, line in lines:
        where = _bad_byte(line or "", encoding)
        if where:
            return f"{error}: {where} of line {number}"
    return error


def _unreadable(
    source: str, feed: _CsvLines, problem: Exception, header: list[str], delimiter: str
) -> SourceRow:
    """The first line of a record that could not be read, as a rejected row; the lines after it are read again."""
    start = feed.lines[0][0]
    too_long = isinstance(problem, _RecordTooLong)
    # what the csv reader was given (the line that overflowed never reached it; only that one can be None)
    read = [line for _, line in feed.lines[: -1 if too_long else None] if line is not None]
    if too_long:
        error = f"unreadable CSV record: longer than {MAX_RECORD_CHARS:,} characters (a quote never closed?)"
    elif feed.eof:
        error = "unreadable CSV record: a quote is never closed"
    else:
        error = f"unreadable CSV record: {problem}"
    # Which field was left open is known when the reader stopped at no error of its own (the end of the file,
    # or the record's length): the last field of those lines read without `strict`.
    column = _open_column(read, header, delimiter) if not isinstance(problem, csv.Error) or feed.eof else None
    last = feed.resume()
    detail = None
    if last > start:
        detail = (
            f"{error} (the record ran over {_span(start, last)}; only line {start} is rejected, "
            f"reading resumed at line {start + 1})"
        )
    return SourceRow(source, start, {}, error, column, detail)


def _open_column(lines: list[str], header: list[str], delimiter: str) -> str | None:
    """The column of the field still open at the end of `lines` (a record cut short), when it can be known."""
    if not lines:
        return None
    try:
        cells = next(csv.reader(["".join(lines)], delimiter=delimiter), None)
    except csv.Error:
        return None
    if not cells or len(cells) > len(header):
        return None
    return header[len(cells) - 1] or None


def _csv_header(reader: Any, feed: _CsvLines, path: Path) -> list[str]:
    try:
        while True:
            feed.begin()
            cells = next(reader, None)
            if cells is None:
                raise InputError(f"{path}: no header line (the file is empty)")
            if cells:
                header = [cell.strip() for cell in cells]
                break
    except _RecordTooLong:
        raise InputError(f"{path}: the header line is longer than {MAX_RECORD_CHARS:,} characters") from None
    except csv.Error as exc:
        raise InputError(f"{path}: unreadable header line: {exc}") from None
    seen: set[str] = set()
    for column in header:
        if column and column in seen:
            raise InputError(f"{path}: column {column!r} appears twice in the header")
        seen.add(column)
    if _undecodable("".join(header)):
        raise InputError(f"{path}: the header line is not valid text in the configured encoding")
    return header


# -- JSON Lines --------------------------------------------------------------------------------------------
def _jsonl_rows(path: Path, encoding: str) -> Iterator[SourceRow]:
    name = path.name
    decode = json.JSONDecoder().decode
    try:
        handle = path.open(encoding=encoding, errors="surrogateescape")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = decode(line)
            except json.JSONDecodeError as exc:
                if _undecodable(line):  # bad bytes first: they may be what broke the JSON
                    yield _jsonl_undecodable(name, number, line, None, encoding)
                    continue
                error = f"not valid JSON: {exc.msg}"
                yield SourceRow(name, number, {}, error, None, f"{error} at column {exc.pos + 1}")
                continue
            if not isinstance(value, dict):
                yield SourceRow(name, number, {}, f"a JSON {_json_kind(value)}, not an object")
                continue
            if _undecodable(line):
                yield _jsonl_undecodable(name, number, line, value, encoding)
                continue
            if "\\u" in line and _has_surrogate(value):  # an escaped lone surrogate (`"\ud800"`): not text either
                column = next((k for k, v in value.items() if _has_surrogate(v) and not _has_surrogate(k)), None)
                error = "not valid text: an unpaired surrogate escape"
                yield SourceRow(name, number, {}, error, column, f"{error} (\\uD800-\\uDFFF alone) in line {number}")
                continue
            if len(line) > MAX_FIELD_CHARS:
                long = next((k for k, v in value.items() if isinstance(v, str) and len(v) > MAX_FIELD_CHARS), None)
                if long is not None:
                    error = f"field longer than {MAX_FIELD_CHARS:,} characters"
                    detail = f"{error}: {len(value[long]):,} characters"
                    yield SourceRow(name, number, {}, error, long, detail)
                    continue
            yield SourceRow(name, number, value)


def _jsonl_undecodable(name: str, number: int, line: str, value: dict[str, Any] | None, encoding: str) -> SourceRow:
    """A line with bytes not valid in the encoding; its key is named when the line is otherwise valid JSON."""
    error = _not_valid(encoding)
    items = value.items() if value is not None else ()
    column = next((key for key, item in items if _has_surrogate(key) or _has_surrogate(item)), None)
    if column is not None and _has_surrogate(column):
        column = None  # the key itself is the bad text: not a name to show
    return SourceRow(name, number, {}, error, column, f"{error}: {_bad_byte(line, encoding)} of line {number}")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "boolean" if isinstance(value, bool) else "number"


# -- SQL ---------------------------------------------------------------------------------------------------
def quote_identifier(name: str) -> str:
    """A table name quoted for SQL: `schema.table` → `"schema"."table"`, embedded quotes doubled."""
    parts = name.split(".")
    if not all(parts):
        raise InputError(f"not a table name: {name!r}")
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def _statement(config: SourceConfig) -> str:
    if config.query:
        return config.query
    return f"SELECT * FROM {quote_identifier(config.table or '')}"


def _sql_rows(
    config: SourceConfig, base_dir: Path, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[SourceRow]:
    url = config.url or ""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return _sqlite_rows(url, _statement(config), base_dir, on_header)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return _postgres_rows(url, _statement(config), on_header)
    raise InputError(f"unsupported SQL URL {mask_url(url)!r}: use sqlite:///file.db or postgresql://...")


def _sqlite_rows(
    url: str, statement: str, base_dir: Path, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[SourceRow]:
    if not url.startswith("sqlite:///"):
        raise InputError(f"{url}: a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = _resolve(url[len("sqlite:///") :].split("?", 1)[0], base_dir)
    if not path.is_file():
        raise InputError(f"SQLite database not found: {path}")
    return _sqlite_stream(url, path, statement, on_header)


def _sqlite_stream(
    url: str, path: Path, statement: str, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[SourceRow]:
    # Read-only, so a wrong path or a stray write can never create or change a database.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    # SQLite stores whatever bytes it was given as TEXT; by default one value that is not UTF-8 fails the whole
    # read (with the value in the message). Decoded this way, it costs its own row only (see `_fetch`).
    connection.text_factory, undecodable = _utf8_text()
    try:
        try:
            cursor = connection.execute(statement)
        except sqlite3.Error as exc:
            raise InputError(f"{url}: query failed: {exc}") from None
        columns = _columns(url, [d[0] for d in cursor.description or ()])
        if on_header is not None:
            on_header(columns)
        yield from _fetch(mask_url(url), columns, cursor.fetchmany, sqlite3.Error, undecodable=undecodable)
    finally:
        connection.close()


def _postgres_rows(
    url: str, statement: str, on_header: Callable[[list[str]], None] | None = None
) -> Iterator[SourceRow]:
    try:
        import psycopg
    except ImportError:
        raise InputError(
            "reading a postgresql:// source needs psycopg: pip install 'crm-activation[postgres]'"
        ) from None
    source = mask_url(url)
    dsn = libpq_url(url)

    def stream() -> Iterator[SourceRow]:
        try:
            connection = psycopg.connect(dsn)
        except psycopg.Error as exc:
            # libpq's reason (refused, wrong password, no such database) is what the operator acts on; it can
            # echo the connection string back (a malformed URL), so the URL and its password are masked in it.
            reason = scrub_password(postgres_reason(exc), url)
            raise InputError(f"{source}: cannot connect: {reason}") from None
        try:
            # A named cursor is a server-side cursor: rows arrive FETCH_SIZE at a time, never all at once.
            # Nothing is ever committed, so a query can never change the database.
            # A large table's sequential scan may start where another scan of it is (synchronized scans), so
            # two reads of `SELECT * FROM t` could return its rows in other orders; the run reads the source
            # twice and refuses a second read that differs (`audience_batches.read_fingerprint`).
            connection.execute("SET synchronize_seqscans = off")
            with connection.cursor(name="crm_activation_rows") as cursor:
                cursor.itersize = FETCH_SIZE
                try:
                    cursor.execute(statement)
                    first = cursor.fetchmany(FETCH_SIZE)
                except psycopg.Error as exc:
                    raise InputError(f"{source}: query failed: {postgres_reason(exc)}") from None
                columns = _columns(source, [d.name for d in cursor.description or ()])
                if on_header is not None:
                    on_header(columns)
                pending = [first]

                def fetch(size: int) -> Sequence[Any]:
                    return pending.pop() if pending else cursor.fetchmany(size)

                yield from _fetch(source, columns, fetch, psycopg.Error, postgres_reason)
        finally:
            connection.close()

    return stream()


def _columns(source: str, names: list[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"{source}: column {name!r} appears twice in the result (alias one of them)")
        seen.add(name)
    return names


def _fetch(
    source: str,
    columns: list[str],
    fetchmany: Any,
    error_type: type[Exception],
    reason: Callable[[Exception], str] = str,
    undecodable: Callable[[], int] | None = None,
) -> Iterator[SourceRow]:
    """Rows numbered from 1; `reason` words a driver error (PostgreSQL's can quote row values: `postgres_reason`).

    `undecodable`: how many text values so far held bytes that are not UTF-8 (SQLite, see `_utf8_text`); a
    batch that added some has its rows checked, and each such row is rejected, naming its column. PostgreSQL
    checks the encoding of whatever it stores, so it needs no check.
    """
    number = bad_so_far = 0
    while True:
        try:
            batch = fetchmany(FETCH_SIZE)
        except error_type as exc:
            raise InputError(f"{source}: reading rows failed after row {number}: {reason(exc)}") from None
        if not batch:
            return
        check = False
        if undecodable is not None:
            seen = undecodable()
            check, bad_so_far = seen != bad_so_far, seen
        for values in batch:
            number += 1
            fields = {c: json_like(v) for c, v in zip(columns, values, strict=True)}
            bad = _undecodable_value(columns, values) if check else None
            if bad is None:
                yield SourceRow(source, number, fields)
            else:
                error = _not_valid("utf-8")
                detail = f"{error}: {_bad_byte(fields[bad], 'utf-8')} of the value"
                yield SourceRow(source, number, fields, error, bad, detail)


def _utf8_text() -> tuple[Callable[[bytes], str], Callable[[], int]]:
    """A SQLite text factory that keeps bytes that are not UTF-8 (`surrogateescape`), and a count of them.

    Valid text (nearly all of it) costs one plain decode; the count lets `_fetch` look for bad values only in
    the batches that have some.
    """
    bad = [0]

    def decode(data: bytes) -> str:
        try:
            return data.decode()
        except UnicodeDecodeError:
            bad[0] += 1
            return data.decode("utf-8", "surrogateescape")

    return decode, lambda: bad[0]


def _undecodable_value(columns: list[str], values: Sequence[Any]) -> str | None:
    """The first column whose text holds bytes that were not UTF-8, if any."""
    for column, value in zip(columns, values, strict=True):
        if type(value) is str and not value.isascii() and _SURROGATE.search(value) is not None:
            return column
    return None


def json_like(value: Any) -> Any:
    """A driver value made JSON-like (see the module docstring), inside arrays and JSON objects too.

    Also how the Spark path reads a DataFrame's typed cells (`spark/audience.py`): as an SQL source's.

    A UUID (a common PostgreSQL key type) becomes its text, so that it compares equal to the same id written
    in a segment rule or a match table. A non-finite numeric (PostgreSQL's NaN and ±Infinity) is a float: it
    has no `int`.
    """
    if value is None or isinstance(value, str | int | float):
        return value
    if isinstance(value, Decimal):
        if value.is_finite() and value == value.to_integral_value():
            return int(value)
        return float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_like(item) for item in value]
    if isinstance(value, dict):
        return {key: json_like(item) for key, item in value.items()}
    return value


def csv_file(config: SourceConfig, base_dir: Path) -> tuple[Path, str]:
    """A CSV source's resolved path and the codec its text is read with (a UTF-8 one skips a byte-order mark)."""
    path = _resolve(config.path or "", base_dir)
    return path, _encoding(config.encoding, path)


def resume_csv_rows(config: SourceConfig, base_dir: Path, resume: CsvResume) -> Iterator[SourceRow]:
    """The records of a CSV source from a line on, read exactly as `open_rows` reads them there."""
    path, encoding = csv_file(config, base_dir)
    return _csv_rows(path, encoding, config.delimiter, resume=resume)
