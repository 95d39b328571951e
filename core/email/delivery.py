"""The e-mail phase of a run: deliver the due step to each test-group contact the engine routed to e-mail.

The engine stages those contacts like any platform's members (so the holdout-contamination guard applies to
e-mail addresses too), then hands them here after the ad platforms were pushed. E-mail is not an audience on
a remote platform: enrollment, sequencing and the exactly-once send ledger live in the state database
(see `ledger.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from ..campaign.credentials import load_credentials
from ..campaign.email_settings import EmailConfig, EmailCredentials
from ..campaign.loader import LoadedCampaign
from ..campaign.schema import PlatformConfig
from ..pipeline.suppression import SuppressionList
from ..sdk.contact import Contact
from ..sdk.summary import PlatformSummary
from ..state.database import Database
from .channel import EmailChannel
from .rendering import TemplateRenderer
from .smtp import SmtpTransport
from .suppression import EmailSuppression

PLATFORM = "email"


def email_credentials(smtp_override: tuple[str, int] | None = None) -> EmailCredentials:
    """Credentials from `CRM_ACTIVATION_EMAIL_*`; a sandbox relay replaces host and port (plain SMTP)."""
    credentials = load_credentials(EmailCredentials, PLATFORM, PlatformConfig())
    assert isinstance(credentials, EmailCredentials)
    if smtp_override is not None:
        host, port = smtp_override
        update = {"smtp_host": host, "smtp_port": port, "smtp_starttls": False, "smtp_ssl": False}
        credentials = credentials.model_copy(update=update)
    return credentials


def deliver(
    loaded: LoadedCampaign,
    config: EmailConfig,
    credentials: EmailCredentials,
    db: Database,
    contacts: Iterator[Contact],
    summary: PlatformSummary,
    run_id: str,
) -> None:
    """Send each contact its due step; count outcomes by status in `summary.messages`."""
    templates = loaded.resolve(config.templates) if config.templates else None
    bounces = SuppressionList.load(config.bounces, loaded.base_dir) if config.bounces else None
    transport = SmtpTransport(
        credentials, max_attempts=config.max_attempts, initial_wait=config.initial_wait, max_wait=config.max_wait
    )
    with transport:
        channel = EmailChannel(
            config,
            credentials,
            db,
            transport,
            campaign=loaded.campaign.campaign,
            campaign_name=loaded.campaign.name,
            renderer=TemplateRenderer(templates),
            suppression=EmailSuppression(db, bounces, config.require_consent),
            run_id=run_id,
        )
        seen: set[str] = set()
        now = datetime.now(UTC)
        for contact in contacts:
            seen.add(contact.contact_id)
            converted = bool(contact.attributes.value("converted"))
            outcome = channel.deliver(contact, now=now, converted=converted)
            summary.messages[outcome.status] = summary.messages.get(outcome.status, 0) + 1
            if outcome.status == "sent":
                stage = summary.stages.get(outcome.stage)
                if stage is not None:
                    stage.added += 1
        cancelled = channel.finish(seen)
        if cancelled:
            summary.messages["cancelled"] = summary.messages.get("cancelled", 0) + cancelled
