"""The campaign run: stream the audience, route each contact, stage the desired membership, push each channel.

`Engine.run()` is what `crm-activation run` calls. It reads the audience once, streaming, with no per-contact
state in memory (see `ContactStream` and `Stager`). The engine knows no channel in particular: it is handed
`Channel`s (by default the campaign's, from `channel_plan`) and asks each what it needs: its payload, what to
stage, what to hold back, and finally to push.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pluggy

from ..campaign.loader import LoadedCampaign
from ..sdk.errors import CrmActivationError
from ..sdk.plugins import make_plugin_manager
from ..sdk.redaction import Redactor
from ..sdk.summary import PlatformSummary, RunSummary
from ..state.store import StateStore
from .accounting import RunAccounts
from .channel_plan import campaign_channels
from .channels import Channel
from .contact_stream import ContactStream
from .eligibility import ChannelRules, ContactGate
from .holdout import BalanceTracker
from .link_keys import LinkKeys
from .rejects import RejectsWriter
from .routing import ContactRouter
from .run_options import RunOptions, RunProgress
from .segmentation import Segmenter
from .staging import Stager
from .suppression import SuppressionList

__all__ = ["Engine", "RunOptions", "RunProgress"]


class Engine:
    """Runs one campaign through its channels.

    `channels` None means the campaign's own (its enabled ad platforms through the installed connectors, then
    e-mail when configured, narrowed by `options.platforms`). Channels handed in are pushed in their order.
    Each channel redacts its own errors; `self.redactor` learns the secrets of the channels the engine assembles.
    """

    def __init__(
        self,
        loaded: LoadedCampaign,
        options: RunOptions | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        progress: RunProgress | None = None,
        channels: Sequence[Channel] | None = None,
    ) -> None:
        self.loaded = loaded
        self.campaign = loaded.campaign
        self.options = options or RunOptions()
        if self.options.mode:
            self.campaign = self.campaign.model_copy(
                update={"sync": self.campaign.sync.model_copy(update={"mode": self.options.mode})}
            )
        self.pm = plugin_manager or make_plugin_manager()
        self.progress = progress or RunProgress()
        self.redactor = Redactor()
        if channels is None:
            channels = campaign_channels(loaded, self.campaign, self.options, self.pm, self.redactor, self.progress)
        self.channels = list(channels)
        self.router = self._router()

    def _router(self) -> ContactRouter:
        audience = self.campaign.audience
        suppression = (
            SuppressionList.load(audience.suppression, self.loaded.base_dir) if audience.suppression else None
        )
        veto_impls = self.pm.hook.eligibility_veto.get_hookimpls()

        def veto(contact: Any, platform: str) -> str | None:
            return self.pm.hook.eligibility_veto(contact=contact, platform=platform)

        builders = {channel.name: channel.payload for channel in self.channels}
        gated = {channel.name for channel in self.channels if channel.email_consent}
        return ContactRouter(
            segmenter=Segmenter(
                self.campaign.segments, self.campaign.default_segment, self.campaign.channels.by_segment
            ),
            salt=self.campaign.holdout_salt,
            control_fraction=self.campaign.holdout.fraction,
            strata=self.campaign.holdout.strata,
            rules=ChannelRules(self.campaign.channels, set(builders)),
            gate=ContactGate(gated, suppression.reason_for if suppression else None, veto if veto_impls else None),
            builders=builders,
            default_stage=self.campaign.funnel.first_stage,
        )

    def run(self) -> RunSummary:
        """Run the campaign end to end; the summary's status says whether every channel succeeded."""
        started = time.monotonic()
        options = self.options
        state = StateStore(self.loaded.open_state(options.state))
        summary = RunSummary(campaign=self.campaign.campaign, mode=self.campaign.sync.mode, dry_run=options.dry_run)
        summary.platforms = {channel.name: PlatformSummary() for channel in self.channels}
        rejects = RejectsWriter(options.rejects)
        summary.rejects_file = str(options.rejects) if options.rejects else None
        try:
            summary.run_id = "dry-run" if options.dry_run else state.start_run(
                self.campaign.campaign, summary.mode, options.lock_wait
            )
            self._stage(state, summary, rejects)
            summary.onboard_seconds = round(time.monotonic() - started, 3)
            for channel in self.channels:
                channel.push(state, summary.platforms[channel.name], summary.run_id)
            summary.status = "failed" if any(p.error for p in summary.platforms.values()) else "succeeded"
        except CrmActivationError as error:
            summary.status, summary.error = "failed", self.redactor.redact(str(error))
            raise
        finally:
            rejects.close()
            summary.seconds = round(time.monotonic() - started, 3)
            for channel in self.channels:
                summary.platforms[channel.name].requests = channel.requests
            if not options.dry_run and summary.run_id:
                state.finish_run(summary.run_id, summary.status, summary.to_json())
            self.pm.hook.after_run(summary=summary)
            state.close()
        return summary

    def _stage(self, state: StateStore, summary: RunSummary, rejects: RejectsWriter) -> None:
        """Link records into people, then stream, route and stage every contact.

        Then the guards take back what must not be sent: test members sharing a platform's match key with a
        control contact, and each channel's own (the e-mail channel's duplicate mailboxes).
        """
        campaign = self.campaign
        state.reset_desired()
        accounts = RunAccounts(
            summary, rejects, BalanceTracker(campaign.holdout.fraction, campaign.holdout.srm_alpha)
        )
        contacts = ContactStream(campaign.audience, self.loaded.base_dir, campaign.funnel.first_stage, summary, rejects)
        clusters = contacts.link(LinkKeys(campaign.default_country))
        accounts.clusters(clusters.stats)
        stager = Stager(state, campaign, self.channels, summary.run_id, dry_run=self.options.dry_run)
        try:
            for count, contact in enumerate(contacts, start=1):
                routed = self.router.route(contact, clusters.anchor(contact.contact_id)[0])
                accounts.add(routed)
                stager.add(routed)
                if count % 1000 == 0:
                    self.progress.rows(1000)
        finally:
            clusters.close()
        stager.flush()
        self.progress.rows(summary.rows_read % 1000)
        accounts.hold_back(stager.drop_control_conflicts(), state)
        for channel in self.channels:
            accounts.hold_back(channel.hold_back(state), state)
        accounts.close(contacts.identity_stats)
        summary.warnings += self.router.segmenter.warnings()  # segment rules that never applied
