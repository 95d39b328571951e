"""The campaign run: read the audience, route each contact, stage the desired membership, push each channel.

`Engine.run()` is what `crm-activation run` calls. It reads the audience by batches of columns, on
`options.workers` processes, with no per-contact state in memory (see `AudienceBatches` and `Stager`), or from
any other `AudienceReader` it is handed (a Spark DataFrame's: `spark/`). The engine knows no channel in
particular: it is handed `Channel`s (by default the campaign's, from `channel_plan`) and asks each what it
needs: its payload, what to stage, what to hold back, and finally to push.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pluggy

from ..campaign.loader import LoadedCampaign
from ..sdk.errors import CrmActivationError, RunInterrupted
from ..sdk.plugins import make_plugin_manager
from ..sdk.redaction import Redactor
from ..sdk.summary import PlatformSummary, RunSummary
from ..state.store import StateStore
from .accounting import RunAccounts
from .audience_batches import AudienceBatches, AudienceReaderFactory, BatchResults
from .batch_routing import BatchRouter
from .batch_work import BatchWork
from .channel_plan import campaign_channels, check_platforms, planned_channels
from .channels import Channel
from .clusters import IdentityClusters
from .contact_batch import ColumnsParser
from .eligibility import ChannelRules, ContactGate, PluginVeto
from .guardrails import country_alias_warnings, large_changes, refusal, rule_field_warnings
from .heartbeat import HeartbeatProgress
from .holdout import BalanceTracker
from .identity_table import IdentityTable
from .link_keys import LinkKeys
from .onboarding import ContactParser
from .rejects import RejectsWriter
from .routing import ContactRouter
from .run_options import RunOptions, RunProgress
from .segmentation import Segmenter
from .staging import Stager
from .suppression import SuppressionList

__all__ = ["Engine", "RunOptions", "RunProgress"]

#: Channels pushed at once. Platforms are independent (each has its own HTTP session and rate limit), so one
#: slow or unreachable platform must not delay the others or the e-mail; the bound covers a campaign's
#: usual channels, so none waits for a free thread.
PUSH_THREADS = 8
class Engine:
    """Runs one campaign through its channels.

    `channels` None means the campaign's own (its enabled ad platforms through the installed connectors, then
    e-mail when configured, narrowed by `options.platforms`). Channels push concurrently; the summary keeps
    the order they were handed in.
    Each channel redacts its own errors; `self.redactor` learns the secrets of the channels the engine assembles.
    """

    def __init__(
        self,
        loaded: LoadedCampaign,
        options: RunOptions | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        progress: RunProgress | None = None,
        channels: Sequence[Channel] | None = None,
        audience: AudienceReaderFactory | None = None,
    ) -> None:
        """`audience`: what reads the audience (default: the campaign's source, `AudienceBatches`; see `spark/`)."""
        self.loaded = loaded
        self.audience_reader = audience or AudienceBatches
        self.campaign = loaded.campaign
        self.options = options or RunOptions()
        if self.options.mode:
            self.campaign = self.campaign.model_copy(
                update={"sync": self.campaign.sync.model_copy(update={"mode": self.options.mode})}
            )
        self.pm = plugin_manager or make_plugin_manager()
        self.progress = HeartbeatProgress(progress or RunProgress())
        self.redactor = Redactor()
        self._strict_warnings: list[str] = []  # rules that cannot apply as meant: errors under `strict`
        if channels is None:
            check_platforms(self.campaign, self.options.platforms)
            channels = campaign_channels(loaded, self.campaign, self.options, self.pm, self.redactor, self.progress)
        self.channels = list(channels)
        suppression = self.campaign.audience.suppression
        #: loaded here, so a broken list stops the run before any output is opened; kept once for the router
        self.suppression = SuppressionList.load(suppression, self.loaded.base_dir) if suppression else None
        #: the run's segmenter: the batches' segment counts are added to it, and its warnings reported
        self.segmenter = self._segmenter()

    def _segmenter(self) -> Segmenter:
        return Segmenter(self.campaign.segments, self.campaign.default_segment, self.campaign.channels.by_segment)

    def _router(self) -> ContactRouter:
        suppression = self.suppression
        veto_impls = self.pm.hook.eligibility_veto.get_hookimpls()
        builders = {channel.name: channel.payload for channel in self.channels}
        gated = {channel.name for channel in self.channels if channel.email_consent}
        return ContactRouter(
            segmenter=self._segmenter(),
            salt=self.campaign.holdout_salt,
            control_fraction=self.campaign.holdout.fraction,
            strata=self.campaign.holdout.strata,
            rules=ChannelRules(self.campaign.channels, set(builders)),
            gate=ContactGate(
                gated,
                suppression.reason_for_values if suppression else None,
                PluginVeto(self.pm) if veto_impls else None,
            ),
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
        rejects: RejectsWriter | None = None
        try:
            # The lock before any output: a run refused because another is still going (exit 3) must leave
            # that run's rejects file (truncated on open) and outbox alone. A dry run locks too: it reads the
            # membership a running push is changing, and appends to the same outbox as another dry run.
            summary.run_id = self._start(state, summary)
            rejects = RejectsWriter(options.rejects)
            summary.rejects_file = str(options.rejects) if options.rejects else None
            summary.plan_file = str(options.plan) if options.dry_run and options.plan else None
            self.pm.register(rejects)  # platforms' refusals by record go to the rejects file too
            self._stage(state, summary, rejects)
            summary.onboard_seconds = round(time.monotonic() - started, 3)
            refused = self._guard(state, summary)
            if refused:  # before the first push: no channel (e-mail included) gets anything
                summary.status, summary.error = "refused", refused
            else:
                if not options.dry_run:
                    state.commit_holdout()  # the contacts enter the experiment with the run that may expose them
                self._push(state, summary)
                summary.status = "failed" if any(p.error for p in summary.platforms.values()) else "succeeded"
        except CrmActivationError as error:
            summary.status, summary.error = "failed", self.redactor.redact(str(error))
            raise
        except KeyboardInterrupt:
            summary.status = "interrupted"
            summary.error = "interrupted (Ctrl-C); the batches acknowledged before are recorded"
            raise RunInterrupted(self._interrupted(summary.run_id)) from None
        except Exception as error:  # a bug or a broken worker: the run ledger says so, not "running"
            summary.status = "failed"
            summary.error = self.redactor.redact(f"{type(error).__name__}: {error}")
            raise
        finally:
            self.progress.attach(None)
            self.options.tokens.bind(None)
            if rejects is not None:
                self.pm.unregister(rejects)
                rejects.close()
            summary.seconds = round(time.monotonic() - started, 3)
            for channel in self.channels:
                summary.platforms[channel.name].requests = channel.requests
            if not options.dry_run and summary.run_id:
                state.finish_run(summary.run_id, summary.status, summary.to_json())
            self.pm.hook.after_run(summary=summary)
            state.close()
        return summary

    def _start(self, state: StateStore, summary: RunSummary) -> str:
        """Take the campaign lock and open the run in the ledger (a dry run only locks); return the run id."""
        if self.options.dry_run:
            state.db.lock_campaign(self.campaign.campaign, self.options.lock_wait)
            return "dry-run"
        run_id = state.start_run(self.campaign.campaign, summary.mode, self.options.lock_wait)
        for dead, seen in state.abandoned:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seen))
            summary.warnings.append(f"run {dead} never finished (killed?); marked abandoned, last seen {when}")
        self.progress.attach(lambda: state.heartbeat(run_id))
        self.options.tokens.bind(state)  # tokens from earlier runs are reused; new ones kept for the next
        return run_id

    def _push(self, state: StateStore, summary: RunSummary) -> None:
        """Push every channel at once (up to `PUSH_THREADS`): platforms are independent of each other.

        The summary keeps the channels' order whatever order they finish in. On Ctrl-C the workers are told to
        stop (`options.cancel`: no request starts after it) and are waited for, so what they had acknowledged is
        recorded before the run is closed as interrupted.
        """
        cancel = self.options.cancel
        with ThreadPoolExecutor(max(1, min(PUSH_THREADS, len(self.channels))), "push") as pool:
            futures: list[Future[None]] = []
            try:  # submitting too: a Ctrl-C may arrive while the first workers already run
                for channel in self.channels:
                    futures.append(pool.submit(channel.push, state, summary.platforms[channel.name], summary.run_id))
                for future in futures:
                    future.result()
            except BaseException:
                cancel.set()
                for future in futures:
                    future.cancel()
                wait(futures)
                raise

    @staticmethod
    def _interrupted(run_id: str | None) -> str:
        if not run_id or run_id == "dry-run":
            return "interrupted; nothing was recorded. Run the same command again"
        return (
            f"interrupted; run {run_id} is recorded as interrupted with every batch acknowledged before. "
            "Run the same command again to resume: it sends only what was not acknowledged"
        )

    def _plan_rules(self) -> ChannelRules | None:
        """In a run of some of the campaign's channels only: the rules over its whole plan, for the ledger."""
        planned = set(planned_channels(self.campaign))
        return ChannelRules(self.campaign.channels, planned) if {c.name for c in self.channels} < planned else None

    def _guard(self, state: StateStore, summary: RunSummary) -> str | None:
        """Why the staged run must not be pushed (`guardrails`), or None; an override is noted as a warning."""
        problems = large_changes(self.campaign, summary, state, [channel.name for channel in self.channels])
        if problems and self.options.allow_large_changes:
            summary.warnings += [f"pushed with --allow-large-changes: {problem}" for problem in problems]
            problems = []
        strict = self._strict_warnings if self.options.strict else []
        return refusal(problems, strict) if problems or strict else None

    def _stage(self, state: StateStore, summary: RunSummary, rejects: RejectsWriter) -> None:
        """Link records into people, then read, route and stage every contact.

        Then the guards take back what must not be sent: test members sharing a platform's match key with a
        control contact, and each channel's own (the e-mail channel's duplicate mailboxes).
        """
        campaign = self.campaign
        state.reset_desired()
        accounts = RunAccounts(
            summary, rejects, BalanceTracker(campaign.holdout.fraction, campaign.holdout.srm_alpha)
        )
        parser = ContactParser(campaign.audience.columns, campaign.funnel.first_stage)
        stager = Stager(
            state, campaign, self.channels, summary.run_id, dry_run=self.options.dry_run, plan_rules=self._plan_rules()
        )
        identity_stats = self._stage_batches(parser, accounts, stager)
        stager.flush()
        accounts.hold_back(stager.drop_control_conflicts(), state)
        for channel in self.channels:
            accounts.hold_back(channel.hold_back(state), state)
        accounts.close(identity_stats)
        summary.warnings += self.segmenter.warnings()  # segment rules that never applied

    def _linked(self, accounts: RunAccounts, clusters: IdentityClusters, parser: ContactParser,
                columns: list[str] | None, rows: int) -> None:
        """After the linking read: the identity summary, and the warnings on rules the source cannot serve."""
        self.progress.rows_total(rows)
        accounts.clusters(clusters.stats)
        self._strict_warnings = country_alias_warnings(self.campaign)
        if columns is not None:
            self._strict_warnings += rule_field_warnings(self.campaign, parser, columns)
        accounts.summary.warnings += self._strict_warnings

    def _stage_batches(self, parser: ContactParser, accounts: RunAccounts, stager: Stager) -> dict[str, int] | None:
        """Read and route the audience by batches of columns, on `options.workers` processes."""
        campaign, summary = self.campaign, accounts.summary
        router = BatchRouter(self._router())  # its own segmenter: the batches' counts are added to the run's
        work = BatchWork(
            ColumnsParser(parser, router.wanted),
            LinkKeys(campaign.default_country),
            IdentityTable.load(campaign.audience.identity_table, self.loaded.base_dir)
            if campaign.audience.identity_table else None,
            router,
            Stager(None, campaign, self.channels, summary.run_id, dry_run=self.options.dry_run,
                   plan_rules=self._plan_rules()),
            campaign=campaign.campaign,
            mode=summary.mode,
            platforms=list(summary.platforms),
            keys_only=campaign.audience.source.type == "jsonl",
        )
        results = BatchResults(accounts, self.segmenter, stager, work.identity)
        batches = self.audience_reader(
            campaign.audience, self.loaded.base_dir, parser, work, results, self.options.workers
        )
        with batches:
            clusters = batches.link(self.progress.linked)
            try:
                self._linked(accounts, clusters, parser, batches.columns, batches.rows_linked)
                batches.route(clusters, self.progress.rows)
            finally:
                clusters.close()
        return results.identity_stats
