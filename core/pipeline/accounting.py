"""Every routed contact accounted for: its row's outcome, each platform's funnel, and the holdout balance.

The run summary promises that each input row ends in exactly one outcome and that each platform's counts
explain who it did not get and why. Rows refused before routing are counted where they are refused
(`BatchWork.route`); everything from routing on is counted here, including the members taken back after staging,
so the numbers still add up when a guard changes its mind.
"""

from __future__ import annotations

from collections import Counter

from ..sdk.redaction import get_logger
from ..sdk.summary import BalanceRow, IdentitySummary, RunSummary
from ..state.store import StateStore
from .channels import HeldBack
from .clusters import ClusterStats
from .holdout import BalanceTracker, Group, StratumBalance
from .rejects import RejectsWriter
from .routing import RoutedContact

log = get_logger(__name__)
#: Records in one identity cluster above which the run warns (a CRM person has a handful of records).
LARGE_CLUSTER = 100


class RunAccounts:
    """Counts routed contacts into a `RunSummary` (and their refused identifiers into the rejects file)."""

    def __init__(self, summary: RunSummary, rejects: RejectsWriter, balance: BalanceTracker) -> None:
        self.summary = summary
        self.rejects = rejects
        self.balance = balance

    def clusters(self, stats: ClusterStats) -> None:
        """Record how the records grouped into people (routing then counts who changed group).

        A person behind more than `LARGE_CLUSTER` records is warned about: it is more often one identifier value
        shared by unrelated records (a shop's phone, a test e-mail) than one person, and it takes one holdout draw.
        """
        if stats.largest_cluster > LARGE_CLUSTER:
            message = (
                f"{stats.largest_cluster} records share identifiers and are held out as one person: usually one "
                "value many records carry (a shared phone or test e-mail); check the export"
            )
            self.summary.warnings.append(message)
            log.warning(message)
        self.summary.identity = IdentitySummary(
            records=stats.records,
            clusters=stats.clusters,
            multi_record_clusters=stats.multi_record_clusters,
            largest_cluster=stats.largest_cluster,
        )

    def add(self, routed: RoutedContact) -> None:
        """Count one routed contact: refused identifiers, its outcome, its holdout stratum, each platform offered."""
        summary = self.summary
        contact = routed.ref
        for platform, problems in routed.problems.items():
            for problem in problems:
                self.rejects.write(contact.source, contact.row, str(problem.kind), problem.reason, platform=platform)
                summary.field_issues += 1
        summary.count(routed.outcome, routed.reason)
        summary.identity.regrouped += routed.regrouped
        self.balance.add(routed.stratum, routed.group)
        if routed.group is Group.CONTROL:
            return
        for platform in routed.offered:
            summary.platforms[platform].count_offered(
                eligible=platform in routed.members,
                suppressed=routed.suppressed.get(platform),
                unreachable=routed.unreachable.get(platform),
            )

    def merge(self, part: RunSummary, balance: Counter[tuple[tuple[str, ...], Group]]) -> None:
        """Add the counts another `RunAccounts` made of some routed contacts (a batch worker's), after these.

        Reasons keep the order they were first counted in, so the summary is the one counting here would give.
        """
        summary = self.summary
        for outcome, n in part.outcomes.items():
            summary.outcomes[outcome] += n
        for mine, theirs in (
            (summary.rejected_reasons, part.rejected_reasons),
            (summary.ineligible_reasons, part.ineligible_reasons),
            (summary.suppressed_reasons, part.suppressed_reasons),
        ):
            _add(mine, theirs)
        summary.field_issues += part.field_issues
        summary.identity.regrouped += part.identity.regrouped
        for name, platform in part.platforms.items():
            into = summary.platforms[name]
            into.offered += platform.offered
            into.eligible += platform.eligible
            into.suppressed += platform.suppressed
            into.unreachable += platform.unreachable
            _add(into.suppressed_reasons, platform.suppressed_reasons)
            _add(into.unreachable_reasons, platform.unreachable_reasons)
        self.balance.counts.update(balance)

    def hold_back(self, held: HeldBack | None, state: StateStore) -> None:
        """Account for staged members taken back: suppressed on their platform, and rows left with no platform."""
        if held is None or not held.dropped:
            return
        everyone = set().union(*held.dropped.values())
        no_platform_left = everyone - state.contacts_with_desired(everyone)
        self.summary.hold_back(held.dropped, held.reason, len(no_platform_left))
        log.warning("%d test contacts held back: %s", len(everyone), held.reason)

    def close(self, identity_stats: dict[str, int] | None = None) -> None:
        """Record what the match table added, check that every row has one outcome, record the holdout balance."""
        summary = self.summary
        if identity_stats is not None:
            summary.identity_enriched = dict(identity_stats)
        summary.check_reconciles()
        report = self.balance.report()
        summary.holdout_strata = len(report)
        summary.holdout_overall = balance_row(self.balance.overall())
        summary.holdout_mismatches = [balance_row(b) for b in report if b.mismatch]
        for mismatch in summary.holdout_mismatches:
            log.warning(
                "holdout sample-ratio mismatch in stratum %s: %d test / %d control (p=%.2g)",
                mismatch.stratum, mismatch.test, mismatch.control, mismatch.p_value,
            )


def balance_row(balance: StratumBalance) -> BalanceRow:
    """A stratum's balance as the summary reports it (the stratum key joined with "/")."""
    return BalanceRow(
        stratum="/".join(balance.stratum),
        test=balance.test,
        control=balance.control,
        p_value=balance.p_value,
        mismatch=balance.mismatch,
    )


def _add(into: dict[str, int], counts: dict[str, int]) -> None:
    for key, n in counts.items():
        into[key] = into.get(key, 0) + n
