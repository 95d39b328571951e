"""The state database connection: SQLite (a file, the default) or PostgreSQL (a URL), behind one small interface.

SQLite needs nothing running and diffs millions of memberships fast, so one daily job on one host uses it.
PostgreSQL is for state several job hosts share, or that a data team wants to query next to the warehouse.
Callers write one SQL dialect, the part both engines agree on: `?` placeholders, `INSERT ... ON CONFLICT`
upserts, row values, `CREATE TEMP TABLE IF NOT EXISTS`. The few differences are translated here, once:
placeholders for psycopg, and in schema text SQLite's `WITHOUT ROWID` and `INTEGER PRIMARY KEY`, plus `TEXT`
compared bytewise (`COLLATE "C"`) so ordering, paging and "lowest contact id wins" are identical on both.

Both connections run in autocommit mode; `transaction()` opens explicit transactions (SQLite's
`BEGIN IMMEDIATE` takes the write lock up front, so two writers queue instead of failing mid-transaction).
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..sdk.errors import ConfigError, CrmActivationError, InputError
from .database_url import libpq_url, mask_url, postgres_reason, scrub_password

POSTGRES_SCHEMES = ("postgresql://", "postgres://", "postgresql+")
#: How long a run waits for the campaign lock before it reports another run as still going.
LOCK_WAIT_SECONDS = 10.0


class DatabaseError(CrmActivationError):
    """A state database statement failed (the driver's message, with no password in it)."""


class IntegrityError(DatabaseError):
    """A statement broke a uniqueness or other constraint."""


class StateLockedError(CrmActivationError):
    """Another run of the same campaign holds the state database's campaign lock."""


class Cursor(Protocol):
    """What `Database.execute` returns: the DB-API cursor both drivers give."""

    rowcount: int

    def fetchone(self) -> Any:
        """The next row or None."""

    def fetchall(self) -> list[Any]:
        """All remaining rows."""

    def __iter__(self) -> Iterator[Any]: ...


def is_postgres_url(target: str | Path) -> bool:
    """Whether a `state` target is a PostgreSQL URL rather than a SQLite file path."""
    return isinstance(target, str) and target.lower().startswith(POSTGRES_SCHEMES)


def describe(target: str | Path) -> str:
    """A target as it may be printed: the path, or the URL with any password masked."""
    return mask_url(str(target)) if is_postgres_url(target) else str(target)


def open_database(target: str | Path, *, password: str | None = None, readonly: bool = False) -> Database:
    """Connect to a state database.

    Args:
        target: a SQLite file path (created when missing unless `readonly`) or a `postgresql://` URL.
        password: the PostgreSQL password, when it is not in libpq's own places (PGPASSWORD, ~/.pgpass).
        readonly: refuse writes (reports must never change state); a missing SQLite file is an error.

    Raises:
        InputError: a read-only SQLite file that does not exist.
        ConfigError: PostgreSQL is unreachable or refuses the login, or psycopg is not installed.
    """
    if is_postgres_url(target):
        return PostgresDatabase(str(target), password, readonly)
    return SqliteDatabase(Path(target), readonly)


class Database:
    """One connection, shared by the run's threads (platforms push concurrently); subclasses adapt a driver.

    One connection, not one per thread, because the staging tables are the connection's own temporary tables
    and the campaign lock is held by it. Statements and transactions are therefore serialized: a transaction
    holds `serial` from BEGIN to COMMIT, so another thread's statement can never land inside it.
    """

    _integrity: type[Exception]
    _error: type[Exception]

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.serial = threading.RLock()

    # -- statements -------------------------------------------------------------------------------------
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one statement; driver errors become `DatabaseError` / `IntegrityError`."""
        with self.serial, self._errors():
            return self._execute(self._sql(sql), params)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each row."""
        with self.serial, self._errors():
            self._executemany(self._sql(sql), rows)

    def insert_rows(self, table: str, rows: Iterable[Sequence[Any]], width: int) -> None:
        """Append rows to a table (no conflict handling): the bulk path for staging tables."""
        self.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)

    def apply_schema(self, ddl: str) -> None:
        """Create tables and indexes (idempotent DDL in SQLite's spelling; translated for PostgreSQL)."""
        with self.serial, self._errors():
            self._script(ddl)

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """Add a column a newer version needs to a table an older version created; nothing when it exists.

        `CREATE TABLE IF NOT EXISTS` leaves an existing table as it was, so state written by an older version
        would otherwise lack the column. SQLite has no `ADD COLUMN IF NOT EXISTS`: the column list is read
        first, and a concurrent job adding it meanwhile is recognised by the column being there afterwards.
        """
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        """Whether a (non-temporary) table exists: optional ledgers are read only when some run wrote them."""
        raise NotImplementedError

    # -- transactions -----------------------------------------------------------------------------------
    @property
    def in_transaction(self) -> bool:
        """Whether an explicit transaction is open."""
        raise NotImplementedError

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction: commit on success, roll back on any exception; joins a transaction already open."""
        with self.serial:
            if self.in_transaction:
                yield
                return
            self.execute(self._begin)
            try:
                yield
            except BaseException:
                self.execute("ROLLBACK")
                raise
            self.execute("COMMIT")

    _begin = "BEGIN"

    # -- run lock ---------------------------------------------------------------------------------------
    def lock_campaign(self, campaign: str, wait: float = LOCK_WAIT_SECONDS) -> None:
        """Hold the campaign's lock until `close()`, so two runs of one campaign never interleave.

        It waits up to `wait` seconds first: a run that just ended (or was killed) may not have let go yet,
        and the next job of a pipeline should not fail on that.

        Raises:
            StateLockedError: another connection still holds it (a previous run is still going).
        """
        deadline = time.monotonic() + wait
        while not self._try_lock(campaign):
            if time.monotonic() >= deadline:
                raise StateLockedError(f"campaign {campaign!r} is already running against {self.describe()}")
            time.sleep(0.1)

    def _try_lock(self, campaign: str) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        """The database as it may be printed (no password)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the connection (releases the campaign lock)."""
        self.connection.close()

    # -- driver adaptation ------------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return sql

    def _execute(self, sql: str, params: Sequence[Any]) -> Cursor:
        cursor: Cursor = self.connection.execute(sql, params)
        return cursor

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.connection.executemany(sql, rows)

    def _script(self, ddl: str) -> None:
        self.connection.executescript(ddl)

    @staticmethod
    def _reason(exc: Exception) -> str:
        return str(exc)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except self._integrity as exc:
            raise IntegrityError(self._reason(exc)) from exc
        except self._error as exc:
            raise DatabaseError(self._reason(exc)) from exc


class SqliteDatabase(Database):
    """A SQLite file in WAL mode."""

    _integrity = sqlite3.IntegrityError
    _error = sqlite3.Error
    _begin = "BEGIN IMMEDIATE"

    def __init__(self, path: Path, readonly: bool = False) -> None:
        self.path = path
        memory = str(path) == ":memory:"
        if readonly:
            if not path.is_file():
                raise InputError(f"state database not found: {path} (run the campaign first, or pass --state)")
            connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        else:
            if not memory:
                path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA temp_store=FILE")
        super().__init__(connection)
        self._lock_file: Any = None

    def has_table(self, name: str) -> bool:
        """Whether the table exists in the main schema."""
        row = self.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone()
        return row is not None

    @property
    def in_transaction(self) -> bool:
        """Whether an explicit transaction is open."""
        return bool(self.connection.in_transaction)

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """See `Database.add_column`."""

        def present() -> bool:
            return any(row[1] == column for row in self.execute(f"PRAGMA table_info({table})").fetchall())

        if present():
            return
        try:
            self.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        except DatabaseError:
            if not present():
                raise

    def describe(self) -> str:
        """The file path."""
        return str(self.path)

    def _try_lock(self, campaign: str) -> bool:
        """An exclusive `flock` on a sidecar file: the kernel releases it when the process dies, so no stale lock."""
        if str(self.path) == ":memory:":
            return True
        import fcntl

        digest = hashlib.sha256(campaign.encode()).hexdigest()[:16]
        handle = self.path.with_name(f"{self.path.name}.{digest}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._lock_file = handle
        return True

    def close(self) -> None:
        """Close the connection and drop the campaign lock."""
        super().close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


_DDL_FOR_POSTGRES = (
    (re.compile(r"\)\s*WITHOUT ROWID", re.IGNORECASE), ")"),
    (re.compile(r"\bINTEGER PRIMARY KEY\b", re.IGNORECASE), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b", re.IGNORECASE), 'TEXT COLLATE "C"'),
)


def postgres_ddl(ddl: str) -> str:
    """SQLite-spelled schema text in PostgreSQL's spelling (see the module docstring for what changes)."""
    for pattern, replacement in _DDL_FOR_POSTGRES:
        ddl = pattern.sub(replacement, ddl)
    return ddl


class PostgresDatabase(Database):
    """A psycopg 3 connection; statements use `?` in this package and `%s` on the wire."""

    def __init__(self, url: str, password: str | None, readonly: bool) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "a postgresql:// state database needs psycopg: pip install 'crm-activation[postgres]'"
            ) from None
        self.url = url
        self._integrity = psycopg.IntegrityError
        self._error = psycopg.Error
        options: dict[str, Any] = {"autocommit": True, "application_name": "crm-activation"}
        if password:
            options["password"] = password
        if readonly:
            options["options"] = "-c default_transaction_read_only=on"
        try:
            connection = psycopg.connect(libpq_url(url), **options)
        except psycopg.Error as exc:
            reason = scrub_password(postgres_reason(exc), url)
            raise ConfigError(f"cannot connect to the state database {mask_url(url)}: {reason}") from None
        super().__init__(connection)
        self._translated: dict[str, str] = {}
        self._locks: list[int] = []

    _reason = staticmethod(postgres_reason)  # never a row value in the message

    def _sql(self, sql: str) -> str:
        translated = self._translated.get(sql)
        if translated is None:
            translated = self._translated[sql] = sql.replace("%", "%%").replace("?", "%s")
        return translated

    def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)

    def insert_rows(self, table: str, rows: Iterable[Sequence[Any]], width: int) -> None:
        """COPY: an order of magnitude faster than INSERTs for the millions of rows a run stages."""
        with (
            self.serial,
            self._errors(),
            self.connection.cursor() as cursor,
            cursor.copy(f"COPY {table} FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def _script(self, ddl: str) -> None:
        self.connection.execute(postgres_ddl(ddl))

    def add_column(self, table: str, column: str, declaration: str) -> None:
        """See `Database.add_column`; read first, since ALTER TABLE locks the table even when it changes nothing."""
        present = self.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_schema=current_schema() AND table_name=? "
            "AND column_name=?",
            (table, column),
        ).fetchone()
        if present is None:
            self.apply_schema(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {declaration}")

    def has_table(self, name: str) -> bool:
        """Whether the table is visible on the search path."""
        row = self.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()
        return bool(row[0])

    @property
    def in_transaction(self) -> bool:
        """Whether an explicit transaction is open (or failed and awaits its rollback)."""
        from psycopg.pq import TransactionStatus

        return bool(self.connection.info.transaction_status != TransactionStatus.IDLE)

    def describe(self) -> str:
        """The URL with any password masked."""
        return mask_url(self.url)

    def _try_lock(self, campaign: str) -> bool:
        """A session advisory lock: PostgreSQL releases it when the connection ends, however the job ends."""
        key = int.from_bytes(hashlib.sha256(b"crm-activation\x1f" + campaign.encode()).digest()[:8], "big", signed=True)
        if not self.execute("SELECT pg_try_advisory_lock(?)", (key,)).fetchone()[0]:
            return False
        self._locks.append(key)
        return True

    def close(self) -> None:
        """Release the campaign locks, then close.

        Unlocking explicitly matters: the server notices a closed connection asynchronously, so a job started
        right after this one (the next step of a pipeline) could otherwise still find the lock taken.
        """
        if self._locks and not self.connection.closed:
            with contextlib.suppress(Exception):  # a broken connection releases them server-side anyway
                if self.in_transaction:
                    self.connection.execute("ROLLBACK")
                for key in self._locks:
                    self.connection.execute("SELECT pg_advisory_unlock(%s)", (key,))
        self._locks.clear()
        super().close()
