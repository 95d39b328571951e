"""The state database: audience ids, the membership each platform holds, the run, batch and holdout ledgers.

SQLite by default (a file path in the campaign): embedded, transactional and fast enough to diff millions of
memberships in SQL instead of in Python memory; PostgreSQL by URL when several hosts share state (see
`database`). The diff runs in SQL on either. The membership table only changes after a platform
acknowledged a batch, in the same transaction as the batch ledger; a run killed at any moment therefore
leaves a state that a rerun diffs against correctly: acknowledged work is not redone, unacknowledged work is
redone, and redoing an add or remove is harmless on every platform (membership is a set).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..sdk.types import AudienceRef, BatchResult, Member, StagedBatch, member_payload
from .database import LOCK_WAIT_SECONDS, Database, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS audiences (
    platform TEXT NOT NULL, audience_key TEXT NOT NULL, campaign TEXT NOT NULL,
    remote_id TEXT NOT NULL, name TEXT NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (platform, audience_key)
);
CREATE TABLE IF NOT EXISTS memberships (
    platform TEXT NOT NULL, audience_key TEXT NOT NULL, contact_id TEXT NOT NULL,
    campaign TEXT NOT NULL, fingerprint TEXT NOT NULL, payload TEXT NOT NULL, synced_at REAL NOT NULL,
    PRIMARY KEY (platform, audience_key, contact_id)
) WITHOUT ROWID;
-- Earlier versions indexed memberships by (campaign, platform): every acknowledged member paid for it, and
-- the queries filter by platform first (the primary key), so it is dropped.
DROP INDEX IF EXISTS memberships_campaign;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, campaign TEXT NOT NULL, mode TEXT NOT NULL, started_at REAL NOT NULL,
    finished_at REAL, status TEXT NOT NULL, summary TEXT
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL, platform TEXT NOT NULL, audience_key TEXT NOT NULL, operation TEXT NOT NULL,
    size INTEGER NOT NULL, received INTEGER NOT NULL, invalid INTEGER NOT NULL, job_id TEXT, at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    platform TEXT NOT NULL, login TEXT NOT NULL, token TEXT NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (platform, login)
);
CREATE TABLE IF NOT EXISTS holdout (
    campaign TEXT NOT NULL, contact_id TEXT NOT NULL, grp TEXT NOT NULL, country TEXT, segment TEXT,
    offered TEXT NOT NULL, reachable TEXT NOT NULL, funnel_stage TEXT,
    first_run TEXT NOT NULL, last_run TEXT NOT NULL,
    PRIMARY KEY (campaign, contact_id)
) WITHOUT ROWID;
"""

_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS desired (
    platform TEXT NOT NULL, audience_key TEXT NOT NULL, contact_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (platform, audience_key, contact_id)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS test_keys (
    platform TEXT NOT NULL, value TEXT NOT NULL, audience_key TEXT NOT NULL, contact_id TEXT NOT NULL
);
CREATE TEMP TABLE IF NOT EXISTS control_keys (platform TEXT NOT NULL, value TEXT NOT NULL);
CREATE TEMP TABLE IF NOT EXISTS holdout_staged (
    campaign TEXT NOT NULL, contact_id TEXT NOT NULL, grp TEXT NOT NULL, country TEXT, segment TEXT,
    offered TEXT NOT NULL, reachable TEXT NOT NULL, funnel_stage TEXT,
    first_run TEXT NOT NULL, last_run TEXT NOT NULL,
    PRIMARY KEY (campaign, contact_id)
);
CREATE TEMP TABLE IF NOT EXISTS ops (
    id INTEGER PRIMARY KEY, platform TEXT NOT NULL, audience_key TEXT NOT NULL, operation TEXT NOT NULL,
    contact_id TEXT NOT NULL, fingerprint TEXT NOT NULL
);
"""


def encode_member(member: Member) -> tuple[str, str]:
    """The member's stored payload and its fingerprint (a change of payload means remove old, add new)."""
    payload = member_payload(member)
    return payload, hashlib.blake2b(payload.encode(), digest_size=12).hexdigest()


def decode_member(contact_id: str, payload: str) -> Member:
    """Rebuild the member exactly as it was pushed (removals must repeat the added payload)."""
    data = json.loads(payload)
    return Member(contact_id, data["f"], data["c"], data["k"])


#: Refused members a whole batch's SQL recording leaves out by name (`NOT IN`); past it, one row per member.
_MAX_EXCLUDED = 500


@dataclass(frozen=True, slots=True)
class PlannedBatch:
    """One batch of planned operations: what the platform is sent (`staged`) and what recording it needs.

    Read straight from the state database's columns and recorded from them (`StateStore.apply_planned`), so a
    member is never decoded or re-encoded on its way through the push unless its connector asks for `Member`s.
    """

    staged: StagedBatch
    fingerprints: Sequence[str]
    #: Where a whole planned batch was read from ("desired" or "ops") and its first and last key there, so that
    #: it can be recorded in SQL (see `apply_planned`); None for a part of one.
    span: tuple[str, Any, Any] | None = None

    def __len__(self) -> int:
        return len(self.fingerprints)

    @property
    def contact_ids(self) -> Sequence[str]:
        """The batch's contact ids, in order."""
        return self.staged.contact_ids

    def take(self, positions: Sequence[int]) -> PlannedBatch:
        """The part of the batch at these positions, in their order (a part re-sent to name refusals)."""
        ids, payloads, fingerprints = self.staged.contact_ids, self.staged.payloads, self.fingerprints
        return PlannedBatch(
            StagedBatch([ids[i] for i in positions], [payloads[i] for i in positions]),
            [fingerprints[i] for i in positions],
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run of the run ledger, as `crm-activation runs` lists it; `summary`: the stored JSON (None: running)."""

    run_id: str
    mode: str
    status: str
    started_at: float
    finished_at: float | None
    summary: dict[str, Any] | None


def past_runs(db: Database, campaign: str, limit: int | None = None) -> list[RunRecord]:
    """The campaign's runs, newest first, read without creating or changing anything (a read-only connection).

    A free function, not a `StateStore` method: opening a `StateStore` applies the schema, which a read-only
    connection refuses. A database no run ever wrote to has no runs table: no runs.
    """
    if not db.has_table("runs"):
        return []
    sql = "SELECT run_id, mode, status, started_at, finished_at, summary FROM runs WHERE campaign=? "
    sql += "ORDER BY started_at DESC, run_id DESC" + (" LIMIT ?" if limit is not None else "")
    params: tuple[Any, ...] = (campaign, limit) if limit is not None else (campaign,)
    records = []
    for run_id, mode, status, started, finished, summary in db.execute(sql, params).fetchall():
        try:
            stored = json.loads(summary) if summary else None
        except ValueError:  # a summary cut short by a crash: list the run without its counts
            stored = None
        records.append(RunRecord(run_id, mode, status, started, finished, stored if isinstance(stored, dict) else None))
    return records


class StateStore:
    """The state database of one campaign job (several campaigns may share a file)."""

    def __init__(self, target: str | Path | Database, password: str | None = None) -> None:
        """Open (and create) the state database: a SQLite path, a `postgresql://` URL, or an open `Database`."""
        self.db = target if isinstance(target, Database) else open_database(target, password=password)
        self.db.apply_schema(SCHEMA + _TEMP)
        # Added after the first release: state written before it gets the column here (SQLite and PostgreSQL).
        self.db.add_column("runs", "last_seen", "REAL")
        #: Runs `start_run` found still "running" and marked abandoned: (run id, when last seen, epoch seconds).
        self.abandoned: list[tuple[str, float]] = []
        #: Per platform, the audiences whose last `plan` adds every desired member (see `plan`).
        self._adds_all: dict[str, frozenset[str]] = {}

    def close(self) -> None:
        """Close the connection."""
        self.db.close()

    # -- audiences --------------------------------------------------------------------------------------
    def audience(self, platform: str, key: str) -> AudienceRef | None:
        """The stored platform handle of an audience, if it was created before."""
        row = self.db.execute(
            "SELECT remote_id FROM audiences WHERE platform=? AND audience_key=?", (platform, key)
        ).fetchone()
        return AudienceRef(key=key, remote_id=row[0]) if row else None

    def save_audience(self, platform: str, campaign: str, ref: AudienceRef, name: str) -> None:
        """Remember an audience's platform id; when it changed (the old one was deleted), forget its members."""
        with self.transaction():
            old = self.audience(platform, ref.key)
            if old is not None and old.remote_id != ref.remote_id:
                self.db.execute("DELETE FROM memberships WHERE platform=? AND audience_key=?", (platform, ref.key))
            self.db.execute(
                "INSERT INTO audiences VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (platform, audience_key) DO UPDATE SET "
                "campaign=excluded.campaign, remote_id=excluded.remote_id, name=excluded.name, "
                "updated_at=excluded.updated_at",
                (platform, ref.key, campaign, ref.remote_id, name, time.time()),
            )

    # -- runs -------------------------------------------------------------------------------------------
    def start_run(self, campaign: str, mode: str, lock_wait: float = LOCK_WAIT_SECONDS) -> str:
        """Take the campaign's run lock, open a run in the ledger and return its id.

        Raises:
            StateLockedError: another run of this campaign is still going on this state database.
        """
        self.db.lock_campaign(campaign, lock_wait)
        self.abandoned = self._abandon_dead_runs(campaign)
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        now = time.time()
        self.db.execute(
            "INSERT INTO runs (run_id, campaign, mode, started_at, status, last_seen) "
            "VALUES (?, ?, ?, ?, 'running', ?)",
            (run_id, campaign, mode, now, now),
        )
        return run_id

    def _abandon_dead_runs(self, campaign: str) -> list[tuple[str, float]]:
        """Mark the campaign's runs still "running" as abandoned, finished when last seen; return them.

        Called with the campaign lock held, so none of them is alive: the lock is released by the kernel or
        the server when its process dies (SIGKILL, a lost host), and such a run never wrote its end. Without
        this its row would say "running" forever.
        """
        with self.transaction():
            rows = self.db.execute(
                "SELECT run_id, COALESCE(last_seen, started_at) FROM runs WHERE campaign=? AND status='running'",
                (campaign,),
            ).fetchall()
            self.db.executemany(
                "UPDATE runs SET status='abandoned', finished_at=? WHERE run_id=?",
                [(seen, run_id) for run_id, seen in rows],
            )
        return [(run_id, float(seen)) for run_id, seen in rows]

    def heartbeat(self, run_id: str, at: float | None = None) -> None:
        """Record that the run is alive (after acknowledged batches): what an abandoned run was last seen doing."""
        self.db.execute("UPDATE runs SET last_seen=? WHERE run_id=?", (time.time() if at is None else at, run_id))

    # -- access tokens kept between runs (`sdk.http.TokenCache`) ----------------------------------------
    def load_token(self, platform: str, key: str) -> tuple[str, float] | None:
        """A platform's stored token for one login (key: `token_key`) and when it expires (epoch seconds)."""
        row = self.db.execute(
            "SELECT token, expires_at FROM tokens WHERE platform=? AND login=?", (platform, key)
        ).fetchone()
        return (str(row[0]), float(row[1])) if row else None

    def save_token(self, platform: str, key: str, token: str, expires_at: float) -> None:
        """Store (replace) a token; expired ones of any login are cleared at the same time."""
        with self.transaction():
            self.db.execute("DELETE FROM tokens WHERE expires_at < ?", (time.time(),))
            self.db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?) ON CONFLICT (platform, login) DO UPDATE SET "
                "token=excluded.token, expires_at=excluded.expires_at",
                (platform, key, token, expires_at),
            )

    def drop_token(self, platform: str, key: str) -> None:
        """Forget a token the platform refused."""
        self.db.execute("DELETE FROM tokens WHERE platform=? AND login=?", (platform, key))

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        """Close a run with its status and summary."""
        now = time.time()
        self.db.execute(
            "UPDATE runs SET finished_at=?, last_seen=?, status=?, summary=? WHERE run_id=?",
            (now, now, status, json.dumps(summary, default=str), run_id),
        )

    def planned_operations(self, platform: str) -> Iterator[tuple[str, str, str]]:
        """The planned changes of a platform as `(audience_key, operation, contact_id)`, in pages, in push order.

        For the dry run's plan file: per record what a real run would change, without the payloads (which carry
        the hashed identifiers). Every remove first, then every add, each by audience and contact.
        """
        keys = sorted(
            {key for (key,) in self.db.execute("SELECT DISTINCT audience_key FROM ops WHERE platform=?", (platform,))}
            | self._adds_all.get(platform, frozenset())
        )
        for operation in ("remove", "add"):
            for key in keys:
                for batch in self._planned_pages(platform, key, operation, 1000, with_payloads=False):
                    yield from ((key, operation, contact_id) for contact_id in batch.contact_ids)

    def transaction(self) -> AbstractContextManager[None]:
        """A context manager for one transaction (commit, or roll back on error)."""
        return self.db.transaction()

    # -- holdout ledger ---------------------------------------------------------------------------------
    _HOLDOUT_UPSERT = (
        " ON CONFLICT (campaign, contact_id) DO UPDATE SET grp=excluded.grp, country=excluded.country, "
        "segment=excluded.segment, offered=excluded.offered, reachable=excluded.reachable, "
        "funnel_stage=excluded.funnel_stage, last_run=excluded.last_run"
    )

    def record_holdout(self, campaign: str, run_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Upsert ledger rows `(contact_id, group, country, segment, offered, reachable, funnel_stage)`.

        A contact's group never changes (assignment is deterministic); the platforms it was offered and could be
        reached on are refreshed each run, and `first_run` keeps when it entered the experiment. For control
        contacts `reachable` says where they *would* have been pushed, so measurement can compare like with like.
        """
        with self.transaction():
            self.db.executemany(
                "INSERT INTO holdout VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" + self._HOLDOUT_UPSERT,
                [(campaign, *row, run_id, run_id) for row in rows],
            )

    def stage_holdout(self, campaign: str, run_id: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Hold a run's ledger rows (as `record_holdout` takes them) until `commit_holdout`.

        A run the guardrails refuse pushes nothing and must not enter anyone into the experiment: its rows
        would date the contacts' entry to a run that exposed no one.
        """
        with self.transaction():
            self.db.insert_rows("holdout_staged", [(campaign, *row, run_id, run_id) for row in rows], 10)

    def commit_holdout(self) -> None:
        """Upsert the staged ledger rows into the holdout ledger (once the run is cleared to push)."""
        with self.transaction():
            self.db.execute("INSERT INTO holdout SELECT * FROM holdout_staged WHERE true" + self._HOLDOUT_UPSERT)
            self.db.execute("DELETE FROM holdout_staged")

    def holdout_rows(self, campaign: str) -> list[tuple[Any, ...]]:
        """The ledger of a campaign: (contact_id, group, country, segment, offered, reachable, funnel_stage)."""
        return self.db.execute(
            "SELECT contact_id, grp, country, segment, offered, reachable, funnel_stage FROM holdout "
            "WHERE campaign=? ORDER BY contact_id",
            (campaign,),
        ).fetchall()

    # -- desired membership and the diff ----------------------------------------------------------------
    def reset_desired(self) -> None:
        """Empty the staging tables before a run stages its desired membership."""
        for table in ("desired", "ops", "test_keys", "control_keys", "holdout_staged"):
            self.db.execute(f"DELETE FROM {table}")

    def stage_desired(self, rows: Iterable[tuple[str, str, str, str, str]]) -> None:
        """Stage `(platform, audience_key, contact_id, fingerprint, payload)` rows (one per contact and platform)."""
        with self.transaction():
            self.db.insert_rows("desired", rows, 5)

    def stage_keys(self, test: Iterable[tuple[str, str, str, str]], control: Iterable[tuple[str, str]]) -> None:
        """Stage match-key values of test members `(platform, value, audience_key, contact_id)` and of control."""
        with self.transaction():
            self.db.insert_rows("test_keys", test, 4)
            self.db.insert_rows("control_keys", control, 2)

    def drop_control_conflicts(self) -> dict[str, set[str]]:
        """Remove desired members who share a match-key value with a control contact on the same platform.

        Two CRM records with one e-mail address are one person to the platform: pushing the test record
        would expose the control record too and bias the measured lift. Returns platform → contact ids dropped.
        """
        with self.transaction():
            self.db.execute("CREATE INDEX IF NOT EXISTS control_keys_value ON control_keys (platform, value)")
            rows = self.db.execute(
                "SELECT DISTINCT t.platform, t.audience_key, t.contact_id FROM test_keys t "
                "WHERE EXISTS (SELECT 1 FROM control_keys c WHERE c.platform=t.platform AND c.value=t.value)"
            ).fetchall()
            self.db.executemany("DELETE FROM desired WHERE platform=? AND audience_key=? AND contact_id=?", rows)
        dropped: dict[str, set[str]] = {}
        for platform, _, contact_id in rows:
            dropped.setdefault(platform, set()).add(contact_id)
        return dropped

    def drop_duplicate_members(self, platform: str) -> dict[str, set[str]]:
        """Keep one desired member per match-key value on a platform (the lowest contact id); drop the others.

        For e-mail, two CRM records with one address would otherwise get the same message twice.
        """
        with self.transaction():
            self.db.execute("CREATE INDEX IF NOT EXISTS test_keys_value ON test_keys (platform, value)")
            rows = self.db.execute(
                "SELECT DISTINCT t.audience_key, t.contact_id FROM test_keys t WHERE t.platform=? AND EXISTS ("
                "  SELECT 1 FROM test_keys u WHERE u.platform=t.platform AND u.value=t.value"
                "  AND u.contact_id < t.contact_id)",
                (platform,),
            ).fetchall()
            self.db.executemany(
                "DELETE FROM desired WHERE platform=? AND audience_key=? AND contact_id=?",
                [(platform, key, contact_id) for key, contact_id in rows],
            )
        return {platform: {contact_id for _, contact_id in rows}} if rows else {}

    def plan(
        self, campaign: str, platform: str, full: bool, desired: dict[str, int] | None = None
    ) -> dict[tuple[str, str], int]:
        """Compute this platform's removes and adds; return counts by (audience, operation).

        Removes come first: when a contact's payload changed, the old payload must leave before the new one
        arrives, or removing the old one could remove the person matched by a shared key. With `full`, every
        desired member is re-added (a refresh), not only the missing ones. `desired`: `desired_counts(platform)`
        when the caller has it already.

        The diff is, per audience, two set differences on `(contact, fingerprint)`, the fingerprint being a digest
        of the payload: acknowledged minus desired are the removes, desired minus acknowledged the adds. Both
        tables are stored in that order (their primary keys), so SQLite merges the two sorted scans in one
        streamed pass (`MERGE (EXCEPT)`), with no sort, no temporary index and no lookup per member (PostgreSQL
        plans its own), and writes the keys of the differences only to the ops table. An audience with no
        acknowledged member (a first sync, a re-created audience) or a full refresh adds every desired member:
        nothing is diffed or copied, its batches are read from the desired membership itself.
        """
        desired = self.desired_counts(platform) if desired is None else desired
        insert = (
            "INSERT INTO ops (platform, audience_key, operation, contact_id, fingerprint) "
            "SELECT CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS TEXT), contact_id, fingerprint FROM ("
        )
        with self.transaction():
            self.db.execute("DELETE FROM ops WHERE platform=?", (platform,))
            for key in self._member_audiences(platform):
                self.db.execute(
                    insert + "SELECT contact_id, fingerprint FROM memberships "
                    "WHERE platform=? AND audience_key=? AND campaign=? "
                    "EXCEPT SELECT contact_id, fingerprint FROM desired WHERE platform=? AND audience_key=? "
                    "ORDER BY 1, 2) AS removed",
                    (platform, key, "remove", platform, key, campaign, platform, key),
                )
            adds_all = {key for key in desired if full or not self._has_members(platform, key)}
            for key in sorted(set(desired) - adds_all):
                self.db.execute(
                    insert + "SELECT contact_id, fingerprint FROM desired WHERE platform=? AND audience_key=? "
                    "EXCEPT SELECT contact_id, fingerprint FROM memberships WHERE platform=? AND audience_key=? "
                    "ORDER BY 1, 2) AS added",
                    (platform, key, "add", platform, key, platform, key),
                )
            rows = self.db.execute(
                "SELECT audience_key, operation, COUNT(*) FROM ops WHERE platform=? GROUP BY 1, 2", (platform,)
            ).fetchall()
        self._adds_all[platform] = frozenset(adds_all)
        counts = {(key, op): n for key, op, n in rows}
        counts.update({(key, "add"): desired[key] for key in adds_all})
        return counts

    def _member_audiences(self, platform: str) -> list[str]:
        """The audiences of a platform with acknowledged members, each found by one lookup on the primary key."""
        keys: list[str] = []
        while True:
            row = self.db.execute(
                "SELECT audience_key FROM memberships WHERE platform=? AND audience_key>? "
                "ORDER BY audience_key LIMIT 1",
                (platform, keys[-1] if keys else ""),
            ).fetchone()
            if row is None:
                return keys
            keys.append(row[0])

    def _has_members(self, platform: str, audience_key: str) -> bool:
        """Whether any member of the audience is acknowledged (a lookup on the primary key's prefix)."""
        row = self.db.execute(
            "SELECT 1 FROM memberships WHERE platform=? AND audience_key=? LIMIT 1", (platform, audience_key)
        ).fetchone()
        return row is not None

    def contacts_with_desired(self, contact_ids: Iterable[str]) -> set[str]:
        """Which of these contacts still have at least one desired membership."""
        ids = list(contact_ids)
        found: set[str] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(f"SELECT DISTINCT contact_id FROM desired WHERE contact_id IN ({marks})", chunk)
            found.update(row[0] for row in rows)
        return found

    def staged_payloads(self, platform: str) -> Iterator[str]:
        """The staged payloads of a platform, in pages (the caller may write to other tables meanwhile)."""
        last = ("", "")
        while True:
            rows = self.db.execute(
                "SELECT audience_key, contact_id, payload FROM desired WHERE platform=? "
                "AND (audience_key, contact_id) > (?, ?) ORDER BY audience_key, contact_id LIMIT 1000",
                (platform, *last),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0], rows[-1][1]
            yield from (payload for _, _, payload in rows)

    def desired_counts(self, platform: str) -> dict[str, int]:
        """Desired members per audience of a platform."""
        rows = self.db.execute(
            "SELECT audience_key, COUNT(*) FROM desired WHERE platform=? GROUP BY 1", (platform,)
        ).fetchall()
        return dict(rows)

    def removal_counts(self, campaign: str, platform: str) -> dict[str, tuple[int, int]]:
        """Per audience of a platform: (acknowledged members, members the staged run no longer wants there).

        Read-only, for the guardrails (`pipeline/guardrails.py`) before anything is planned or pushed. A member
        whose payload changed is still wanted (its remove is followed by its add); one that moved to another
        audience (funnel stage) is not wanted in its old one.
        """
        rows = self.db.execute(
            "SELECT m.audience_key, COUNT(*), SUM(CASE WHEN EXISTS (SELECT 1 FROM desired d WHERE "
            "d.platform=m.platform AND d.audience_key=m.audience_key AND d.contact_id=m.contact_id) "
            "THEN 0 ELSE 1 END) FROM memberships m WHERE m.campaign=? AND m.platform=? GROUP BY 1",
            (campaign, platform),
        ).fetchall()
        return {key: (int(members), int(removed or 0)) for key, members, removed in rows}

    def holdout_reachable(self, campaign: str, contact_ids: Sequence[str]) -> dict[str, str]:
        """The recorded `reachable` of these contacts (those in the ledger), read-only.

        A run that pushes some of the campaign's channels only (`--platform`) keeps the other channels' entries.
        """
        found: dict[str, str] = {}
        for start in range(0, len(contact_ids), 500):
            chunk = list(contact_ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT contact_id, reachable FROM holdout WHERE campaign=? AND contact_id IN ({marks})",
                (campaign, *chunk),
            ).fetchall()
            found.update(rows)
        return found

    def planned_batches(
        self, platform: str, audience_key: str, operation: str, size: int
    ) -> Iterator[PlannedBatch]:
        """The planned operations of one audience in batches of at most `size`, in plan order.

        Each batch's payloads come from the table that holds them: the staged desired membership for adds,
        the acknowledged membership for removes (a removal repeats what was added). Paged by key, so the caller
        may record batches (write to the membership) between pages.
        """
        return self._planned_pages(platform, audience_key, operation, size, with_payloads=True)

    def _planned_pages(
        self, platform: str, audience_key: str, operation: str, size: int, *, with_payloads: bool
    ) -> Iterator[PlannedBatch]:
        """`planned_batches`; without payloads (empty strings) for the plan file, which never shows them.

        Rows end with `(contact_id, fingerprint, payload)`; read through the ops table they start with its id,
        which pages them, else the contact id pages them.
        """
        last: Any
        keys: tuple[str, ...]
        if operation == "add" and audience_key in self._adds_all.get(platform, frozenset()):
            payload = "payload" if with_payloads else "''"
            sql = (
                f"SELECT contact_id, fingerprint, {payload} FROM desired "
                "WHERE platform=? AND audience_key=? AND contact_id>? ORDER BY contact_id LIMIT ?"
            )
            source, last, keys = "desired", "", (platform, audience_key)
        else:
            table = "desired" if operation == "add" else "memberships"
            payload = "s.payload" if with_payloads else "''"
            join = (
                f" JOIN {table} s ON s.platform=o.platform AND s.audience_key=o.audience_key "
                "AND s.contact_id=o.contact_id AND s.fingerprint=o.fingerprint"
                if with_payloads else ""
            )
            sql = (
                f"SELECT o.id, o.contact_id, o.fingerprint, {payload} FROM ops o{join} "
                "WHERE o.platform=? AND o.audience_key=? AND o.operation=? AND o.id>? ORDER BY o.id LIMIT ?"
            )
            source, last, keys = "ops", 0, (platform, audience_key, operation)
        while True:
            rows = self.db.execute(sql, (*keys, last, size)).fetchall()
            if not rows:
                return
            columns = list(zip(*rows, strict=True))
            contact_ids, fingerprints, payloads = columns[-3:]
            first, last = columns[0][0], columns[0][-1]
            yield PlannedBatch(StagedBatch(contact_ids, payloads), fingerprints, (source, first, last))

    def op_batches(self, platform: str, audience_key: str, operation: str, size: int) -> Iterator[list[Member]]:
        """The planned operations of one audience in batches of at most `size` members."""
        for batch in self.planned_batches(platform, audience_key, operation, size):
            yield batch.staged.members()

    def desired_batches(self, platform: str, audience_key: str, size: int) -> Iterator[list[Member]]:
        """The whole desired membership of an audience in batches (for replace)."""
        last = ""
        while True:
            rows = self.db.execute(
                "SELECT contact_id, payload FROM desired WHERE platform=? AND audience_key=? AND contact_id>? "
                "ORDER BY contact_id LIMIT ?",
                (platform, audience_key, last, size),
            ).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield StagedBatch([contact_id for contact_id, _ in rows], [payload for _, payload in rows]).members()

    # -- acknowledged work ------------------------------------------------------------------------------
    def apply_batch(
        self,
        run_id: str,
        campaign: str,
        platform: str,
        audience_key: str,
        operation: str,
        members: Sequence[Member],
        result: BatchResult,
        refused: frozenset[str] = frozenset(),
    ) -> None:
        """Record an acknowledged batch: membership and batch ledger in one transaction.

        `refused` are the contact ids whose operation the platform did not acknowledge: refused by name, or
        among refusals it counted without naming them (which the engine then re-sends to find out). Their
        membership is left as it was, so the state never claims what the platform does not hold: a refused add
        is not recorded (the next run offers it again), and a refused remove stays a member (the next run
        removes it again).
        """
        encoded = [encode_member(member) for member in members]
        planned = PlannedBatch(
            StagedBatch([m.contact_id for m in members], [payload for payload, _ in encoded]),
            [fingerprint for _, fingerprint in encoded],
        )
        self.apply_planned(run_id, campaign, platform, audience_key, operation, planned, result, refused)

    def apply_planned(
        self,
        run_id: str,
        campaign: str,
        platform: str,
        audience_key: str,
        operation: str,
        batch: PlannedBatch,
        result: BatchResult,
        refused: frozenset[str] = frozenset(),
    ) -> None:
        """Record an acknowledged planned batch, as `apply_batch` does, from its stored columns.

        The payload and fingerprint recorded are the ones planned, so nothing is encoded again. The adds of a
        whole batch are copied in one `INSERT ... SELECT` from where they were read (`PlannedBatch.span`): the
        database does the work without a row crossing into Python (and SQLite without holding Python's lock, so
        the other threads build and send their batches meanwhile). One transaction per batch, whatever its size.
        """
        now = time.time()
        ids, payloads, fingerprints = batch.staged.contact_ids, batch.staged.payloads, batch.fingerprints
        kept = range(len(batch)) if not refused else [i for i, cid in enumerate(ids) if cid not in refused]
        excluded = sorted(refused & set(ids)) if refused else []
        with self.transaction():
            if operation == "add" and batch.span is not None and len(excluded) <= _MAX_EXCLUDED:
                source, first, last = batch.span
                marks = f" AND d.contact_id NOT IN ({', '.join('?' * len(excluded))})" if excluded else ""
                if source == "desired":  # every desired member from first to last is in the batch
                    rows = "FROM desired d WHERE d.platform=? AND d.audience_key=? AND d.contact_id BETWEEN ? AND ?"
                else:
                    rows = (
                        "FROM ops o JOIN desired d ON d.platform=o.platform AND d.audience_key=o.audience_key "
                        "AND d.contact_id=o.contact_id AND d.fingerprint=o.fingerprint "
                        "WHERE o.platform=? AND o.audience_key=? AND o.id BETWEEN ? AND ? AND o.operation='add'"
                    )
                self.db.execute(
                    "INSERT INTO memberships (platform, audience_key, contact_id, campaign, fingerprint, payload, "
                    "synced_at) SELECT d.platform, d.audience_key, d.contact_id, ?, d.fingerprint, d.payload, ? "
                    + rows + marks + " ON CONFLICT (platform, audience_key, contact_id) DO UPDATE SET "
                    "campaign=excluded.campaign, fingerprint=excluded.fingerprint, payload=excluded.payload, "
                    "synced_at=excluded.synced_at",
                    (campaign, now, platform, audience_key, first, last, *excluded),
                )
            elif operation == "add":
                self.db.executemany(
                    "INSERT INTO memberships VALUES (?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (platform, audience_key, contact_id) DO UPDATE SET campaign=excluded.campaign, "
                    "fingerprint=excluded.fingerprint, payload=excluded.payload, synced_at=excluded.synced_at",
                    [(platform, audience_key, ids[i], campaign, fingerprints[i], payloads[i], now) for i in kept],
                )
            elif operation == "remove":
                self.db.executemany(
                    "DELETE FROM memberships WHERE platform=? AND audience_key=? AND contact_id=? AND fingerprint=?",
                    [(platform, audience_key, ids[i], fingerprints[i]) for i in kept],
                )
            self.db.execute(
                "INSERT INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, platform, audience_key, operation, len(batch), result.received, result.invalid,
                 result.job_id, now),
            )

    def replace_membership(
        self, run_id: str, campaign: str, platform: str, audience_key: str, excluded: Iterable[str] = ()
    ) -> None:
        """After a platform confirmed a full replace, make the stored membership the desired one.

        `excluded`: the contact ids the platform refused in that replace; they are not members.
        """
        refused = [(platform, audience_key, contact_id) for contact_id in excluded]
        with self.transaction():
            self.db.execute("DELETE FROM memberships WHERE platform=? AND audience_key=?", (platform, audience_key))
            self.db.execute(
                "INSERT INTO memberships SELECT platform, audience_key, contact_id, ?, fingerprint, payload, ? "
                "FROM desired WHERE platform=? AND audience_key=?",
                (campaign, time.time(), platform, audience_key),
            )
            self.db.executemany(
                "DELETE FROM memberships WHERE platform=? AND audience_key=? AND contact_id=?", refused
            )

    def forget_membership(self, platform: str, audience_key: str) -> None:
        """Drop an audience's stored membership: what the platform holds is no longer known member by member.

        The next plan then adds every desired member again, which is harmless (membership is a set) and names,
        through the add path's answers, which members the platform refuses.
        """
        with self.transaction():
            self.db.execute("DELETE FROM memberships WHERE platform=? AND audience_key=?", (platform, audience_key))

    def acknowledged_pages(self, campaign: str, size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """The campaign's acknowledged membership in pages, in primary-key order (to export it, e.g. to Spark).

        Rows: (platform, audience_key, contact_id, fingerprint, payload, synced_at). Paged by key, so a page
        is read with one range scan and the export never holds the whole membership at once.
        """
        last = ("", "", "")
        while True:
            page = self.db.execute(
                "SELECT platform, audience_key, contact_id, fingerprint, payload, synced_at FROM memberships "
                "WHERE campaign=? AND (platform > ? OR (platform = ? AND (audience_key > ? OR "
                "(audience_key = ? AND contact_id > ?)))) ORDER BY platform, audience_key, contact_id LIMIT ?",
                (campaign, last[0], last[0], last[1], last[1], last[2], size),
            ).fetchall()
            if not page:
                return
            yield page
            last = page[-1][:3]

    def members(self, platform: str, audience_key: str) -> dict[str, str]:
        """Stored members of an audience: contact id → payload (for tests and audits)."""
        rows = self.db.execute(
            "SELECT contact_id, payload FROM memberships WHERE platform=? AND audience_key=?", (platform, audience_key)
        ).fetchall()
        return dict(rows)
