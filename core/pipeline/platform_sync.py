"""Pushing one platform: ensure its stage audiences exist, then send the diff in batches.

Removes go before adds (see `StateStore.plan`). Each acknowledged batch is written to the state database
before the next is sent, so an interruption costs at most one batch, which the rerun sends again harmlessly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pluggy

from ..campaign.schema import Campaign
from ..sdk.connector import Connector
from ..sdk.redaction import get_logger
from ..sdk.summary import PlatformSummary, StageCounts
from ..sdk.types import AudienceRef, AudienceSpec, BatchResult, Capability, Member
from ..state.store import StateStore

log = get_logger(__name__)


def audience_key(campaign: str, stage: str) -> str:
    """The stable key of a campaign's audience for one funnel stage."""
    return f"{campaign}/{stage}"


def audience_specs(campaign: Campaign, platform: str | None) -> dict[str, AudienceSpec]:
    """Audience specs by stage for a platform (None: e-mail): the campaign's names and creatives, or defaults."""
    configured = campaign.platforms[platform].audiences if platform else {}
    specs = {}
    for stage in campaign.funnel.stages:
        stage_audience = configured.get(stage)
        specs[stage] = AudienceSpec(
            key=audience_key(campaign.campaign, stage),
            campaign=campaign.campaign,  # with the key, makes `marker`: how a connector knows the audience is ours
            name=stage_audience.name if stage_audience else f"{campaign.campaign} {stage}",
            description=stage_audience.description if stage_audience else f"crm-activation {campaign.campaign}",
            funnel_stage=stage,
            creative=stage_audience.creative if stage_audience else None,
            settings=stage_audience.settings if stage_audience else {},
        )
    return specs


@dataclass
class PlatformSync:
    """Pushes one platform's planned changes and records them."""

    campaign: Campaign
    platform: str
    connector: Connector
    state: StateStore
    run_id: str
    dry_run: bool
    hooks: pluggy.HookRelay
    batch_size: int
    on_batch: Callable[[str, int], None] = lambda platform, n: None
    on_start: Callable[[str, int], None] = lambda platform, total: None

    def run(self, summary: PlatformSummary) -> None:
        """Ensure audiences, plan, push; fill `summary` as it goes (also when it fails midway)."""
        specs = audience_specs(self.campaign, self.platform)
        desired = self.state.desired_counts(self.platform)
        full = self.campaign.sync.mode == "full"
        replace = full and Capability.REPLACE in self.connector.capabilities
        planned = self.state.plan(self.campaign.campaign, self.platform, full=full and not replace)
        self.on_start(self.platform, sum(desired.values()) if replace else sum(planned.values()))
        refs: dict[str, AudienceRef] = {}
        for stage, spec in specs.items():
            counts = summary.stages.setdefault(stage, StageCounts(audience=spec.name))
            counts.desired = desired.get(spec.key, 0)
            if counts.desired or planned.get((spec.key, "remove")) or self.state.audience(self.platform, spec.key):
                refs[stage] = self._ensure(spec)
        for stage, ref in refs.items():
            if replace:
                self._replace(stage, ref, summary)
            else:
                self._push(stage, ref, "remove", summary)
        if not replace:
            for stage, ref in refs.items():
                self._push(stage, ref, "add", summary)

    def _ensure(self, spec: AudienceSpec) -> AudienceRef:
        known = self.state.audience(self.platform, spec.key)
        if self.dry_run:
            return known or self.connector.ensure_audience(spec, None)
        ref = self.connector.ensure_audience(spec, known)
        if known is None or known.remote_id != ref.remote_id:
            self.state.save_audience(self.platform, self.campaign.campaign, ref, spec.name)
            if known is not None:  # the platform lost the old audience: its members must be pushed again
                self.state.plan(self.campaign.campaign, self.platform, full=False)
        return ref

    def _push(self, stage: str, ref: AudienceRef, operation: str, summary: PlatformSummary) -> None:
        counts = summary.stages[stage]
        send = self.connector.add_members if operation == "add" else self.connector.remove_members
        for batch in self.state.op_batches(self.platform, ref.key, operation, self.batch_size):
            result = send(ref, batch)
            self._record(ref, operation, batch, result, counts, summary)

    def _replace(self, stage: str, ref: AudienceRef, summary: PlatformSummary) -> None:
        counts = summary.stages[stage]
        sent: list[int] = []

        def batches() -> Iterator[list[Member]]:
            for batch in self.state.desired_batches(self.platform, ref.key, self.batch_size):
                sent.append(len(batch))
                self.on_batch(self.platform, len(batch))
                yield batch

        result = self.connector.replace_members(ref, batches())
        summary.batches += len(sent)
        counts.added += sum(sent)
        counts.invalid_reported += result.invalid
        if not self.dry_run:
            self.state.replace_membership(self.run_id, self.campaign.campaign, self.platform, ref.key)
        self.hooks.after_batch(platform=self.platform, audience=ref, operation="replace", size=sum(sent), result=result)

    def _record(
        self,
        ref: AudienceRef,
        operation: str,
        batch: Sequence[Member],
        result: BatchResult,
        counts: StageCounts,
        summary: PlatformSummary,
    ) -> None:
        refused = frozenset(r.contact_id for r in result.rejections if r.contact_id)
        if not self.dry_run:
            self.state.apply_batch(
                self.run_id, self.campaign.campaign, self.platform, ref.key, operation, batch, result, refused
            )
        summary.batches += 1
        counts.invalid_reported += result.invalid
        counts.refused += len(refused)
        if operation == "add":
            counts.added += len(batch) - len(refused)
        else:
            counts.removed += len(batch)
        self.on_batch(self.platform, len(batch))
        self.hooks.after_batch(
            platform=self.platform, audience=ref, operation=operation, size=len(batch), result=result
        )
