"""The email ledgers in the state database: one row per (campaign, contact, stage, step) sent, and enrollments.

Send protocol: at most once per contact and step (docs/email-templates.md repeats it for operators).

1. `claim` inserts the row as `sending` and COMMITS, before any SMTP traffic. UNIQUE(campaign, contact_id,
   stage, step) makes a second claim of the same step impossible, on any machine sharing the database.
2. The message goes out with the Message-ID stored in the row (derived from campaign, contact, stage and step).
3. The outcome is committed the moment the relay replies, one small commit per message: the transport calls
   `mark_sent` from inside its send, right after the 250 to the end of DATA, with nothing in between (no
   bookkeeping, no retry machinery, no next message). A 5xx makes it `failed_permanent` (never retried); 4xx
   replies and dropped connections that outlast the retries make it `deferred` (nothing was accepted; the
   next run sends it).

A run killed between 1 and 3 leaves the row `sending` with no recorded reply: the send is **in doubt**. SMTP
offers no way to ask a relay whether it accepted a message, and the row cannot tell a kill before the 250
(render, connect, transfer: the message was not delivered) from one between the 250 and the commit (it was;
measured locally: a median of 46 µs with SQLite, 162 µs with PostgreSQL, 2-5 % of the time per message). A
connection lost after the final "." is in doubt the same way (`smtp.py`). So a later run does not guess:

- by default it does NOT re-send an in-doubt step (`claim` refuses a `sending` row) and sends the contact
  nothing newer either, so the sequence does not run ahead of a step the contact may not have had; the step
  stays `sending`, and every run lists it (`in_doubt`, in the run summary) until someone decides. At most once.
- with `resend_in_doubt` (`crm-activation run --resend-in-doubt`) it re-sends it exactly as claimed: same
  template, variant, coupon and Message-ID, all read from the row or derived from it. At least once, under one
  Message-ID, which receivers that deduplicate by Message-ID (Gmail does) show once.
- a suppressed or converted contact, or one no longer routed to e-mail, has the step `cancelled` (the detail
  says it was in doubt): nobody wants it re-sent any more.

`sending` is both "being sent by this run" and "in doubt": a run holds the campaign lock, so any `sending` row
another run left is in doubt (no new status, so no migration of the CHECK). A run sending over several SMTP
connections has one message in flight per connection, each claimed right before it is handed to the relay, so
a kill leaves at most that many steps in doubt.

Batching (`records`, `apply`): what the scheduler reads about a contact and the enrollment and cancellation
writes of its decision go through a batch of contacts at a time (a handful of statements instead of a dozen per
contact). The two writes of the protocol above do not: a claim is still committed on its own right before its
message leaves, and an outcome on its own right after the relay's reply, so the window stays one small commit.

Statuses: `sending` (claimed; in doubt once its run is gone), `deferred` (pending; `claim` returns it again),
`sent`, `failed_permanent`, `cancelled` (suppressed before a pending re-send; terminal). The measurement module
reads `email_sends(campaign, contact_id, step, variant)` for variant cuts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ..state.database import Database
from .sequences import Enrollment, enroll

SCHEMA = """
CREATE TABLE IF NOT EXISTS email_sends (
    campaign TEXT NOT NULL, contact_id TEXT NOT NULL, stage TEXT NOT NULL, step INTEGER NOT NULL,
    template TEXT NOT NULL, variant TEXT NOT NULL DEFAULT '', scheduled_hour INTEGER, hour_source TEXT,
    status TEXT NOT NULL CHECK (status IN ('sending', 'deferred', 'sent', 'failed_permanent', 'cancelled')),
    message_id TEXT NOT NULL, attempts INTEGER NOT NULL, attempted_at REAL NOT NULL, sent_at REAL,
    smtp_code INTEGER, detail TEXT, run_id TEXT,
    UNIQUE (campaign, contact_id, stage, step)
);
CREATE INDEX IF NOT EXISTS email_sends_status ON email_sends (campaign, status);
CREATE TABLE IF NOT EXISTS email_enrollments (
    id INTEGER PRIMARY KEY, campaign TEXT NOT NULL, contact_id TEXT NOT NULL, stage TEXT NOT NULL,
    enrolled_on TEXT NOT NULL, ended_on TEXT, end_reason TEXT
);
CREATE INDEX IF NOT EXISTS email_enrollments_contact ON email_enrollments (campaign, contact_id, ended_on);
"""
PENDING = ("sending", "deferred")
#: A claimed step with no recorded reply, left by a run that is gone (see the module docstring).
IN_DOUBT = "sending"
_COLUMNS = "contact_id, stage, step, template, variant, scheduled_hour, message_id, attempts, status"


@dataclass(frozen=True, slots=True)
class InDoubtRow:
    """A step claimed by a run that ended without recording the relay's reply: maybe delivered, maybe not."""

    contact_id: str
    stage: str
    step: int
    message_id: str
    attempts: int
    run_id: str | None


@dataclass(frozen=True, slots=True)
class Claim:
    """A step claimed for sending; `resumed` when an earlier run claimed it and did not finish."""

    campaign: str
    contact_id: str
    stage: str
    step: int
    template: str
    variant: str
    scheduled_hour: int | None
    message_id: str
    attempts: int
    resumed: bool


@dataclass(frozen=True, slots=True)
class StepRow:
    """One `email_sends` row of a contact, as the scheduler reads it."""

    stage: str
    step: int
    status: str
    template: str
    variant: str
    scheduled_hour: int | None
    message_id: str
    sent_at: float | None


@dataclass(slots=True)
class LedgerRecord:
    """What the send and enrollment ledgers hold about one contact (read for a batch by `records`)."""

    steps: list[StepRow] = field(default_factory=list)
    enrollment: Enrollment | None = None
    converted: bool = False

    def pending(self) -> list[StepRow]:
        """`sending` (in doubt) and `deferred` rows, by stage and step (as `SendLedger.pending_of`)."""
        return sorted((r for r in self.steps if r.status in PENDING), key=lambda r: (r.stage, r.step))

    def done_steps(self, stage: str) -> set[int]:
        """As `SendLedger.done_steps`."""
        return {r.step for r in self.steps if r.stage == stage}

    def last_sent_on(self) -> date | None:
        """As `SendLedger.last_sent_on`."""
        sent = [r.sent_at for r in self.steps if r.status == "sent" and r.sent_at is not None]
        return datetime.fromtimestamp(max(sent), UTC).date() if sent else None


@dataclass(frozen=True, slots=True)
class LedgerWrites:
    """The enrollment and cancellation writes of one contact's decision, applied for a batch by `apply`."""

    contact_id: str
    cancels: tuple[tuple[str, int, str], ...] = ()  # (stage, step, reason)
    end_enrollment: str | None = None  # close the open enrollment with this reason
    enroll_stage: str | None = None  # then open one in this stage


#: Contacts per `IN (...)` list: well under SQLite's and psycopg's parameter limits.
CHUNK = 500


def chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    """`items` in slices of at most `CHUNK`."""
    return (items[i : i + CHUNK] for i in range(0, len(items), CHUNK))


class SendLedger:
    """The send and enrollment ledgers of one campaign, on the state database connection."""

    def __init__(self, db: Database, campaign: str) -> None:
        """Create the tables when missing (`db` is the run's `StateStore.db`)."""
        self.db = db
        self.campaign = campaign
        db.apply_schema(SCHEMA)

    # -- the send protocol -------------------------------------------------------------------------------
    def claim(
        self,
        contact_id: str,
        stage: str,
        step: int,
        template: str,
        variant: str,
        message_id: str,
        scheduled_hour: int | None = None,
        hour_source: str | None = None,
        run_id: str | None = None,
        at: float | None = None,
        *,
        resend_in_doubt: bool = False,
    ) -> Claim | None:
        """Claim a step before sending it (committed on return); None when it is done or in doubt.

        A `deferred` row is claimed again as it was recorded: its template, variant and Message-ID win over the
        arguments, so a re-send is the same message even if the config changed. A `sending` row is in doubt
        (its relay may have accepted it): claimed again only with `resend_in_doubt`, the operator's explicit
        choice of at-least-once over at-most-once. `at` is the run's clock (epoch seconds; default now), so
        schedules can be replayed in tests and backfills.
        """
        now = time.time() if at is None else at
        inserted = self.db.execute(  # the common case, a step never claimed: one statement, committed
            "INSERT INTO email_sends (campaign, contact_id, stage, step, template, variant, scheduled_hour, "
            "hour_source, status, message_id, attempts, attempted_at, run_id) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sending', ?, 1, ?, ?) ON CONFLICT DO NOTHING",
            (self.campaign, contact_id, stage, step, template, variant, scheduled_hour, hour_source, message_id, now,
             run_id),
        )
        if inserted.rowcount == 1:
            return Claim(self.campaign, contact_id, stage, step, template, variant, scheduled_hour, message_id, 1,
                         False)
        with self.db.transaction():
            row = self.db.execute(
                f"SELECT {_COLUMNS} FROM email_sends WHERE campaign=? AND contact_id=? AND stage=? AND step=?",
                (self.campaign, contact_id, stage, step),
            ).fetchone()
            if row is None:
                self.db.execute(
                    "INSERT INTO email_sends (campaign, contact_id, stage, step, template, variant, scheduled_hour, "
                    "hour_source, status, message_id, attempts, attempted_at, run_id) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'sending', ?, 1, ?, ?)",
                    (self.campaign, contact_id, stage, step, template, variant, scheduled_hour, hour_source,
                     message_id, now, run_id),
                )
                return Claim(self.campaign, contact_id, stage, step, template, variant, scheduled_hour, message_id,
                             1, False)
            if row[8] not in PENDING or (row[8] == IN_DOUBT and not resend_in_doubt):
                return None
            self.db.execute(
                "UPDATE email_sends SET status='sending', attempts=attempts+1, attempted_at=?, run_id=? "
                "WHERE campaign=? AND contact_id=? AND stage=? AND step=?",
                (now, run_id, self.campaign, contact_id, stage, step),
            )
            contact, stage_, step_, template_, variant_, hour, mid = row[:7]
            return Claim(self.campaign, contact, stage_, step_, template_, variant_, hour, mid, row[7] + 1, True)

    def _finish(self, claim: Claim, status: str, code: int | None, detail: str, sent: bool, at: float | None) -> None:
        when = time.time() if at is None else at
        self.db.execute(
            "UPDATE email_sends SET status=?, smtp_code=?, detail=?, sent_at=? "
            "WHERE campaign=? AND contact_id=? AND stage=? AND step=?",
            (status, code, detail[:500], when if sent else None, claim.campaign, claim.contact_id,
             claim.stage, claim.step),
        )

    def mark_sent(self, claim: Claim, code: int = 250, detail: str = "", at: float | None = None) -> None:
        """The server accepted the message."""
        self._finish(claim, "sent", code, detail, sent=True, at=at)

    def mark_failed(self, claim: Claim, code: int | None, detail: str, at: float | None = None) -> None:
        """A permanent refusal (5xx): recorded, never retried."""
        self._finish(claim, "failed_permanent", code, detail, sent=False, at=at)

    def mark_deferred(self, claim: Claim, code: int | None, detail: str, at: float | None = None) -> None:
        """Transient failures outlasted this run's retries; nothing was accepted, the next run sends it."""
        self._finish(claim, "deferred", code, detail, sent=False, at=at)

    def cancel(self, contact_id: str, stage: str, step: int, reason: str, at: float | None = None) -> bool:
        """Cancel a pending step (the contact was suppressed meanwhile); False when it was not pending.

        An in-doubt step's detail keeps that it may have been delivered: the relay may hold it already.
        """
        cursor = self.db.execute(
            "UPDATE email_sends SET status='cancelled', attempted_at=?, detail=CASE WHEN status='sending' "
            "THEN 'in doubt (maybe delivered), cancelled: ' || ? ELSE ? END "
            "WHERE campaign=? AND contact_id=? AND stage=? AND step=? AND status IN ('sending', 'deferred')",
            (time.time() if at is None else at, reason[:400], reason[:500], self.campaign, contact_id, stage, step),
        )
        return cursor.rowcount == 1

    # -- what the scheduler reads -----------------------------------------------------------------------
    def pending(self) -> list[tuple[str, str, int]]:
        """(contact_id, stage, step) of rows a previous run left `sending` or `deferred`."""
        return self.db.execute(
            "SELECT contact_id, stage, step FROM email_sends WHERE campaign=? AND status IN ('sending', 'deferred') "
            "ORDER BY contact_id, stage, step",
            (self.campaign,),
        ).fetchall()

    def pending_of(self, contact_id: str) -> list[tuple[str, int, str]]:
        """(stage, step, status) of the contact's `sending` (in doubt) and `deferred` rows."""
        return self.db.execute(
            "SELECT stage, step, status FROM email_sends WHERE campaign=? AND contact_id=? "
            "AND status IN ('sending', 'deferred') ORDER BY stage, step",
            (self.campaign, contact_id),
        ).fetchall()

    def in_doubt(self) -> list[InDoubtRow]:
        """Every in-doubt step of the campaign (claimed, no reply recorded, its run gone), for the run summary.

        Call it between messages: the row of a message this process is sending right now is `sending` too.
        """
        rows = self.db.execute(
            "SELECT contact_id, stage, step, message_id, attempts, run_id FROM email_sends WHERE campaign=? "
            "AND status='sending' ORDER BY contact_id, stage, step",
            (self.campaign,),
        )
        return [InDoubtRow(*row) for row in rows]

    def done_steps(self, contact_id: str, stage: str) -> set[int]:
        """Steps of a stage with a row in any status (pending ones are resumed, not re-planned)."""
        rows = self.db.execute(
            "SELECT step FROM email_sends WHERE campaign=? AND contact_id=? AND stage=?",
            (self.campaign, contact_id, stage),
        )
        return {row[0] for row in rows}

    def last_sent_on(self, contact_id: str) -> date | None:
        """The UTC day of the contact's last accepted email in this campaign."""
        row = self.db.execute(
            "SELECT MAX(sent_at) FROM email_sends WHERE campaign=? AND contact_id=? AND status='sent'",
            (self.campaign, contact_id),
        ).fetchone()
        return datetime.fromtimestamp(row[0], UTC).date() if row and row[0] is not None else None

    def status(self, contact_id: str, stage: str, step: int) -> tuple[str, str, int] | None:
        """(status, message_id, attempts) of one step, for tests and audits."""
        return self.db.execute(
            "SELECT status, message_id, attempts FROM email_sends WHERE campaign=? AND contact_id=? AND stage=? "
            "AND step=?",
            (self.campaign, contact_id, stage, step),
        ).fetchone()

    def counts(self) -> dict[str, int]:
        """Rows per status (for the run summary)."""
        rows = self.db.execute("SELECT status, COUNT(*) FROM email_sends WHERE campaign=? GROUP BY 1", (self.campaign,))
        return dict(rows.fetchall())

    # -- batches ----------------------------------------------------------------------------------------
    def records(self, contact_ids: Sequence[str]) -> dict[str, LedgerRecord]:
        """The ledger rows of many contacts in two queries per `CHUNK` (every id gets a record)."""
        found = {cid: LedgerRecord() for cid in contact_ids}
        ids = list(found)
        for chunk in chunks(ids):
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                "SELECT contact_id, stage, step, status, template, variant, scheduled_hour, message_id, sent_at "
                f"FROM email_sends WHERE campaign=? AND contact_id IN ({marks})",
                [self.campaign, *chunk],
            )
            for cid, *row in rows:
                found[cid].steps.append(StepRow(*row))
            rows = self.db.execute(
                "SELECT contact_id, stage, enrolled_on, ended_on, end_reason FROM email_enrollments "
                f"WHERE campaign=? AND contact_id IN ({marks}) ORDER BY id",
                [self.campaign, *chunk],
            )
            for cid, stage, enrolled_on, ended_on, reason in rows:
                record = found[cid]
                if ended_on is None:  # the last open one wins, as `enrollment` reads it
                    record.enrollment = Enrollment(stage, date.fromisoformat(enrolled_on))
                record.converted = record.converted or reason == "converted"
        return found

    def apply(self, writes: Sequence[LedgerWrites], today: date, at: float | None = None) -> None:
        """The writes of a batch of decisions, in one transaction (per contact in the order `deliver` made them)."""
        when = time.time() if at is None else at
        cancels = [(w.contact_id, *c) for w in writes for c in w.cancels]
        ends = [(w.contact_id, w.end_enrollment) for w in writes if w.end_enrollment is not None]
        enrolls = [(w.contact_id, w.enroll_stage) for w in writes if w.enroll_stage is not None]
        if not (cancels or ends or enrolls):
            return
        day = today.isoformat()
        with self.db.transaction():
            if cancels:
                self.db.executemany(
                    "UPDATE email_sends SET status='cancelled', attempted_at=?, detail=CASE WHEN status='sending' "
                    "THEN 'in doubt (maybe delivered), cancelled: ' || ? ELSE ? END "
                    "WHERE campaign=? AND contact_id=? AND stage=? AND step=? AND status IN ('sending', 'deferred')",
                    [(when, reason[:400], reason[:500], self.campaign, cid, stage, step)
                     for cid, stage, step, reason in cancels],
                )
            if ends:
                self.db.executemany(
                    "UPDATE email_enrollments SET ended_on=?, end_reason=? WHERE campaign=? AND contact_id=? "
                    "AND ended_on IS NULL",
                    [(day, reason, self.campaign, cid) for cid, reason in ends],
                )
            if enrolls:
                self.db.executemany(
                    "INSERT INTO email_enrollments (campaign, contact_id, stage, enrolled_on) VALUES (?, ?, ?, ?)",
                    [(self.campaign, cid, stage, day) for cid, stage in enrolls],
                )

    # -- enrollments ------------------------------------------------------------------------------------
    def enrollment(self, contact_id: str) -> Enrollment | None:
        """The contact's open enrollment."""
        row = self.db.execute(
            "SELECT stage, enrolled_on FROM email_enrollments WHERE campaign=? AND contact_id=? AND ended_on IS NULL "
            "ORDER BY id DESC LIMIT 1",
            (self.campaign, contact_id),
        ).fetchone()
        return Enrollment(row[0], date.fromisoformat(row[1])) if row else None

    def enroll(self, contact_id: str, stage: str, today: date) -> tuple[Enrollment, bool]:
        """Enroll in the stage's sequence if not already there; a stage change closes the old enrollment."""
        current = self.enrollment(contact_id)
        result, changed = enroll(current, stage, today)
        if changed:
            with self.db.transaction():
                if current is not None:
                    self._end(contact_id, today, f"stage changed to {stage}")
                self.db.execute(
                    "INSERT INTO email_enrollments (campaign, contact_id, stage, enrolled_on) VALUES (?, ?, ?, ?)",
                    (self.campaign, contact_id, stage, today.isoformat()),
                )
        return result, changed

    def end_enrollment(self, contact_id: str, today: date, reason: str) -> None:
        """Close the open enrollment (`converted`, ...); the contact gets nothing more until it changes stage."""
        with self.db.transaction():
            self._end(contact_id, today, reason)

    def has_converted(self, contact_id: str) -> bool:
        """Whether a run ended the contact's sequence on conversion (sticky: a converted contact stays out)."""
        row = self.db.execute(
            "SELECT 1 FROM email_enrollments WHERE campaign=? AND contact_id=? AND end_reason='converted' LIMIT 1",
            (self.campaign, contact_id),
        ).fetchone()
        return row is not None

    def _end(self, contact_id: str, today: date, reason: str) -> None:
        self.db.execute(
            "UPDATE email_enrollments SET ended_on=?, end_reason=? WHERE campaign=? AND contact_id=? "
            "AND ended_on IS NULL",
            (today.isoformat(), reason, self.campaign, contact_id),
        )
