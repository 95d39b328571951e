"""An ad platform as a `Channel`: an installed connector, pushed by `PlatformSync`.

Its members are the connector's normalized, hashed identifiers, staged encoded (the diff against the last run
compares their fingerprints), and ad consent gates it. Its phase is the diff: ensure each funnel stage's
audience, remove, then add, batch by batch.
"""

from __future__ import annotations

import pluggy

from ..campaign.schema import Campaign
from ..sdk.connector import Connector
from ..sdk.contact import Contact
from ..sdk.redaction import Redactor
from ..sdk.summary import PlatformSummary
from ..sdk.types import Member
from ..state.store import StateStore, encode_member
from .channels import HeldBack, channel_phase
from .payload import PayloadBuilder
from .plan_file import PlanWriter
from .platform_sync import PlatformSync
from .run_options import RunProgress


class PlatformChannel:
    """One ad platform of the run (see `channels.Channel`)."""

    email_consent = False
    #: `staged` is the encoded member alone: the pipeline need not build the whole contact for it
    keeps_contact = False

    def __init__(
        self,
        name: str,
        connector: Connector,
        campaign: Campaign,
        *,
        hooks: pluggy.HookRelay,
        redactor: Redactor,
        dry_run: bool,
        progress: RunProgress | None = None,
        plan: PlanWriter | None = None,
    ) -> None:
        self.name = name
        self.plan = plan
        self.connector = connector
        self.campaign = campaign
        self.hooks = hooks
        self.redactor = redactor
        self.dry_run = dry_run
        self.progress = progress or RunProgress()
        self.payload = PayloadBuilder(
            name,
            connector.identifier_rules,
            connector.match_keys,
            default_country=campaign.default_country if campaign is not None else None,
        )

    @property
    def requests(self) -> int:
        """Requests the connector's HTTP client sent."""
        return self.connector.http.requests_sent

    def staged(self, contact: Contact, member: Member) -> tuple[str, str]:
        """The encoded member and its fingerprint: all a platform is sent, and what the next run diffs against."""
        return encode_member(member)

    def hold_back(self, state: StateStore) -> HeldBack | None:
        """Nothing: a platform matches people by any of its identifiers, so shared values are its business."""
        return None

    def push(self, state: StateStore, summary: PlatformSummary, run_id: str) -> None:
        """Check the credentials (not in dry runs), then push the diff; a failure is recorded, not raised.

        With a plan writer (dry runs), the planned changes are then written per record.
        """
        connector = self.connector
        size = min(connector.max_batch_size, self.campaign.sync.batch_size or connector.max_batch_size)
        sync = PlatformSync(
            campaign=self.campaign,
            platform=self.name,
            connector=connector,
            state=state,
            run_id=run_id,
            dry_run=self.dry_run,
            hooks=self.hooks,
            batch_size=size,
            on_batch=self.progress.pushed,
            on_start=self.progress.platform_started,
            in_flight=connector.requests_in_flight,
        )
        with channel_phase(self.name, summary, self.redactor):
            if not self.dry_run:
                connector.check()
            sync.run(summary)
        if self.plan is not None:  # also after a failure: the changes planned before it are worth seeing
            self.plan.write(self.name, state.planned_operations(self.name))
