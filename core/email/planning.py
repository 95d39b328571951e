"""What the channel does for one contact this run, decided from what the ledgers hold about it.

`Planner.decide` is the channel's order of checks (see `channel.py`) as a pure function of the contact, its
`LedgerRecord` and its suppression reason. It returns a `Decision`: the outcome when nothing is sent, the
ledger writes (cancellations, enrollment changes) and, when a step goes out, the `Intent` to claim and send.
Being pure, one decision costs no query: the channel reads the records of a batch of contacts at once, applies
the writes of the batch in one transaction, and sends the intents one by one (each claimed on its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from ..campaign.email_settings import EmailConfig
from ..sdk.contact import Contact
from .ledger import IN_DOUBT, LedgerRecord, LedgerWrites
from .send_time import plan_send, send_due
from .sequences import assign_variant, due_step, enroll
from .unsubscribe import message_id


@dataclass(frozen=True, slots=True)
class EmailOutcome:
    """What happened to one contact in this run.

    `status`: sent, failed_permanent, deferred (retried next run), cancelled, suppressed, converted,
    no_sequence (no steps for the contact's stage), not_due, waiting_hour, done (a step was claimed elsewhere),
    in_doubt (a killed run's step may have been delivered: not re-sent, nothing newer sent).
    `resumed`: the step was claimed by an earlier run; `in_doubt` with it: it was re-sent although in doubt.
    """

    contact_id: str
    status: str
    stage: str = ""
    step: int = 0
    variant: str = ""
    detail: str = ""
    resumed: bool = False
    in_doubt: bool = False


@dataclass(frozen=True, slots=True)
class Intent:
    """A step to claim and send. For a pending row (`resumed`), template, variant and Message-ID are the row's."""

    contact_id: str
    stage: str
    step: int
    template: str
    variant: str
    message_id: str
    scheduled_hour: int | None = None
    hour_source: str | None = None
    resumed: bool = False
    in_doubt: bool = False  # a resumed row that was in doubt (re-sent because the run was asked to)


@dataclass(frozen=True, slots=True)
class Decision:
    """One contact's decision: `writes` always, then either an `outcome` or an `intent`."""

    contact: Contact
    writes: LedgerWrites
    outcome: EmailOutcome | None = None
    intent: Intent | None = None


class Planner:
    """Decides each contact's step for one campaign run."""

    def __init__(
        self, config: EmailConfig, campaign: str, unsubscribe_key: SecretStr, domain: str, resend_in_doubt: bool
    ) -> None:
        """Keep what every decision needs: the sequences, the Message-ID key and domain, the in-doubt choice."""
        self.config = config
        self.campaign = campaign
        self.unsubscribe_key = unsubscribe_key
        self.domain = domain
        self.resend_in_doubt = resend_in_doubt

    def decide(
        self, contact: Contact, record: LedgerRecord, suppressed: str | None, now: datetime, converted: bool
    ) -> Decision:
        """Suppression → conversion → a pending step → enrollment → the due step → send hour → variant."""
        cid = contact.contact_id
        pending = record.pending()
        if suppressed is not None:
            cancels = tuple((r.stage, r.step, f"suppressed: {suppressed}") for r in pending)
            return Decision(contact, LedgerWrites(cid, cancels), EmailOutcome(cid, "suppressed", detail=suppressed))
        if converted or record.converted:
            cancels = tuple((r.stage, r.step, "converted") for r in pending)
            writes = LedgerWrites(cid, cancels, end_enrollment="converted" if converted else None)
            return Decision(contact, writes, EmailOutcome(cid, "converted"))
        if pending:  # an earlier run's message: same template, variant and Message-ID, before anything new
            row = pending[0]
            in_doubt = row.status == IN_DOUBT
            if in_doubt and not self.resend_in_doubt:  # maybe delivered: at most once, so hold the contact
                outcome = EmailOutcome(cid, "in_doubt", row.stage, row.step, detail="claimed, no reply recorded",
                                       in_doubt=True)
                return Decision(contact, LedgerWrites(cid), outcome)
            intent = Intent(cid, row.stage, row.step, row.template, row.variant, row.message_id, row.scheduled_hour,
                            resumed=True, in_doubt=in_doubt)
            return Decision(contact, LedgerWrites(cid), intent=intent)
        stage = contact.attributes.funnel_stage or ""
        steps = self.config.sequences.get(stage)
        if not steps:
            return Decision(contact, LedgerWrites(cid), EmailOutcome(cid, "no_sequence", stage))
        today = now.date()
        enrollment, changed = enroll(record.enrollment, stage, today)
        writes = LedgerWrites(cid)
        if changed:
            ended = f"stage changed to {stage}" if record.enrollment is not None else None
            writes = LedgerWrites(cid, end_enrollment=ended, enroll_stage=stage)
        due = due_step(steps, enrollment, record.done_steps(stage), today, False, record.last_sent_on(),
                       self.config.min_gap_days)
        if due is None:
            return Decision(contact, writes, EmailOutcome(cid, "not_due", stage))
        plan = plan_send(contact.attributes.history, self.config.default_send_hour, contact, due.due_on)
        if not send_due(plan, now):
            return Decision(contact, writes, EmailOutcome(cid, "waiting_hour", stage, due.step, detail=plan.describe()))
        variant = assign_variant(self.campaign, cid, stage, due.step, due.variants)
        mid = message_id(self.unsubscribe_key, self.campaign, cid, stage, due.step, self.domain)
        intent = Intent(cid, stage, due.step, due.template, variant, mid, plan.utc_hour, plan.ledger_source)
        return Decision(contact, writes, intent=intent)
