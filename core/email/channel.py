"""One email channel run, composed from the building blocks: the part a connector wraps.

`EmailChannel.deliver(contact, now=…)` does, for one contact: suppression → conversion stop → enrollment in the
stage's sequence → the due step → send hour → variant → claim in the ledger (committed) → coupon, context,
render, MIME → SMTP → mark (committed by the transport's `on_accepted`, right after the 250). A step a
previous run left `deferred` is resumed before anything new, exactly as it was claimed; one it left in doubt
(`sending`: killed before the reply was recorded) holds the contact back (outcome `in_doubt`) unless the
channel was built with `resend_in_doubt` (see `ledger.py`). Either is cancelled when the contact has since been
suppressed or converted.
The contacts handed in must already be test-group contacts routed to email: the holdout is the engine's.

Errors that concern every contact stop the channel (they propagate after the claim is marked `deferred`, so
nothing is lost): a template error (`TemplateError`), a relay that refuses the login (`ConfigError`) or the
bounce address (`FatalError`). Everything about one recipient is an `EmailOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from typing import Protocol

from ..campaign.email_settings import EmailConfig, EmailCredentials
from ..sdk.contact import Contact
from ..sdk.errors import CrmActivationError
from ..state.database import Database
from .context import build_context
from .coupons import CouponIssuer
from .ledger import IN_DOUBT, Claim, SendLedger
from .message import build_message
from .rendering import TemplateRenderer
from .send_time import plan_send, send_due
from .sequences import assign_variant, due_step
from .smtp import Delivery
from .suppression import EmailSuppression, is_hard_bounce, record_bounce, sendable_address
from .unsubscribe import UnsubscribeLedger, links, message_id


class Transport(Protocol):
    """What sends a built message: `SmtpTransport`, or an ESP API transport behind the same call."""

    def send(
        self,
        message: EmailMessage,
        envelope_from: str,
        recipient: str,
        on_accepted: Callable[[Delivery], None] | None = None,
    ) -> Delivery:
        """Send to one recipient and classify the outcome; call `on_accepted` the moment it is accepted."""
        ...


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


class EmailChannel:
    """Delivers the due step of each contact of one campaign."""

    def __init__(
        self,
        config: EmailConfig,
        credentials: EmailCredentials,
        db: Database,
        transport: Transport,
        *,
        campaign: str,
        campaign_name: str = "",
        renderer: TemplateRenderer | None = None,
        suppression: EmailSuppression | None = None,
        run_id: str | None = None,
        resend_in_doubt: bool = False,
    ) -> None:
        """Wire the blocks for one run.

        Args:
            config: the campaign's email section (its `templates` path already resolved, or pass `renderer`).
            credentials: keys and relay settings from the environment.
            db: the state database connection (`StateStore.db`).
            transport: an open `SmtpTransport` (the caller closes it).
            campaign: the campaign id.
            campaign_name: its human name, for templates.
            renderer: defaults to one over `config.templates` (or the packaged templates).
            suppression: defaults to one without a bounce file, reading the state database tables.
            run_id: recorded on ledger rows.
            resend_in_doubt: re-send steps a killed run left in doubt (at least once) instead of holding them.
        """
        self.config = config
        self.credentials = credentials
        self.db = db
        self.transport = transport
        self.campaign = campaign
        self.campaign_name = campaign_name
        self.renderer = renderer or TemplateRenderer(config.templates)
        self.suppression = suppression or EmailSuppression(db, require_consent=config.require_consent)
        self.run_id = run_id
        self.resend_in_doubt = resend_in_doubt
        self.ledger = SendLedger(db, campaign)
        self.tokens = UnsubscribeLedger(db)
        self.coupons = (
            CouponIssuer(db, campaign, config.coupon.prefix, credentials.coupon_key) if config.coupon else None
        )
        self.domain = config.message_id_domain or config.from_domain

    # -- per contact ------------------------------------------------------------------------------------
    def deliver(self, contact: Contact, *, now: datetime, converted: bool = False) -> EmailOutcome:
        """Send the contact the step that is due now, if any (see the module docstring for the order)."""
        cid = contact.contact_id
        pending = self.ledger.pending_of(cid)
        reason = self.suppression.reason(contact)
        if reason is not None:
            for stage, step, _ in pending:
                self._cancel(cid, stage, step, f"suppressed: {reason}")
            return EmailOutcome(cid, "suppressed", detail=reason)
        today = now.date()
        if converted or self.ledger.has_converted(cid):
            for stage, step, _ in pending:
                self._cancel(cid, stage, step, "converted")
            if converted:
                self.ledger.end_enrollment(cid, today, "converted")
            return EmailOutcome(cid, "converted")
        if pending:  # an earlier run's message: same template, variant and Message-ID, before anything new
            stage, step, status = pending[0]
            in_doubt = status == IN_DOUBT
            if in_doubt and not self.resend_in_doubt:  # maybe delivered: at most once, so hold the contact
                return EmailOutcome(cid, "in_doubt", stage, step, detail="claimed, no reply recorded", in_doubt=True)
            claim = self.ledger.claim(cid, stage, step, "", "", "", run_id=self.run_id, at=now.timestamp(),
                                      resend_in_doubt=in_doubt)
            if claim is not None:
                return self._send(claim, contact, now, in_doubt)
        stage = contact.attributes.funnel_stage or ""
        steps = self.config.sequences.get(stage)
        if not steps:
            return EmailOutcome(cid, "no_sequence", stage)
        enrollment, _ = self.ledger.enroll(cid, stage, today)
        last = self.ledger.last_sent_on(cid)
        due = due_step(steps, enrollment, self.ledger.done_steps(cid, stage), today, False, last,
                       self.config.min_gap_days)
        if due is None:
            return EmailOutcome(cid, "not_due", stage)
        plan = plan_send(contact.attributes.history, self.config.default_send_hour, contact, due.due_on)
        if not send_due(plan, now):
            return EmailOutcome(cid, "waiting_hour", stage, due.step, detail=plan.describe())
        variant = assign_variant(self.campaign, cid, stage, due.step, due.variants)
        mid = message_id(self.credentials.unsubscribe_key, self.campaign, cid, stage, due.step, self.domain)
        claim = self.ledger.claim(cid, stage, due.step, due.template, variant, mid, plan.utc_hour,
                                  plan.ledger_source, self.run_id, now.timestamp())
        if claim is None:
            return EmailOutcome(cid, "done", stage, due.step, variant)
        return self._send(claim, contact, now)

    def finish(self, seen: Collection[str]) -> int:
        """After a complete run, cancel pending rows of contacts the run no longer reached; return how many.

        Those contacts left the audience or were suppressed upstream; rows of contacts in `seen` were resolved
        by `deliver`.
        """
        cancelled = 0
        for cid, stage, step in self.ledger.pending():
            if cid not in seen:
                self._cancel(cid, stage, step, "not in this run's audience any more")
                cancelled += 1
        return cancelled

    # -- internals --------------------------------------------------------------------------------------
    def _cancel(self, cid: str, stage: str, step: int, reason: str) -> None:
        self.ledger.cancel(cid, stage, step, reason)

    def _coupon(self, cid: str, now: datetime) -> dict[str, object] | None:
        if self.coupons is None or self.config.coupon is None:
            return None
        code = self.coupons.issue(cid)
        issued = datetime.fromtimestamp(self.coupons.issued_at(cid) or now.timestamp(), UTC)
        days = self.config.coupon.valid_days
        expires = (issued + timedelta(days=days)).date().isoformat() if days else None
        return {"code": code, "amount": self.config.coupon.amount, "currency": self.config.coupon.currency,
                "expires_on": expires}

    def _send(self, claim: Claim, contact: Contact, now: datetime, in_doubt: bool = False) -> EmailOutcome:
        cid = contact.contact_id
        at = now.timestamp()
        address = sendable_address(contact) or ""
        unsubscribe = links(self.credentials.unsubscribe_key, self.campaign, cid, self.config.unsubscribe_url,
                            self.config.unsubscribe_mailbox)
        self.tokens.record_token(unsubscribe.token, self.campaign, cid)
        try:
            context = build_context(
                contact, campaign=self.campaign, stage=claim.stage, step=claim.step, unsubscribe_url=unsubscribe.https,
                coupon=self._coupon(cid, now), campaign_name=self.campaign_name, default_locale=self.config.locale,
                extra=self.config.template_values(),
            )
            rendered = self.renderer.render_message(claim.template, claim.variant or None, context)
        except CrmActivationError as error:  # a template bug concerns everyone: stop, keep the step pending
            self.ledger.mark_deferred(claim, None, f"not sent: {type(error).__name__}", at)
            raise
        feedback = (
            f"{self.campaign}:{claim.stage}-{claim.step}:{claim.variant or 'none'}:{self.config.feedback_id}"
            if self.config.feedback_id
            else None
        )
        try:
            message = build_message(
                rendered, from_address=self.config.from_address, to_address=address, message_id=claim.message_id,
                unsubscribe=unsubscribe, to_name=context["full_name"], reply_to=self.config.reply_to,
                feedback_id=feedback, date=now,
            )
        except ValueError as error:
            self.ledger.mark_failed(claim, None, f"cannot build the message: {error}", at)
            return EmailOutcome(cid, "failed_permanent", claim.stage, claim.step, claim.variant, str(error))
        accepted: list[Delivery] = []

        def record(delivery: Delivery) -> None:  # the transport calls it right after the 250: commit, nothing else
            accepted.append(delivery)
            self.ledger.mark_sent(claim, delivery.code or 250, delivery.detail, at)

        try:
            delivery = self.transport.send(message, self.config.bounce_envelope, address, record)
        except CrmActivationError as error:
            if not accepted:  # login refused, bounce address refused: nothing was accepted
                self.ledger.mark_deferred(claim, None, f"not sent: {type(error).__name__}", at)
            raise  # else the record itself failed (the database): the row stays `sending`, in doubt
        if delivery.status == "sent":
            if not accepted:  # a transport that does not call back: record now
                self.ledger.mark_sent(claim, delivery.code or 250, delivery.detail, at)
        elif delivery.status == "failed_permanent":
            self.ledger.mark_failed(claim, delivery.code, delivery.detail, at)
            if is_hard_bounce(delivery.code, delivery.detail):
                record_bounce(self.db, address, cid, delivery.code, delivery.detail)
        elif delivery.status == "in_doubt":  # no reply after the end of DATA: the row stays `sending`, in doubt
            return EmailOutcome(cid, "in_doubt", claim.stage, claim.step, claim.variant, delivery.detail,
                                claim.resumed, True)
        else:
            self.ledger.mark_deferred(claim, delivery.code, delivery.detail, at)
        return EmailOutcome(cid, delivery.status, claim.stage, claim.step, claim.variant, delivery.detail,
                            claim.resumed, in_doubt)
