"""RunAccounts and the summary's counting methods: every routed contact and every hold-back adds up."""

from __future__ import annotations

from crm_activation.pipeline.accounting import RunAccounts, balance_row
from crm_activation.pipeline.channels import HeldBack
from crm_activation.pipeline.holdout import BalanceTracker, Group, StratumBalance
from crm_activation.pipeline.payload import IdentifierProblem
from crm_activation.pipeline.rejects import RejectsWriter
from crm_activation.pipeline.routing import ContactRef, RoutedContact
from crm_activation.sdk.contact import Contact
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.sdk.summary import Outcome, PlatformSummary, RunSummary
from crm_activation.sdk.types import Member


def summary_with(*platforms: str) -> RunSummary:
    summary = RunSummary(campaign="c", mode="incremental")
    summary.platforms = {p: PlatformSummary() for p in platforms}
    return summary


def routed(contact_id: str, group: Group = Group.TEST, **fields: object) -> RoutedContact:
    return RoutedContact(ContactRef.of(Contact(contact_id=contact_id, source="f.csv", row=1)), group, ("US",), **fields)  # type: ignore[arg-type]


class FakeState:
    def __init__(self, still_desired: set[str]) -> None:
        self.still_desired = still_desired

    def contacts_with_desired(self, ids: set[str]) -> set[str]:
        return ids & self.still_desired


def test_each_platform_offered_counts_eligible_suppressed_or_unreachable() -> None:
    summary = summary_with("a", "b", "c")
    rejects = RejectsWriter(None)
    accounts = RunAccounts(summary, rejects, BalanceTracker(0.5, 0.001))
    problem = IdentifierProblem(IdentifierKind.EMAIL, "not an e-mail address")
    accounts.add(
        routed(
            "1",
            offered=("a", "b", "c"),
            members={"a": Member("1", {}, "US", {})},
            suppressed={"b": "no consent"},
            unreachable={"c": "no usable identifier"},
            problems={"c": (problem,)},
            outcome=Outcome.ACTIVATED,
        )
    )
    accounts.add(routed("2", Group.CONTROL, offered=("a",), outcome=Outcome.HELD_OUT))
    summary.rows_read = 2
    accounts.close()

    assert (summary.platforms["a"].offered, summary.platforms["a"].eligible) == (1, 1)
    assert summary.platforms["b"].suppressed_reasons == {"no consent": 1}
    assert summary.platforms["c"].unreachable_reasons == {"no usable identifier": 1}
    assert summary.field_issues == 1 and rejects.written == 1
    assert summary.outcomes["activated"] == summary.outcomes["held_out"] == 1
    overall = summary.holdout_overall
    assert overall is not None and (overall.test, overall.control) == (1, 1)
    assert summary.holdout_strata == 1 and summary.identity_enriched == {}


def test_a_hold_back_moves_members_to_suppressed_and_rows_left_with_nothing() -> None:
    summary = summary_with("a", "b")
    for platform in ("a", "b"):
        summary.platforms[platform].eligible = 2
    summary.outcomes["activated"] = 2
    accounts = RunAccounts(summary, RejectsWriter(None), BalanceTracker(0.5, 0.001))

    accounts.hold_back(HeldBack({"a": {"1", "2"}, "b": {"1"}}, "why"), FakeState({"2"}))  # type: ignore[arg-type]
    accounts.hold_back(HeldBack({}, "nothing"), FakeState(set()))  # type: ignore[arg-type]
    accounts.hold_back(None, FakeState(set()))  # type: ignore[arg-type]

    assert (summary.platforms["a"].eligible, summary.platforms["a"].suppressed) == (0, 2)
    assert (summary.platforms["b"].eligible, summary.platforms["b"].suppressed) == (1, 1)
    assert summary.platforms["a"].suppressed_reasons == {"why": 2}
    assert summary.outcomes["activated"] == 1 and summary.outcomes["suppressed"] == 1
    assert summary.suppressed_reasons == {"why": 1}


def test_a_balance_row_joins_the_stratum() -> None:
    row = balance_row(StratumBalance(("US", "high"), 10, 12, 0.5, False))
    assert (row.stratum, row.test, row.control, row.mismatch) == ("US/high", 10, 12, False)
