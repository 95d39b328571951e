"""The campaign run: onboard every row, route it, stage the desired membership, push each platform.

`Engine.run()` is what `crm-activation run` calls. It reads the audience once, streaming, with no per-contact
state in memory: the ids already seen (to reject duplicates) are in a temporary on-disk set (`seen_ids`), and
everything else goes to the state database in chunks. (An identity match table, when there is one, is loaded
whole: see `identity`.)
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from ..campaign.credentials import load_credentials
from ..campaign.loader import LoadedCampaign
from ..campaign.schema import EMAIL_CHANNEL
from ..email import delivery as email_delivery
from ..sdk.connector import Connector
from ..sdk.contact import Contact
from ..sdk.errors import ConfigError, CrmActivationError
from ..sdk.http import Outbox, PlatformHttp, RateLimiter, RetryPolicy
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.normalization import email_trimmed_lower
from ..sdk.plugins import collect_connectors, make_plugin_manager
from ..sdk.redaction import Redactor, get_logger, remember_secrets
from ..sdk.summary import BalanceRow, Outcome, PlatformSummary, RunSummary, StageCounts
from ..sdk.types import IdentifierRule
from ..state.database import LOCK_WAIT_SECONDS
from ..state.store import StateStore, encode_member
from .eligibility import ChannelRules, ContactGate
from .holdout import BalanceTracker, Group
from .identity_table import IdentityTable
from .onboarding import ContactParser
from .payload import PayloadBuilder
from .platform_sync import PlatformSync, audience_key, audience_specs
from .rejects import RejectsWriter
from .routing import ContactRouter, RoutedContact
from .seen_ids import SeenIds
from .segmentation import Segmenter
from .sources import open_rows
from .suppression import SuppressionList

log = get_logger(__name__)
CHUNK = 20_000
CONFLICT = "shares an identifier with a control-group contact"
DUPLICATE_ADDRESS = "another contact has the same e-mail address"
#: How the e-mail channel reaches a contact: the address itself, trimmed and lower-cased (sent in clear).
EMAIL_PAYLOAD = PayloadBuilder(
    EMAIL_CHANNEL,
    (IdentifierRule(IdentifierKind.EMAIL, "email", email_trimmed_lower, hashed=False),),
    frozenset({IdentifierKind.EMAIL}),
)


@dataclass
class _Staging:
    """Rows waiting to be written to the state database in one transaction."""

    desired: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    test_keys: list[tuple[str, str, str, str]] = field(default_factory=list)
    control_keys: list[tuple[str, str]] = field(default_factory=list)
    ledger: list[tuple[Any, ...]] = field(default_factory=list)

    def full(self) -> bool:
        return max(len(self.desired), len(self.test_keys), len(self.ledger)) >= CHUNK

    def clear(self) -> None:
        for rows in (self.desired, self.test_keys, self.control_keys, self.ledger):
            rows.clear()


class RunProgress:
    """Progress callbacks; the CLI draws bars, tests and library users get these no-ops."""

    def rows(self, n: int) -> None:
        """`n` more input rows were processed."""

    def platform_started(self, platform: str, total: int) -> None:
        """A platform starts pushing `total` member operations."""

    def pushed(self, platform: str, n: int) -> None:
        """`n` more member operations were acknowledged."""


@dataclass
class RunOptions:
    """How to run a campaign, beyond the campaign file itself."""

    dry_run: bool = False
    outbox: Path | None = None
    rejects: Path | None = None
    state: str | Path | None = None
    lock_wait: float = LOCK_WAIT_SECONDS
    base_urls: Mapping[str, str] = field(default_factory=dict)
    policy: RetryPolicy | None = None
    sleep: Any = time.sleep
    mode: str | None = None
    platforms: tuple[str, ...] | None = None
    smtp: tuple[str, int] | None = None


class Engine:
    """Runs one campaign with the installed connectors."""

    def __init__(
        self,
        loaded: LoadedCampaign,
        options: RunOptions | None = None,
        plugin_manager: pluggy.PluginManager | None = None,
        progress: RunProgress | None = None,
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
        self.connectors = self._build_connectors()
        wanted = self.options.platforms
        self.email = self.campaign.email if wanted is None or EMAIL_CHANNEL in wanted else None
        self.router = self._router()

    # -- set-up -----------------------------------------------------------------------------------------
    def _platforms(self) -> list[str]:
        wanted = self.options.platforms
        return [
            slug
            for slug, config in self.campaign.platforms.items()
            if config.enabled and (wanted is None or slug in wanted)
        ]

    def _build_connectors(self) -> dict[str, Connector]:
        installed = collect_connectors(self.pm)
        http_settings = self.campaign.http
        policy = self.options.policy or RetryPolicy(**http_settings.model_dump())
        outbox = None
        if self.options.dry_run:
            outbox = Outbox(self.options.outbox or Path("outbox"), self.redactor)
        built: dict[str, Connector] = {}
        for slug in self._platforms():
            cls = installed.get(slug)
            if cls is None:
                names = ", ".join(installed) or "none"
                raise ConfigError(f"platforms.{slug}: no connector named {slug!r} is installed (installed: {names})")
            config = self.campaign.platforms[slug]
            try:
                account = cls.account_model.model_validate(config.account)
            except ValueError as error:
                raise ConfigError(f"platforms.{slug}.account: {error}") from None
            credentials = load_credentials(cls.credentials_model, slug, config)
            if slug in self.options.base_urls:
                account = cls.for_sandbox(account, self.options.base_urls[slug])
            secrets = credentials.secret_values()
            self.redactor.add(secrets)
            remember_secrets(secrets)
            base_url = account.base_url or cls.default_base_url
            rate = account.requests_per_second or cls.default_requests_per_second
            http = PlatformHttp(
                platform=slug,
                base_url=base_url,
                policy=policy,
                limiter=RateLimiter(rate, burst=max(1, int(rate))),
                classify=cls.classify_response,
                redactor=self.redactor,
                outbox=outbox,
                sleep=self.options.sleep,
            )
            built[slug] = cls(account, credentials, http)
        return built

    def _router(self) -> ContactRouter:
        audience = self.campaign.audience
        suppression = (
            SuppressionList.load(audience.suppression, self.loaded.base_dir) if audience.suppression else None
        )
        veto_impls = self.pm.hook.eligibility_veto.get_hookimpls()

        def veto(contact: Any, platform: str) -> str | None:
            return self.pm.hook.eligibility_veto(contact=contact, platform=platform)

        builders = {
            slug: PayloadBuilder(slug, c.identifier_rules, c.match_keys) for slug, c in self.connectors.items()
        }
        email = {EMAIL_CHANNEL} if self.email else set()
        if self.email:
            builders[EMAIL_CHANNEL] = EMAIL_PAYLOAD
        return ContactRouter(
            segmenter=Segmenter(self.campaign.segments, self.campaign.default_segment),
            salt=self.campaign.holdout_salt,
            control_fraction=self.campaign.holdout.fraction,
            strata=self.campaign.holdout.strata,
            rules=ChannelRules(self.campaign.channels, set(builders)),
            gate=ContactGate(email, suppression.reason_for if suppression else None, veto if veto_impls else None),
            builders=builders,
            default_stage=self.campaign.funnel.first_stage,
        )

    # -- the run ----------------------------------------------------------------------------------------
    def run(self) -> RunSummary:
        """Run the campaign end to end; the summary's status says whether every platform succeeded."""
        started = time.monotonic()
        options = self.options
        state = StateStore(self.loaded.open_state(options.state))
        summary = RunSummary(campaign=self.campaign.campaign, mode=self.campaign.sync.mode, dry_run=options.dry_run)
        summary.platforms = {slug: PlatformSummary() for slug in self.connectors}
        if self.email:
            summary.platforms[EMAIL_CHANNEL] = PlatformSummary()
        rejects = RejectsWriter(self.options.rejects)
        summary.rejects_file = str(self.options.rejects) if self.options.rejects else None
        try:
            summary.run_id = "dry-run" if options.dry_run else state.start_run(
                self.campaign.campaign, summary.mode, options.lock_wait
            )
            self._onboard(state, summary, rejects)
            summary.onboard_seconds = round(time.monotonic() - started, 3)
            self._push(state, summary)
            if self.email:
                self._deliver_email(state, summary)
            summary.status = "failed" if any(p.error for p in summary.platforms.values()) else "succeeded"
        except CrmActivationError as error:
            summary.status, summary.error = "failed", self.redactor.redact(str(error))
            raise
        finally:
            rejects.close()
            summary.seconds = round(time.monotonic() - started, 3)
            for slug, connector in self.connectors.items():
                summary.platforms[slug].requests = connector.http.requests_sent
            if not self.options.dry_run and summary.run_id:
                state.finish_run(summary.run_id, summary.status, summary.to_json())
            self.pm.hook.after_run(summary=summary)
            state.close()
        return summary

    def _rows(self, summary: RunSummary, rejects: RejectsWriter) -> Iterator[RoutedContact]:
        audience = self.campaign.audience
        parser = ContactParser(audience.columns, self.campaign.funnel.first_stage)
        identity = (
            IdentityTable.load(audience.identity_table, self.loaded.base_dir) if audience.identity_table else None
        )
        seen = SeenIds()
        try:
            for row in open_rows(audience.source, self.loaded.base_dir):
                summary.rows_read += 1
                parsed = parser.parse(row)
                for issue in parsed.issues:
                    rejects.write(issue.source, issue.row, issue.field, issue.reason, fatal=issue.fatal)
                    summary.field_issues += 0 if issue.fatal else 1
                contact = parsed.contact
                if contact is None:
                    fatal = next((i for i in parsed.issues if i.fatal), None)
                    summary.count(Outcome.REJECTED, f"{fatal.field}: {fatal.reason}" if fatal else "unreadable row")
                    continue
                if not seen.add(contact.contact_id):
                    rejects.write(row.source, row.row, "contact_id", "duplicate contact_id", fatal=True)
                    summary.count(Outcome.REJECTED, "contact_id: duplicate contact_id")
                    continue
                if identity is not None:
                    contact = identity.enrich(contact)
                routed = self.router.route(contact)
                for platform, problems in routed.problems.items():
                    for problem in problems:
                        rejects.write(row.source, row.row, str(problem.kind), problem.reason, platform=platform)
                        summary.field_issues += 1
                summary.count(routed.outcome, routed.reason)
                yield routed
        finally:
            seen.close()
        if identity is not None:
            summary.identity_enriched = dict(identity.stats)

    def _onboard(self, state: StateStore, summary: RunSummary, rejects: RejectsWriter) -> None:
        state.reset_desired()
        balance = BalanceTracker(self.campaign.holdout.fraction, self.campaign.holdout.srm_alpha)
        staged = _Staging()
        match_fields = {slug: builder.match_fields for slug, builder in self.router.builders.items()}
        for count, routed in enumerate(self._rows(summary, rejects), start=1):
            balance.add(routed.stratum, routed.group)
            self._count_platforms(routed, summary)
            stage = routed.contact.attributes.funnel_stage or self.campaign.funnel.first_stage
            key = audience_key(self.campaign.campaign, stage)
            for platform, member in routed.members.items():
                # e-mail needs the whole contact (names, history, coupon) to personalize, not a hashed payload
                payload, fingerprint = (
                    (routed.contact.model_dump_json(), "") if platform == EMAIL_CHANNEL else encode_member(member)
                )
                staged.desired.append((platform, key, member.contact_id, fingerprint, payload))
                fields = match_fields[platform]
                staged.test_keys.extend(
                    (platform, value, key, member.contact_id) for f, value in member.fields.items() if f in fields
                )
            for platform, member in routed.withheld.items():
                fields = match_fields[platform]
                staged.control_keys.extend((platform, v) for f, v in member.fields.items() if f in fields)
            staged.ledger.append(
                (
                    routed.contact.contact_id,
                    routed.group.value,
                    routed.contact.country,
                    routed.contact.attributes.segment,
                    "+".join(routed.offered),
                    "+".join(routed.reachable),
                    stage,
                )
            )
            if staged.full():
                self._flush(state, summary, staged)
            if count % 1000 == 0:
                self.progress.rows(1000)
        self._flush(state, summary, staged)
        self.progress.rows(summary.rows_read % 1000)
        self._hold_back(state.drop_control_conflicts(), CONFLICT, state, summary)
        if self.email:
            self._hold_back(state.drop_duplicate_members(EMAIL_CHANNEL), DUPLICATE_ADDRESS, state, summary)
        summary.check_reconciles()
        self._balance(balance, summary)

    def _flush(self, state: StateStore, summary: RunSummary, staged: _Staging) -> None:
        state.stage_desired(staged.desired)
        state.stage_keys(staged.test_keys, staged.control_keys)
        if not self.options.dry_run:
            state.record_holdout(self.campaign.campaign, summary.run_id, staged.ledger)
        staged.clear()

    def _hold_back(self, dropped: dict[str, set[str]], reason: str, state: StateStore, summary: RunSummary) -> None:
        """Account for staged members removed after the fact.

        They count as suppressed on the platform, and the row too when no platform is left for the contact.
        """
        if not dropped:
            return
        for platform, contact_ids in dropped.items():
            platform_summary = summary.platforms[platform]
            platform_summary.eligible -= len(contact_ids)
            platform_summary.suppressed += len(contact_ids)
            reasons = platform_summary.suppressed_reasons
            reasons[reason] = reasons.get(reason, 0) + len(contact_ids)
        everyone = set().union(*dropped.values())
        no_platform_left = everyone - state.contacts_with_desired(everyone)
        summary.outcomes[Outcome.ACTIVATED.value] -= len(no_platform_left)
        summary.outcomes[Outcome.SUPPRESSED.value] += len(no_platform_left)
        if no_platform_left:
            summary.suppressed_reasons[reason] = summary.suppressed_reasons.get(reason, 0) + len(no_platform_left)
        log.warning("%d test contacts held back: %s", len(everyone), reason)

    @staticmethod
    def _count_platforms(routed: RoutedContact, summary: RunSummary) -> None:
        if routed.group is Group.CONTROL:
            return
        for platform in routed.offered:
            platform_summary = summary.platforms[platform]
            platform_summary.offered += 1
            if platform in routed.members:
                platform_summary.eligible += 1
            elif platform in routed.suppressed:
                platform_summary.suppressed += 1
                reason = routed.suppressed[platform]
                platform_summary.suppressed_reasons[reason] = platform_summary.suppressed_reasons.get(reason, 0) + 1
            else:
                platform_summary.unreachable += 1
                reason = routed.unreachable.get(platform, "unreachable")
                platform_summary.unreachable_reasons[reason] = platform_summary.unreachable_reasons.get(reason, 0) + 1

    def _balance(self, balance: BalanceTracker, summary: RunSummary) -> None:
        def row(b: Any) -> BalanceRow:
            return BalanceRow(
                stratum="/".join(b.stratum), test=b.test, control=b.control, p_value=b.p_value, mismatch=b.mismatch
            )

        report = balance.report()
        summary.holdout_strata = len(report)
        summary.holdout_overall = row(balance.overall())
        summary.holdout_mismatches = [row(b) for b in report if b.mismatch]
        for mismatch in summary.holdout_mismatches:
            log.warning(
                "holdout sample-ratio mismatch in stratum %s: %d test / %d control (p=%.2g)",
                mismatch.stratum, mismatch.test, mismatch.control, mismatch.p_value,
            )

    def _deliver_email(self, state: StateStore, summary: RunSummary) -> None:
        """The e-mail phase: send each staged test contact its due step (not in dry runs: nothing is sent)."""
        assert self.email is not None
        platform = summary.platforms[EMAIL_CHANNEL]
        desired = state.desired_counts(EMAIL_CHANNEL)
        for stage, spec in audience_specs(self.campaign, None).items():
            platform.stages[stage] = StageCounts(audience=f"sequence: {stage}", desired=desired.get(spec.key, 0))
        if self.options.dry_run:
            platform.messages["not sent: dry run"] = platform.eligible
            return
        started = time.monotonic()
        try:
            credentials = email_delivery.email_credentials(self.options.smtp)
            remember_secrets(credentials.secret_values())
            contacts = (Contact.model_validate_json(payload) for payload in state.staged_payloads(EMAIL_CHANNEL))
            email_delivery.deliver(self.loaded, self.email, credentials, state.db, contacts, platform, summary.run_id)
        except CrmActivationError as error:
            platform.error = self.redactor.redact(f"{type(error).__name__}: {error}")
            log.error("email: %s", platform.error)
        platform.seconds = round(time.monotonic() - started, 3)

    def _push(self, state: StateStore, summary: RunSummary) -> None:
        for slug, connector in self.connectors.items():
            platform_summary = summary.platforms[slug]
            size = min(connector.max_batch_size, self.campaign.sync.batch_size or connector.max_batch_size)
            sync = PlatformSync(
                campaign=self.campaign,
                platform=slug,
                connector=connector,
                state=state,
                run_id=summary.run_id,
                dry_run=self.options.dry_run,
                hooks=self.pm.hook,
                batch_size=size,
                on_batch=self.progress.pushed,
                on_start=self.progress.platform_started,
            )
            started = time.monotonic()
            try:
                if not self.options.dry_run:
                    connector.check()
                sync.run(platform_summary)
            except CrmActivationError as error:
                platform_summary.error = self.redactor.redact(f"{type(error).__name__}: {error}")
                log.error("%s: %s", slug, platform_summary.error)
            platform_summary.seconds = round(time.monotonic() - started, 3)
