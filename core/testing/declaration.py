"""`ContractDeclaration`: the declarations and hooks of a connector's contract tests, without the tests.

The kit's checks (`sync_checks`, `safety_checks`, `engine_checks`) and its `SandboxHarness` read a contract
through this class, and `ConnectorContract` adds the tests on top, so the checks never import the class that
imports them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, ClassVar

from ..pipeline.payload import NormalizationCache, PayloadBuilder
from ..sdk.connector import Connector
from ..sdk.contact import Contact
from ..sdk.http import RetryPolicy
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.sandbox import FaultPlan, SandboxApp
from ..sdk.sandbox_audiences import member_key
from ..sdk.types import AccountConfig, AudienceRef, AudienceSpec, Credentials, Member
from .contacts import restrict, sample_contact
from .scenarios import BASIC_MEMBERSHIP, DEFAULT_FAULT_SCENARIOS, FaultScenario, IdentifierVector, MembershipScenario


class ContractDeclaration:
    """What a connector's contract tests declare, and the helpers the kit's checks build on.

    Declarations (class attributes):
        connector: the `Connector` subclass under test (required).
        account: its account settings (required); `for_sandbox` points them at the kit's sandbox.
        credentials: a set the sandbox accepts (required).
        wrong_credentials: a set the sandbox refuses; by default every secret of `credentials` is replaced.
        entry_point: the name under the `crm_activation` entry-point group; None skips the discovery test.
        country: the country of the kit's sample contacts.
        reports_record_rejections: the platform says which records of a batch it refused; False for platforms
            that accept or refuse whole requests (DV360), whose sandbox must then ignore `partial_reject_rate`.
        rejections_are_sampled: the platform names only a sample of the refused records (Meta).
        finds_audience_without_ref: `ensure_audience(spec, None)` finds an audience it created for this campaign
            before (by the campaign's marker, `AudienceSpec.marker`, stored on the platform) instead of creating
            another; False only where the platform offers no way to list or look audiences up.
        clear_personal_kinds: personal identifier kinds the platform documents as sent unhashed (LinkedIn names,
            Google's postal code); any other personal kind sent in clear fails the identifier test.
        identifier_vectors: the platform's own normalization vectors, on top of the kit's `DEFAULT_VECTORS`.
        membership_scenarios, fault_scenarios: the data the membership and fault tests run.
        max_batch_size_under_test: test batching at this size instead of `max_batch_size` (for limits so big
            that a full batch would slow the suite, like Xandr's 100,000); the kit lowers the limit to it.
        max_auth_failure_requests: how many requests refused credentials may cost before the error.
        holdout_contacts: contacts in the campaign the engine runs for the holdout test.
        policy: the retry policy of every connector the kit builds (fast waits; timeout scenarios shorten
            `read_timeout` to half their plan's `timeout_seconds`).
    """

    connector: ClassVar[type[Connector]]
    account: ClassVar[AccountConfig]
    credentials: ClassVar[Credentials]
    wrong_credentials: ClassVar[Credentials | None] = None
    entry_point: ClassVar[str | None] = None
    country: ClassVar[str] = "US"
    reports_record_rejections: ClassVar[bool] = True
    rejections_are_sampled: ClassVar[bool] = False
    finds_audience_without_ref: ClassVar[bool] = False
    clear_personal_kinds: ClassVar[frozenset[IdentifierKind]] = frozenset()
    identifier_vectors: ClassVar[tuple[IdentifierVector, ...]] = ()
    membership_scenarios: ClassVar[tuple[MembershipScenario, ...]] = (BASIC_MEMBERSHIP,)
    fault_scenarios: ClassVar[tuple[FaultScenario, ...]] = DEFAULT_FAULT_SCENARIOS
    max_batch_size_under_test: ClassVar[int | None] = None
    max_auth_failure_requests: ClassVar[int] = 4
    partial_reject_batch: ClassVar[int] = 80
    holdout_contacts: ClassVar[int] = 40
    # A generous read timeout: a full batch may take a second on a busy CI machine, and a timeout there would
    # be retried until attempts run out. Timeout scenarios shorten it below their plan's `timeout_seconds`.
    policy: ClassVar[RetryPolicy] = RetryPolicy(
        max_attempts=12, initial_wait=0.001, max_wait=0.01, connect_timeout=2.0, read_timeout=10.0
    )

    # -- hooks the author must write ------------------------------------------------------------------------
    def member_keys(self, member: Member) -> set[Hashable]:
        """The keys the sandbox holds for one member once it is added (usually one; Xandr: one per id line)."""
        raise NotImplementedError(f"{type(self).__name__} must implement member_keys(member)")

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        """How many records (in the unit of `max_batch_size`) a logged sandbox request carries; None if none.

        `entry` is one item of `app.requests`: method, path, query, headers, body (text), status, fault.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement records_in_request(entry)")

    # -- hooks with defaults ------------------------------------------------------------------------------
    def sandbox_audiences(self, app: SandboxApp) -> set[str]:
        """The remote ids of the audiences that exist in the sandbox, read from the standard `state()` shape."""
        return set(app.state()["audiences"])

    def sandbox_members(self, app: SandboxApp, audience: AudienceRef) -> set[Hashable]:
        """The audience's members in the sandbox, as `member_key` spells them (read from the standard shape).

        `member_keys` must spell a member the same way: `{member_key(...)}` of the JSON the sandbox lists, or
        the id itself when members are plain ids.
        """
        return {member_key(member) for member in app.state()["audiences"][audience.remote_id]["members"]}

    def make_sandbox(self, credentials: Credentials, faults: FaultPlan) -> SandboxApp:
        """The sandbox app to serve; override to pass extra settings (the engine calls `sandbox(creds, faults)`)."""
        if self.connector.sandbox is None:
            raise NotImplementedError(f"{self.connector.__qualname__} declares no sandbox; override make_sandbox")
        return self.connector.sandbox(credentials, faults)

    def make_contact(self, index: int) -> Contact:
        """Contact number `index`: every declared identifier kind filled with a valid, distinct value."""
        return sample_contact(index, (rule.kind for rule in self.connector.identifier_rules), self.country)

    def bulk_contact(self, index: int) -> Contact:
        """A contact with only the primary match key: what the batch and partial-reject tests push by thousands."""
        if type(self).make_contact is ContractDeclaration.make_contact:  # skip building values it would drop
            return sample_contact(index, {self.primary_kind()}, self.country)
        return restrict(self.make_contact(index), {self.primary_kind()})

    def audience_spec(self, name: str = "awareness", campaign: str = "contract-kit") -> AudienceSpec:
        """The audience the kit asks for (its key is what a state database would store), as the engine builds it.

        The display name does not depend on `campaign`: two campaigns' specs differ only in key and marker.
        """
        return AudienceSpec(key=f"{campaign}/{name}", campaign=campaign, name=f"Contract kit {name}",
                            description="crm-activation kit")

    # -- helpers for the checks ---------------------------------------------------------------------------
    def primary_kind(self) -> IdentifierKind:
        """The first declared identifier kind that is a match key."""
        return next(r.kind for r in self.connector.identifier_rules if r.kind in self.connector.match_keys)

    def builder(self) -> PayloadBuilder:
        """The engine's payload builder for this connector's declared rules."""
        cls = self.connector
        return PayloadBuilder(cls.platform, cls.identifier_rules, cls.match_keys)

    def members(self, indexes: Iterable[int], *, bulk: bool = False) -> list[Member]:
        """Members as the engine hands them over, built from the kit's contacts by `PayloadBuilder`."""
        builder, cache = self.builder(), NormalizationCache()
        found = []
        for index in indexes:
            contact = self.bulk_contact(index) if bulk else self.make_contact(index)
            outcome = builder.build(contact, cache)
            if outcome.member is None:
                reasons = "; ".join(f"{p.kind}: {p.reason}" for p in outcome.problems)
                raise AssertionError(
                    f"the kit's contact {contact.contact_id} is not eligible on {self.connector.platform}: "
                    f"{outcome.ineligible_reason} ({reasons or 'no identifier problems'}); override make_contact"
                )
            found.append(outcome.member)
        return found

    def keys_of(self, members: Iterable[Member]) -> set[Hashable]:
        """The sandbox keys of several members."""
        return {key for member in members for key in self.member_keys(member)}
