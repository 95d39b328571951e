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
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from ..campaign.schema import SourceConfig
from ..sdk.errors import InputError
from ..state.database_url import libpq_url, mask_url, postgres_reason, scrub_password

FETCH_SIZE = 2000


@dataclass(frozen=True, slots=True)
class SourceRow:
    """One input record.

    Attributes:
        source: the file name, or the SQL URL with any password masked.
        row: the record's position (see the module docstring).
        fields: column name → value; unknown columns are passed through.
        error: why the record itself is malformed (it is then still yielded, to be counted and rejected).
    """

    source: str
    row: int
    fields: dict[str, Any]
    error: str | None = None


def open_rows(config: SourceConfig, base_dir: Path) -> Iterator[SourceRow]:
    """Stream the rows of a source.

    Args:
        config: the source settings from the campaign file.
        base_dir: the folder relative paths (and `sqlite:///relative.db` URLs) are resolved against.

    Returns:
        An iterator of rows, reading lazily; a missing file or database is reported here, at once.

    Raises:
        InputError: the file or database does not exist, or (while iterating) cannot be read at all.
    """
    if config.type == "sql":
        return _sql_rows(config, base_dir)
    path = _resolve(config.path or "", base_dir)
    if not path.is_file():
        raise InputError(f"input file not found: {path}" if not path.exists() else f"not a file: {path}")
    encoding = _encoding(config.encoding, path)
    if config.type == "csv":
        return _csv_rows(path, encoding, config.delimiter)
    return _jsonl_rows(path, encoding)


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


# -- CSV ---------------------------------------------------------------------------------------------------
def _csv_rows(path: Path, encoding: str, delimiter: str) -> Iterator[SourceRow]:
    name = path.name
    try:
        handle = path.open(encoding=encoding, errors="surrogateescape", newline="")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        # strict: a stray quote becomes an error row instead of silently swallowing the lines that follow it
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        header = _csv_header(reader, path)
        width = len(header)
        keep = [i for i, column in enumerate(header) if column]  # unnamed columns (trailing delimiters) dropped
        everything = len(keep) == width
        last = reader.line_num
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                start, last = last + 1, reader.line_num
                lines = f"lines {start}-{last}" if last > start else f"line {start}"
                yield SourceRow(name, start, {}, f"unreadable CSV record on {lines}: {exc}")
                continue
            start, last = last + 1, reader.line_num
            if not cells or (len(cells) == 1 and width > 1 and not cells[0].strip()):
                continue  # a blank (or whitespace-only) line
            error = None
            if len(cells) != width:
                lines = f"lines {start}-{last}" if last > start else f"line {start}"
                error = f"record on {lines} has {len(cells)} cells, the header has {width}"
            elif _undecodable("".join(cells)):
                error = f"not valid {encoding} text"
            if everything:
                fields = dict(zip(header, cells, strict=False))
            else:
                fields = {header[i]: cells[i] for i in keep if i < len(cells)}
            yield SourceRow(name, start, fields, error)


def _csv_header(reader: Any, path: Path) -> list[str]:
    try:
        for cells in reader:
            if cells:
                header = [cell.strip() for cell in cells]
                break
        else:
            raise InputError(f"{path}: no header line (the file is empty)")
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
            if _undecodable(line):
                yield SourceRow(name, number, {}, f"not valid {encoding} text")
                continue
            try:
                value = decode(line)
            except json.JSONDecodeError as exc:
                yield SourceRow(name, number, {}, f"not valid JSON: {exc.msg} at column {exc.colno}")
                continue
            if not isinstance(value, dict):
                yield SourceRow(name, number, {}, f"a JSON {_json_kind(value)}, not an object")
                continue
            yield SourceRow(name, number, value)


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


def _sql_rows(config: SourceConfig, base_dir: Path) -> Iterator[SourceRow]:
    url = config.url or ""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return _sqlite_rows(url, _statement(config), base_dir)
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return _postgres_rows(url, _statement(config))
    raise InputError(f"unsupported SQL URL {mask_url(url)!r}: use sqlite:///file.db or postgresql://...")


def _sqlite_rows(url: str, statement: str, base_dir: Path) -> Iterator[SourceRow]:
    if not url.startswith("sqlite:///"):
        raise InputError(f"{url}: a SQLite URL is sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = _resolve(url[len("sqlite:///") :].split("?", 1)[0], base_dir)
    if not path.is_file():
        raise InputError(f"SQLite database not found: {path}")
    return _sqlite_stream(url, path, statement)


def _sqlite_stream(url: str, path: Path, statement: str) -> Iterator[SourceRow]:
    # Read-only, so a wrong path or a stray write can never create or change a database.
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        try:
            cursor = connection.execute(statement)
        except sqlite3.Error as exc:
            raise InputError(f"{url}: query failed: {exc}") from None
        columns = _columns(url, [d[0] for d in cursor.description or ()])
        yield from _fetch(mask_url(url), columns, cursor.fetchmany, sqlite3.Error)
    finally:
        connection.close()


def _postgres_rows(url: str, statement: str) -> Iterator[SourceRow]:
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
            with connection.cursor(name="crm_activation_rows") as cursor:
                cursor.itersize = FETCH_SIZE
                try:
                    cursor.execute(statement)
                    first = cursor.fetchmany(FETCH_SIZE)
                except psycopg.Error as exc:
                    raise InputError(f"{source}: query failed: {postgres_reason(exc)}") from None
                columns = _columns(source, [d.name for d in cursor.description or ()])
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
) -> Iterator[SourceRow]:
    """Rows numbered from 1; `reason` words a driver error (PostgreSQL's can quote row values: `postgres_reason`)."""
    number = 0
    while True:
        try:
            batch = fetchmany(FETCH_SIZE)
        except error_type as exc:
            raise InputError(f"{source}: reading rows failed after row {number}: {reason(exc)}") from None
        if not batch:
            return
        for values in batch:
            number += 1
            yield SourceRow(source, number, {c: _plain(v) for c, v in zip(columns, values, strict=True)})


def _plain(value: Any) -> Any:
    """A driver value made JSON-like (see the module docstring), inside arrays and JSON objects too.

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
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
