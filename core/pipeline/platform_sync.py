"""Pushing one platform: ensure its stage audiences exist, then send the diff in batches.

Removes go before adds (see `StateStore.plan`): every remove of the platform is answered before its first add
is sent. Up to `in_flight` batches are in flight at once (`Connector.requests_in_flight`; the platform's rate
limit and throttling still apply to each request, see `sdk.http.PlatformHttp`). Each batch is recorded in the
state database as soon as it is acknowledged, in its own transaction, before its thread takes another; an
interruption or a failure stops new batches, lets those in flight finish and be recorded, and so costs at most
the batches in flight, which the rerun sends again harmlessly. Batches travel as the state database holds them
(`PlannedBatch`): a connector with a `_staged` form builds its request from the stored payloads, and the
acknowledged ones are recorded from the same columns, with no `Member` built or re-encoded on the way.

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

import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

import pluggy

from ..campaign.schema import Campaign
from ..sdk.connector import Connector
from ..sdk.redaction import get_logger
from ..sdk.summary import PlatformSummary, StageCounts
from ..sdk.types import AudienceRef, AudienceSpec, BatchResult, Capability, Member, RecordRejection
from ..state.store import PlannedBatch, StateStore

log = get_logger(__name__)

#: Extra requests one batch's verification may spend (see the module docstring): enough for a full Meta batch
#: (10,000 rows, ten samples per answer) with about a thousand unnamed refusals.
VERIFY_BUDGET = 256
#: The reason given for a member refused without being named: found because every unnamed member of its part
#: was refused (a part of one, at the latest).
UNNAMED_REASON = "counted invalid by the platform, which named no reason for it"

#: Sends one batch (or part of one) to the platform and returns its answer.
Send = Callable[[AudienceRef, PlannedBatch], BatchResult]


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
    #: Batches in flight at once (1: one after the other, in this thread).
    in_flight: int = 1
    #: Guards what the sending threads share: the summary's counters, the observers, and recording in that order.
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def run(self, summary: PlatformSummary) -> None:
        """Ensure audiences, plan, push; fill `summary` as it goes (also when it fails midway)."""
        specs = audience_specs(self.campaign, self.platform)
        desired = self.state.desired_counts(self.platform)
        full = self.campaign.sync.mode == "full"
        replace = full and Capability.REPLACE in self.connector.capabilities
        planned = self.state.plan(self.campaign.campaign, self.platform, full=full and not replace, desired=desired)
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
        """Send one audience's planned removes or adds; return once every batch is answered and recorded."""
        counts = summary.stages[stage]
        send = self._sender(operation)
        batches = self.state.planned_batches(self.platform, ref.key, operation, self.batch_size)

        def settle(batch: PlannedBatch) -> None:
            self._settle(ref, operation, send, batch, counts, summary)
            with self._lock:
                self.on_batch(self.platform, len(batch))

        if self.in_flight <= 1 or self.dry_run:  # a dry run's outbox keeps the plan's order
            for batch in batches:
                settle(batch)
        else:
            self._settle_concurrently(batches, settle)

    def _sender(self, operation: str) -> Send:
        """The connector's operation for staged batches, or its `Member` form for a connector without one."""
        connector = self.connector
        staged = getattr(connector, "add_staged" if operation == "add" else "remove_staged", None)
        if staged is not None:
            return lambda ref, batch: staged(ref, batch.staged)
        by_member = connector.add_members if operation == "add" else connector.remove_members
        return lambda ref, batch: by_member(ref, batch.staged.members())

    def _settle_concurrently(self, batches: Iterable[PlannedBatch], settle: Callable[[PlannedBatch], None]) -> None:
        """Settle batches with up to `in_flight` at once; batches are read from the state as threads free up.

        A failure (or an interruption: no request starts once the run is cancelled) stops new batches; those in
        flight finish and are recorded before the first failure is raised.
        """
        failed = threading.Event()  # set by the first batch that fails: no batch is submitted after it

        def settle_or_stop(batch: PlannedBatch) -> None:
            try:
                settle(batch)
            except BaseException:
                failed.set()
                raise

        with ThreadPoolExecutor(self.in_flight, thread_name_prefix=f"push-{self.platform}") as pool:
            running: set[Future[None]] = set()
            try:
                for batch in batches:
                    if len(running) >= self.in_flight:
                        done, running = wait(running, return_when=FIRST_COMPLETED)
                        for future in done:
                            future.result()
                    if failed.is_set():
                        break
                    running.add(pool.submit(settle_or_stop, batch))
            finally:
                done, running = wait(running)
            for future in done:
                future.result()

    def _settle(
        self,
        ref: AudienceRef,
        operation: str,
        send: Send,
        batch: PlannedBatch,
        counts: StageCounts,
        summary: PlatformSummary,
    ) -> None:
        """Send one planned batch and record what was acknowledged; re-send halves of what was left unnamed.

        Depth first, so the parts waiting are few (one per level); a part is sent only within `verify_budget`.
        """
        result = send(ref, batch)
        with self._lock:
            counts.invalid_reported += result.invalid  # the platform's own count, once per planned batch
        pending = list(reversed(_halves(self._record(ref, operation, batch, result, counts, summary))))
        extra = 0
        while pending:
            part = pending.pop()
            if extra >= self.verify_budget:
                with self._lock:
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
        batch: PlannedBatch,
        result: BatchResult,
        counts: StageCounts,
        summary: PlatformSummary,
    ) -> PlannedBatch:
        """Record one answered request: its acknowledged members only; return the members still in doubt.

        Refused are the members the platform named, and, when the unnamed refusals are at least as many as the
        members it did not name, all of those. Otherwise the members it did not name are in doubt: none is
        recorded, and the caller re-sends them. Observers (`after_batch`, and through it the rejects file) get
        the result with one rejection per refused member of the batch, the unnamed ones included.
        """
        contact_ids = batch.contact_ids
        named: dict[str, str] = {}
        if result.rejections:
            ids = set(contact_ids)
            for rejection in result.rejections:
                if rejection.contact_id in ids and rejection.contact_id not in named:
                    named[rejection.contact_id] = rejection.reason
        rest = [i for i, cid in enumerate(contact_ids) if cid not in named] if named else range(len(batch))
        # Counted against the names of this batch's members only: a rejection naming a stranger names no one here.
        unnamed = result.unnamed if result.unnamed is not None else result.invalid - len(named)
        unnamed = max(0, unnamed) if rest else 0
        doubtful = list(rest) if 0 < unnamed < len(rest) else []
        refusals = [RecordRejection(contact_id=cid, reason=reason) for cid, reason in named.items()]
        if rest and unnamed >= len(rest):
            refusals += [RecordRejection(contact_id=contact_ids[i], reason=UNNAMED_REASON) for i in rest]
        refused = frozenset(r.contact_id for r in refusals if r.contact_id)
        unacknowledged = refused | {contact_ids[i] for i in doubtful}
        # Recorded and reported as one step: an observer sees each batch with the state exactly as far as it,
        # never already holding a batch another thread acknowledged meanwhile (the state's writes are one at a
        # time anyway, so this holds back nobody's sending).
        with self._lock:
            if not self.dry_run:
                self.state.apply_planned(
                    self.run_id, self.campaign.campaign, self.platform, ref.key, operation, batch, result,
                    unacknowledged,
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
        return batch.take(doubtful)


def _halves(batch: PlannedBatch) -> list[PlannedBatch]:
    """A part in doubt split in two (nothing when nothing is in doubt)."""
    middle = (len(batch) + 1) // 2
    return [half for half in (batch.take(range(middle)), batch.take(range(middle, len(batch)))) if len(half)]
