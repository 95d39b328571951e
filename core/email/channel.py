"""One email channel run, composed from the building blocks: the part a connector wraps.

`EmailChannel.deliver(contact, now=…)` does, for one contact: suppression → conversion stop → enrollment in the
stage's sequence → the due step → send hour → variant (`planning.Planner.decide`) → coupon, unsubscribe token,
context → render, MIME (`composing.compose`) → claim in the ledger (committed) → SMTP → mark (committed by the
transport's `on_accepted`, right after the 250). A step a previous run left `deferred` is resumed before
anything new, exactly as it was claimed; one it left in doubt (`sending`: killed before the reply was recorded)
holds the contact back (outcome `in_doubt`) unless the channel was built with `resend_in_doubt` (see
`ledger.py`). Either is cancelled when the contact has since been suppressed or converted.

The same steps serve a whole run in batches (`parallel.py`): `decide` and `jobs` take many contacts at once
(a few queries and one transaction per batch), and `send` sends one composed message over a given connection.
The contacts handed in must already be test-group contacts routed to email: the holdout is the engine's.

Errors that concern every contact stop the channel (they propagate after the claim is marked `deferred`, so
nothing is lost): a template error (`TemplateError`), a relay that refuses the login (`ConfigError`) or the
bounce address (`FatalError`). Everything about one recipient is an `EmailOutcome`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..campaign.email_settings import EmailConfig, EmailCredentials
from ..sdk.contact import Contact
from ..sdk.errors import CrmActivationError
from ..state.database import Database
from .composing import Composed, Job, Letterhead, compose
from .context import build_context
from .coupons import CouponIssuer
from .ledger import SendLedger
from .planning import Decision, EmailOutcome, Intent, Planner
from .rendering import TemplateRenderer
from .smtp import Delivery
from .suppression import EmailSuppression, is_hard_bounce, record_bounce, sendable_address
from .unsubscribe import UnsubscribeLedger, links

__all__ = ["EmailChannel", "EmailOutcome", "Transport"]


class Transport(Protocol):
    """What sends a built message: `SmtpTransport`, or an ESP API transport behind the same call."""

    def send(
        self,
        message: bytes,
        envelope_from: str,
        recipient: str,
        on_accepted: Callable[[Delivery], None] | None = None,
    ) -> Delivery:
        """Send DATA bytes to one recipient and classify the outcome; call `on_accepted` the moment it is accepted."""
        ...


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
            transport: an open `SmtpTransport` (the caller closes it); `deliver` sends over it.
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
        self.planner = Planner(config, campaign, credentials.unsubscribe_key, self.domain, resend_in_doubt)
        self._template_values = config.template_values()
        self._unsubscribe_mailbox = config.unsubscribe_mailbox  # properties that parse an address: once per run
        self._bounce_envelope = config.bounce_envelope

    def letterhead(self, now: datetime) -> Letterhead:
        """What every message sent at `now` shares (the Date header is the run's clock)."""
        return Letterhead(self.config.from_address, self.config.reply_to, now)

    # -- per contact ------------------------------------------------------------------------------------
    def deliver(self, contact: Contact, *, now: datetime, converted: bool = False) -> EmailOutcome:
        """Send the contact the step that is due now, if any (see the module docstring for the order)."""
        [decision] = self.decide([(contact, converted)], now)
        if decision.intent is None:
            assert decision.outcome is not None
            return decision.outcome
        [job] = self.jobs([decision], now)
        return self.send(decision.intent, job.to_address, compose(self.renderer, self.letterhead(now), job),
                         self.transport, now)

    def finish(self, seen: Collection[str]) -> int:
        """After a complete run, cancel pending rows of contacts the run no longer reached; return how many.

        Those contacts left the audience or were suppressed upstream; rows of contacts in `seen` were resolved
        by `deliver`.
        """
        cancelled = 0
        for cid, stage, step in self.ledger.pending():
            if cid not in seen:
                self.ledger.cancel(cid, stage, step, "not in this run's audience any more")
                cancelled += 1
        return cancelled

    # -- the steps, for a batch of contacts ---------------------------------------------------------------
    def decide(self, contacts: Sequence[tuple[Contact, bool]], now: datetime) -> list[Decision]:
        """Decide each (contact, converted) from the ledgers, and apply the decisions' writes in one transaction.

        The contacts must be distinct: each decision reads the ledger as it was before the batch.
        """
        people = [contact for contact, _ in contacts]
        records = self.ledger.records([c.contact_id for c in people])
        reasons = self.suppression.reasons(people)
        decisions = [
            self.planner.decide(contact, records[contact.contact_id], reasons[contact.contact_id], now, converted)
            for contact, converted in contacts
        ]
        self.ledger.apply([d.writes for d in decisions], now.date())
        return decisions

    def jobs(self, decisions: Sequence[Decision], now: datetime) -> list[Job]:
        """The message job of each decision with an intent: coupons and unsubscribe tokens recorded in one go."""
        sends = [(d.contact, d.intent) for d in decisions if d.intent is not None]
        if not sends:
            return []
        unsubscribes = {
            contact.contact_id: links(self.credentials.unsubscribe_key, self.campaign, contact.contact_id,
                                      self.config.unsubscribe_url, self._unsubscribe_mailbox)
            for contact, _ in sends
        }
        with self.db.transaction():
            self.tokens.record_tokens((u.token, self.campaign, cid) for cid, u in unsubscribes.items())
            coupons = self._coupons(list(unsubscribes), now)
        jobs = []
        for contact, intent in sends:
            cid = contact.contact_id
            unsubscribe = unsubscribes[cid]
            context = build_context(
                contact, campaign=self.campaign, stage=intent.stage, step=intent.step,
                unsubscribe_url=unsubscribe.https, coupon=coupons.get(cid), campaign_name=self.campaign_name,
                default_locale=self.config.locale, extra=self._template_values,
            )
            feedback = (
                f"{self.campaign}:{intent.stage}-{intent.step}:{intent.variant or 'none'}:{self.config.feedback_id}"
                if self.config.feedback_id
                else None
            )
            jobs.append(Job(intent.template, intent.variant or None, context, sendable_address(contact) or "",
                            context["full_name"], intent.message_id, unsubscribe, feedback))
        return jobs

    def _coupons(self, contact_ids: list[str], now: datetime) -> dict[str, dict[str, Any]]:
        if self.coupons is None or self.config.coupon is None:
            return {}
        coupon = self.config.coupon
        found = {}
        for cid, (code, issued_at) in self.coupons.issue_records(contact_ids).items():
            issued = datetime.fromtimestamp(issued_at or now.timestamp(), UTC)
            expires = (issued + timedelta(days=coupon.valid_days)).date().isoformat() if coupon.valid_days else None
            found[cid] = {"code": code, "amount": coupon.amount, "currency": coupon.currency, "expires_on": expires}
        return found

    def send(self, intent: Intent, address: str, composed: Composed, transport: Transport,
             now: datetime) -> EmailOutcome:
        """Claim the intent's step (committed), send the composed message over `transport`, record the outcome.

        Raises the composed message's rendering error (a template bug concerns everyone: the step is kept
        `deferred`), and the transport's configuration errors (likewise). A `DatabaseError` recording an accepted
        message leaves the step in doubt.
        """
        cid = intent.contact_id
        at = now.timestamp()
        claim = self.ledger.claim(cid, intent.stage, intent.step, intent.template, intent.variant, intent.message_id,
                                  intent.scheduled_hour, intent.hour_source, self.run_id, at,
                                  resend_in_doubt=intent.in_doubt)
        if claim is None:
            return EmailOutcome(cid, "done", intent.stage, intent.step, intent.variant)
        if (claim.template, claim.variant, claim.message_id) != (intent.template, intent.variant, intent.message_id):
            self.ledger.mark_deferred(claim, None, "not sent: the step changed before it was sent", at)
            return EmailOutcome(cid, "deferred", claim.stage, claim.step, claim.variant, "the step changed",
                                claim.resumed, intent.in_doubt)
        if composed.error is not None:  # a template bug concerns everyone: stop, keep the step pending
            self.ledger.mark_deferred(claim, None, f"not sent: {type(composed.error).__name__}", at)
            raise composed.error
        if composed.invalid is not None:
            self.ledger.mark_failed(claim, None, f"cannot build the message: {composed.invalid}", at)
            return EmailOutcome(cid, "failed_permanent", claim.stage, claim.step, claim.variant, composed.invalid)
        accepted: list[Delivery] = []

        def record(delivery: Delivery) -> None:  # the transport calls it right after the 250: commit, nothing else
            accepted.append(delivery)
            self.ledger.mark_sent(claim, delivery.code or 250, delivery.detail, at)

        try:
            delivery = transport.send(composed.data, self._bounce_envelope, address, record)
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
                            claim.resumed, intent.in_doubt)
