"""The email ledgers in the state database: one row per (campaign, contact, stage, step) sent, and enrollments.

Exactly-once protocol (the honest version; docs/email-templates.md repeats it for operators):

1. `claim` inserts the row as `sending` and COMMITS, before any SMTP traffic. UNIQUE(campaign, contact_id,
   stage, step) makes a second claim of the same step impossible, on any machine sharing the file.
2. The message goes out with the Message-ID stored in the row (derived from campaign, contact, stage and step).
3. `mark_sent` commits `sent` once the server answered 250 to the end of DATA; a 5xx makes it
   `failed_permanent` (never retried), 4xx replies and dropped connections that outlast the retries make it
   `deferred` (nothing was accepted; the next run sends it).

A run killed between 1 and 3 leaves `sending`. The next run cannot know whether the relay accepted the
message, so it re-sends it — same template, variant, coupon and Message-ID, all read from the row or derived
from it — and marks it. Outcomes: if the kill came before the server's 250 (almost the whole window: render,
connect, transfer), the server discarded the incomplete transaction (RFC 5321 §4.1.1.4) and the contact gets
the email exactly once. Only a kill between the server's 250 and our COMMIT (one SQLite write) can deliver it
twice, and then both copies carry one Message-ID, which receivers that deduplicate by Message-ID (Gmail
does) show once. So: at-least-once delivery with an idempotency key, never skipped; a duplicate needs a crash
in a window of about a millisecond. SMTP offers no way to ask a relay whether it already accepted a message, so
no sender can promise more without a relay-side idempotency key.

Statuses: `sending`, `deferred` (pending; `claim` returns them again), `sent`, `failed_permanent`,
`cancelled` (suppressed before a pending re-send; terminal). The measurement module reads
`email_sends(campaign, contact_id, step, variant)` for variant cuts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
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
_COLUMNS = "contact_id, stage, step, template, variant, scheduled_hour, message_id, attempts, status"


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


class SendLedger:
    """The send and enrollment ledgers of one campaign, on the state database connection."""

    def __init__(self, db: Database, campaign: str) -> None:
        """Create the tables when missing (`db` is the run's `StateStore.db`)."""
        self.db = db
        self.campaign = campaign
        db.apply_schema(SCHEMA)

    # -- the exactly-once protocol ----------------------------------------------------------------------
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
    ) -> Claim | None:
        """Claim a step before sending it (committed on return); None when it is already done.

        A pending row (`sending`, `deferred`) is claimed again as it was recorded: its template, variant and
        Message-ID win over the arguments, so a re-send is the same message even if the config changed. `at` is
        the run's clock (epoch seconds; default now), so schedules can be replayed in tests and backfills.
        """
        now = time.time() if at is None else at
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
            if row[8] not in PENDING:
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
        """Cancel a pending step (the contact was suppressed meanwhile); False when it was not pending."""
        cursor = self.db.execute(
            "UPDATE email_sends SET status='cancelled', detail=?, attempted_at=? WHERE campaign=? AND contact_id=? "
            "AND stage=? AND step=? AND status IN ('sending', 'deferred')",
            (reason[:500], time.time() if at is None else at, self.campaign, contact_id, stage, step),
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
