"""The run summary: every input row accounted for, and what each platform did.

Each input row ends in exactly one outcome — activated (in at least one platform audience or email
sequence), held out (control group), suppressed (consent, unsubscribe, suppression list, plugin veto),
ineligible (no channel for its country/segment, or no usable identifier anywhere it was offered) or rejected
(with a reason, also written to the rejects file). `check_reconciles` enforces that the outcomes add up.
Reasons are counted by what is wrong (`column: reason`), in words shared by every row with that problem, never
with a line number or anything else particular to one row: the rejects file has each row and its particulars.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class Outcome(StrEnum):
    """The one outcome of an input row."""

    ACTIVATED = "activated"
    HELD_OUT = "held_out"
    SUPPRESSED = "suppressed"
    INELIGIBLE = "ineligible"
    REJECTED = "rejected"


class StageCounts(BaseModel):
    """One platform audience (funnel stage): desired size and the changes pushed."""

    audience: str = ""
    desired: int = 0
    added: int = 0
    removed: int = 0
    invalid_reported: int = 0
    refused: int = 0  # members the platform refused: not recorded, written to the rejects file
    unconfirmed: int = 0  # members whose refusal could not be ruled out within the verify budget: not recorded


class InDoubtSend(BaseModel):
    """An e-mail step a killed run claimed without recording the relay's reply: maybe delivered, not re-sent.

    Listed in every run's summary until it is resolved: `run --resend-in-doubt` re-sends it under the same
    Message-ID (the relay's logs, searched for `message_id`, tell whether it was accepted), or it is cancelled
    when the contact is suppressed, converts or leaves the audience.
    """

    contact_id: str
    stage: str
    step: int
    message_id: str


class PlatformSummary(BaseModel):
    """What happened on one platform."""

    offered: int = 0
    eligible: int = 0
    suppressed: int = 0
    unreachable: int = 0
    stages: dict[str, StageCounts] = Field(default_factory=dict)
    requests: int = 0
    batches: int = 0
    error: str | None = None
    seconds: float = 0.0
    messages: dict[str, int] = Field(default_factory=dict, description="e-mail: contacts by delivery outcome")
    in_doubt: list[InDoubtSend] = Field(
        default_factory=list, description="e-mail: steps still in doubt after this run (not re-sent by default)"
    )
    resent_in_doubt: int = Field(0, description="e-mail: in-doubt steps this run re-sent (--resend-in-doubt)")
    suppressed_reasons: dict[str, int] = Field(default_factory=dict)
    unreachable_reasons: dict[str, int] = Field(default_factory=dict)

    def count_offered(self, *, eligible: bool, suppressed: str | None = None, unreachable: str | None = None) -> None:
        """Count one test contact offered this platform: eligible, else suppressed, else unreachable (why)."""
        self.offered += 1
        if eligible:
            self.eligible += 1
        elif suppressed is not None:
            self.count_suppressed(suppressed)
        else:
            self.unreachable += 1
            reason = "unreachable" if unreachable is None else unreachable
            self.unreachable_reasons[reason] = self.unreachable_reasons.get(reason, 0) + 1

    def count_suppressed(self, reason: str, n: int = 1) -> None:
        """Count `n` contacts kept off this platform for `reason`."""
        self.suppressed += n
        self.suppressed_reasons[reason] = self.suppressed_reasons.get(reason, 0) + n


class BalanceRow(BaseModel):
    """Holdout balance of one stratum."""

    stratum: str
    test: int
    control: int
    p_value: float
    mismatch: bool


class IdentitySummary(BaseModel):
    """How the audience's records grouped into people before the holdout (see `pipeline/clusters.py`).

    `regrouped` counts the routed records whose group is not the one their own contact id draws, because
    their person's smallest contact id drew the other group: each would otherwise have been a person in both.
    """

    records: int = 0
    clusters: int = 0
    multi_record_clusters: int = 0
    largest_cluster: int = 0
    regrouped: int = 0


class RunSummary(BaseModel):
    """The whole run, as printed, stored in the run ledger and passed to `after_run` hooks."""

    run_id: str = ""
    campaign: str
    mode: str
    dry_run: bool = False
    status: str = "running"
    error: str | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="what the run did not fail on but someone should look at: campaign rules that never applied "
        "to this audience (a CRM segment no rule mentions, a by_segment entry no contact has)",
    )
    rows_read: int = 0
    outcomes: dict[str, int] = Field(default_factory=lambda: {o.value: 0 for o in Outcome})
    rejected_reasons: dict[str, int] = Field(default_factory=dict)
    ineligible_reasons: dict[str, int] = Field(default_factory=dict)
    suppressed_reasons: dict[str, int] = Field(default_factory=dict)
    field_issues: int = 0
    identity_enriched: dict[str, int] = Field(default_factory=dict)
    identity: IdentitySummary = Field(default_factory=IdentitySummary)
    holdout_overall: BalanceRow | None = None
    holdout_mismatches: list[BalanceRow] = Field(default_factory=list)
    holdout_strata: int = 0
    platforms: dict[str, PlatformSummary] = Field(default_factory=dict)
    rejects_file: str | None = None
    plan_file: str | None = Field(
        None, description="dry runs: the CSV of planned changes per record (platform, stage, contact id, add/remove)"
    )
    onboard_seconds: float = 0.0
    seconds: float = 0.0

    def count(self, outcome: Outcome, reason: str | None = None) -> None:
        """Count one row's outcome (and its reason for rejected, ineligible and suppressed rows)."""
        self.outcomes[outcome.value] += 1
        if reason is None:
            return
        bucket = {
            Outcome.REJECTED: self.rejected_reasons,
            Outcome.INELIGIBLE: self.ineligible_reasons,
            Outcome.SUPPRESSED: self.suppressed_reasons,
        }.get(outcome)
        if bucket is not None:
            bucket[reason] = bucket.get(reason, 0) + 1

    def hold_back(self, dropped: Mapping[str, Collection[str]], reason: str, no_platform_left: int) -> None:
        """Account for staged members taken back after staging (by platform), for `reason`.

        They were counted eligible; they count as suppressed on their platform instead, and `no_platform_left`
        of their rows, which are left with no platform at all, move from activated to suppressed.
        """
        for platform, contact_ids in dropped.items():
            platform_summary = self.platforms[platform]
            platform_summary.eligible -= len(contact_ids)
            platform_summary.count_suppressed(reason, len(contact_ids))
        self.outcomes[Outcome.ACTIVATED.value] -= no_platform_left
        self.outcomes[Outcome.SUPPRESSED.value] += no_platform_left
        if no_platform_left:
            self.suppressed_reasons[reason] = self.suppressed_reasons.get(reason, 0) + no_platform_left

    def check_reconciles(self) -> None:
        """Raise when outcomes do not add up to the rows read: a row was lost or counted twice."""
        total = sum(self.outcomes.values())
        if total != self.rows_read:
            raise AssertionError(f"run summary does not reconcile: {self.rows_read} rows read, {total} outcomes")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for `--json` and the run ledger."""
        return self.model_dump(mode="json")


def top(counter: dict[str, int], n: int = 5) -> list[tuple[str, int]]:
    """The `n` most frequent reasons."""
    return Counter(counter).most_common(n)
