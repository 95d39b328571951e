"""E-mail as one of the run's channels: deliver the due step to each test-group contact the engine routed here.

The engine stages those contacts like any platform's members (so the holdout-contamination guard applies to
e-mail addresses too), then calls `EmailDelivery.push` while the ad platforms push (each channel in its own
thread). What e-mail asks of the engine it declares as a `pipeline.channels.Channel`:

- its member is the mailbox the address delivers to (`EMAIL_PAYLOAD`), in clear;
- e-mail consent and unsubscribes gate it, not ad consent;
- the whole contact is staged, not just its address: names, history and coupons personalize the message;
- two contacts with one mailbox would get every message twice, so all but one (the lowest contact id) are held
  back after staging.

E-mail is not an audience on a remote platform: enrollment, sequencing and the at-most-once send ledger live
in the state database (see `ledger.py`); steps a killed run left in doubt are listed in the summary's
`in_doubt`, and re-sent only with `resend_in_doubt`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from ..campaign.credentials import load_credentials
from ..campaign.email_settings import EmailConfig, EmailCredentials
from ..campaign.loader import LoadedCampaign
from ..campaign.schema import EMAIL_CHANNEL, Campaign, PlatformConfig
from ..pipeline.channels import HeldBack, channel_phase
from ..pipeline.onboarding import parse_bool
from ..pipeline.payload import PayloadBuilder
from ..pipeline.platform_sync import audience_specs
from ..pipeline.run_options import RunProgress
from ..pipeline.suppression import SuppressionList
from ..sdk.contact import Contact
from ..sdk.errors import CrmActivationError
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.normalization import email_mailbox
from ..sdk.redaction import Redactor, remember_secrets
from ..sdk.summary import InDoubtSend, PlatformSummary, StageCounts
from ..sdk.types import IdentifierRule, Member
from ..state.database import Database
from ..state.store import StateStore
from .channel import EmailChannel
from .composing import START_AFTER, Composer
from .parallel import ParallelSend
from .planning import EmailOutcome
from .rendering import TemplateRenderer
from .smtp import SmtpTransport
from .suppression import EmailSuppression

PLATFORM = EMAIL_CHANNEL
#: Why a staged contact gets no e-mail when another contact of the run has the same address.
DUPLICATE_ADDRESS = "another contact has the same mailbox"
#: How the e-mail channel tells contacts apart: by mailbox (`email_mailbox`), so that two records spelling one
#: mailbox differently get one message, and a test record never mails a control record's mailbox. The message
#: itself goes to the address as the CRM wrote it.
EMAIL_PAYLOAD = PayloadBuilder(
    PLATFORM,
    (IdentifierRule(IdentifierKind.EMAIL, "email", email_mailbox, hashed=False),),
    frozenset({IdentifierKind.EMAIL}),
)


def email_credentials(smtp_override: tuple[str, int] | None = None) -> EmailCredentials:
    """Credentials from `CRM_ACTIVATION_EMAIL_*`; a sandbox relay replaces host and port (plain SMTP)."""
    credentials = load_credentials(EmailCredentials, PLATFORM, PlatformConfig())
    assert isinstance(credentials, EmailCredentials)
    if smtp_override is not None:
        host, port = smtp_override
        update = {"smtp_host": host, "smtp_port": port, "smtp_starttls": False, "smtp_ssl": False}
        credentials = credentials.model_copy(update=update)
    return credentials


class EmailDelivery:
    """The e-mail channel of one run (see `pipeline.channels.Channel`)."""

    name = PLATFORM
    payload = EMAIL_PAYLOAD
    email_consent = True
    requests = 0

    def __init__(
        self,
        loaded: LoadedCampaign,
        campaign: Campaign,
        config: EmailConfig,
        *,
        dry_run: bool,
        smtp: tuple[str, int] | None,
        redactor: Redactor,
        resend_in_doubt: bool = False,
        progress: RunProgress | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.loaded = loaded
        self.progress = progress or RunProgress()
        self.cancel = cancel
        self.campaign = campaign
        self.config = config
        self.dry_run = dry_run
        self.smtp = smtp
        self.redactor = redactor
        self.resend_in_doubt = resend_in_doubt

    @staticmethod
    def staged(contact: Contact, member: Member) -> tuple[str, str]:
        """The whole contact as JSON (names, history, coupon personalize the message); no fingerprint to diff.

        Static: the stager keeps this function alone, and may be sent to another process without the channel.
        """
        return contact.model_dump_json(), ""

    def hold_back(self, state: StateStore) -> HeldBack:
        """Keep one contact per address: the others would receive every message twice."""
        return HeldBack(state.drop_duplicate_members(self.name), DUPLICATE_ADDRESS)

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        """Send each staged test contact its due step (not in dry runs: nothing is sent)."""
        desired = state.desired_counts(self.name)
        for stage, spec in audience_specs(self.campaign, None).items():
            summary.stages[stage] = StageCounts(audience=f"sequence: {stage}", desired=desired.get(spec.key, 0))
        if self.dry_run:
            summary.messages["not sent: dry run"] = summary.eligible
            return
        with channel_phase(self.name, summary, self.redactor):
            credentials = email_credentials(self.smtp)
            remember_secrets(credentials.secret_values())
            contacts = (Contact.model_validate_json(payload) for payload in state.staged_payloads(self.name))
            self.progress.platform_started(self.name, sum(desired.values()))
            deliver(self.loaded, self.config, credentials, state.db, contacts, summary, run_id,
                    resend_in_doubt=self.resend_in_doubt, on_contact=lambda: self.progress.pushed(self.name, 1),
                    cancel=self.cancel)


def is_converted(contact: Contact) -> bool:
    """Whether the CRM marks the contact converted (its sequence then stops): yes/no spellings, not Python truth.

    The `converted` column arrives as text or a number; "no", "false" and "0" are not conversions. A value that
    is no yes/no at all counts as not converted: it cannot stop a sequence the CRM never said had ended.
    """
    try:
        return bool(parse_bool(contact.attributes.value("converted")))
    except ValueError:
        return False


def deliver(
    loaded: LoadedCampaign,
    config: EmailConfig,
    credentials: EmailCredentials,
    db: Database,
    contacts: Iterator[Contact],
    summary: PlatformSummary,
    run_id: str,
    *,
    resend_in_doubt: bool = False,
    on_contact: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    start_processes_after: int = START_AFTER,
) -> None:
    """Send each contact its due step; count outcomes by status in `summary.messages`.

    Messages go out over `config.smtp_connections` connections while the next ones are decided and rendered in
    `config.render_processes` processes (`parallel.py`). `on_contact` is told after each contact (progress);
    once `cancel` is set (Ctrl-C) no further message starts: those being sent finish and are recorded, so an
    interrupted run leaves nothing in doubt.

    Steps still in doubt at the end (also when the channel stopped on an error) are listed in `summary.in_doubt`:
    they are the operator's to decide, so every run shows them until they are resolved.
    """
    templates = loaded.resolve(config.templates) if config.templates else None
    bounces = SuppressionList.load(config.bounces, loaded.base_dir) if config.bounces else None
    transports = [
        SmtpTransport(credentials, max_attempts=config.max_attempts, initial_wait=config.initial_wait,
                      max_wait=config.max_wait)
        for _ in range(config.smtp_connections)
    ]
    with contextlib.ExitStack() as stack:
        for transport in transports:
            stack.enter_context(transport)
        channel = EmailChannel(
            config,
            credentials,
            db,
            transports[0],
            campaign=loaded.campaign.campaign,
            campaign_name=loaded.campaign.name,
            renderer=TemplateRenderer(templates),
            suppression=EmailSuppression(db, bounces, config.require_consent),
            run_id=run_id,
            resend_in_doubt=resend_in_doubt,
        )
        now = datetime.now(UTC)
        processes = config.render_processes or os.cpu_count() or 1
        composer = stack.enter_context(
            Composer(channel.renderer, channel.letterhead(now), processes, start_processes_after)
        )
        try:
            _deliver_all(channel, transports, composer, now, contacts, summary, on_contact, cancel)
        finally:
            with contextlib.suppress(CrmActivationError):  # never hide the error that stopped the channel
                summary.in_doubt = [
                    InDoubtSend(contact_id=row.contact_id, stage=row.stage, step=row.step, message_id=row.message_id)
                    for row in channel.ledger.in_doubt()
                ]


def _deliver_all(
    channel: EmailChannel,
    transports: list[SmtpTransport],
    composer: Composer,
    now: datetime,
    contacts: Iterator[Contact],
    summary: PlatformSummary,
    on_contact: Callable[[], None] | None,
    cancel: threading.Event | None,
) -> None:
    """The run, apart so that `deliver` can list what is in doubt however it ends."""

    def count(outcome: EmailOutcome) -> None:  # called one at a time (ParallelSend.report)
        summary.messages[outcome.status] = summary.messages.get(outcome.status, 0) + 1
        if outcome.in_doubt and outcome.status != "in_doubt":
            summary.resent_in_doubt += 1
        if outcome.status == "sent":
            stage = summary.stages.get(outcome.stage)
            if stage is not None:
                stage.added += 1
        if on_contact is not None:
            on_contact()

    run = ParallelSend(channel, transports, composer, now=now, report=count, cancel=cancel)
    seen = run.run((contact, is_converted(contact)) for contact in contacts)
    cancelled = channel.finish(seen)
    if cancelled:
        summary.messages["cancelled"] = summary.messages.get("cancelled", 0) + cancelled
