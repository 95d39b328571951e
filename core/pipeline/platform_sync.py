"""Pushing one platform: ensure its stage audiences exist, then send the diff in batches.

Removes go before adds (see `StateStore.plan`). Each acknowledged batch is written to the state database
before the next is sent, so an interruption costs at most one batch, which the rerun sends again harmlessly.

What the state records is what the platform holds: a member the platform refused is never recorded. Most
platforms name each refused record; Meta only counts them and names at most ten samples, Xandr names lines up
to a limit. When a batch's refusals are not all named (`BatchResult.unnamed`), the members it did not name
are re-sent in halves, each half's answer again splitting what it leaves unnamed, until every refused member is
named or is alone in a refused request (or all of a part is refused). Re-sending is harmless: adding a member
already present, or removing one already gone, changes nothing (membership is a set). Only the members a
response acknowledged are recorded, each part in its own transaction as it is answered.

Cost: isolating u unnamed refusals in a batch of n takes at most about 2·u·log2(n/u) extra requests and re-sends
at most n·log2(n) rows; Meta's ten samples per answer stop most branches early (a half with at most ten refused
members is named at once). At most `verify_budget` extra requests are spent per batch; past it the members still
unnamed are left unacknowledged (not recorded, counted in `StageCounts.unconfirmed`), so the next run offers them
again. A refused member is not retried within the run; the next run offers it again, since a refusal may be
transient ("could not be processed") or the CRM may have fixed its data, at the same cost as this run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import pluggy

from ..campaign.schema import Campaign
from ..sdk.connector import Connector
from ..sdk.redaction import get_logger
from ..sdk.summary import PlatformSummary, StageCounts
from ..sdk.types import AudienceRef, AudienceSpec, BatchResult, Capability, Member, RecordRejection
from ..state.store import StateStore

log = get_logger(__name__)

#: Extra requests one batch's verification may spend (see the module docstring): enough for a full Meta batch
#: (10,000 rows, ten samples per answer) with about a thousand unnamed refusals.
VERIFY_BUDGET = 256
#: The reason given for a member refused without being named: found because every unnamed member of its part
#: was refused (a part of one, at the latest).
UNNAMED_REASON = "counted invalid by the platform, which named no reason for it"


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
    verify_budget: int = VERIFY_BUDGET

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
            self._settle(ref, operation, send, batch, counts, summary)
            self.on_batch(self.platform, len(batch))

    def _settle(
        self,
        ref: AudienceRef,
        operation: str,
        send: Callable[[AudienceRef, Sequence[Member]], BatchResult],
        batch: Sequence[Member],
        counts: StageCounts,
        summary: PlatformSummary,
    ) -> None:
        """Send one planned batch and record what was acknowledged; re-send halves of what was left unnamed.

        Depth first, so the parts waiting are few (one per level); a part is sent only within `verify_budget`.
        """
        result = send(ref, batch)
        counts.invalid_reported += result.invalid  # the platform's own count, once per planned batch
        pending = list(reversed(_halves(self._record(ref, operation, batch, result, counts, summary))))
        extra = 0
        while pending:
            part = pending.pop()
            if extra >= self.verify_budget:
                counts.unconfirmed += len(part)
                log.warning(
                    "%s: %d members of %s left unacknowledged: their refusals were not all named within %d extra "
                    "requests; the next run offers them again", self.platform, len(part), ref.key, self.verify_budget,
                )
                continue
            extra += 1
            suspects = self._record(ref, operation, part, send(ref, part), counts, summary)
            pending.extend(reversed(_halves(suspects)))

    def _replace(self, stage: str, ref: AudienceRef, summary: PlatformSummary) -> None:
        """Swap the audience's whole membership; record it without the members the platform refused.

        When every refusal is named, the stored membership is the desired one minus those. When some are only
        counted, nobody can say which desired members the platform holds: the stored membership of the audience
        is cleared (the platform holds at most the desired members) and the audience is re-added through the
        add path, whose bisection names every refused member (the re-sent members already held are harmless).
        """
        counts = summary.stages[stage]
        sent: list[str] = []
        requests = 0

        def batches() -> Iterator[list[Member]]:
            nonlocal requests
            for batch in self.state.desired_batches(self.platform, ref.key, self.batch_size):
                sent.extend(member.contact_id for member in batch)
                requests += 1
                self.on_batch(self.platform, len(batch))
                yield batch

        result = self.connector.replace_members(ref, batches())
        ids = set(sent)
        refused = {r.contact_id: r.reason for r in result.rejections if r.contact_id in ids}
        unnamed = result.unnamed if result.unnamed is not None else result.invalid - len(refused)
        summary.batches += requests
        if unnamed <= 0:
            counts.invalid_reported += result.invalid
            counts.refused += len(refused)
            counts.added += len(ids) - len(refused)
            if not self.dry_run:
                self.state.replace_membership(
                    self.run_id, self.campaign.campaign, self.platform, ref.key, excluded=refused
                )
            rejections = tuple(RecordRejection(contact_id=cid, reason=reason) for cid, reason in refused.items())
            self.hooks.after_batch(
                platform=self.platform, audience=ref, operation="replace", size=len(sent),
                result=result.model_copy(update={"rejections": rejections}),
            )
            return
        # The add path below counts, records and reports every refusal, named or not, exactly once.
        self.hooks.after_batch(
            platform=self.platform, audience=ref, operation="replace", size=len(sent),
            result=result.model_copy(update={"rejections": ()}),
        )
        log.warning(
            "%s: the replace of %s refused %d members without naming them; re-adding the audience to name them",
            self.platform, ref.key, unnamed,
        )
        if not self.dry_run:
            self.state.forget_membership(self.platform, ref.key)
            self.state.plan(self.campaign.campaign, self.platform, full=False)
        self._push(stage, ref, "add", summary)

    def _record(
        self,
        ref: AudienceRef,
        operation: str,
        batch: Sequence[Member],
        result: BatchResult,
        counts: StageCounts,
        summary: PlatformSummary,
    ) -> list[Member]:
        """Record one answered request: its acknowledged members only; return the members still in doubt.

        Refused are the members the platform named, and, when the unnamed refusals are at least as many as the
        members it did not name, all of those. Otherwise the members it did not name are in doubt: none is
        recorded, and the caller re-sends them. Observers (`after_batch`, and through it the rejects file) get
        the result with one rejection per refused member of the batch, the unnamed ones included.
        """
        ids = {member.contact_id for member in batch}
        named: dict[str, str] = {}
        for rejection in result.rejections:
            if rejection.contact_id in ids and rejection.contact_id not in named:
                named[rejection.contact_id] = rejection.reason
        rest = [member for member in batch if member.contact_id not in named]
        # Counted against the names of this batch's members only: a rejection naming a stranger names no one here.
        unnamed = result.unnamed if result.unnamed is not None else result.invalid - len(named)
        unnamed = max(0, unnamed) if rest else 0
        doubtful = rest if 0 < unnamed < len(rest) else []
        refusals = [RecordRejection(contact_id=cid, reason=reason) for cid, reason in named.items()]
        if rest and unnamed >= len(rest):
            refusals += [RecordRejection(contact_id=m.contact_id, reason=UNNAMED_REASON) for m in rest]
        refused = frozenset(r.contact_id for r in refusals if r.contact_id)
        unacknowledged = refused | {member.contact_id for member in doubtful}
        if not self.dry_run:
            self.state.apply_batch(
                self.run_id, self.campaign.campaign, self.platform, ref.key, operation, batch, result, unacknowledged
            )
        summary.batches += 1
        counts.refused += len(refused)
        if operation == "add":
            counts.added += len(batch) - len(unacknowledged)
        else:
            counts.removed += len(batch) - len(unacknowledged)
        self.hooks.after_batch(
            platform=self.platform,
            audience=ref,
            operation=operation,
            size=len(batch),
            result=result.model_copy(update={"rejections": tuple(refusals)}),
        )
        return doubtful


def _halves(members: list[Member]) -> list[list[Member]]:
    """A part in doubt split in two (nothing when nothing is in doubt)."""
    middle = (len(members) + 1) // 2
    return [half for half in (members[:middle], members[middle:]) if half]
