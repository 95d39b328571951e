"""The kit's audience and membership checks: ensure, add/remove end states, batch limits, faults, partial rejects.

Each check is a plain function of the contract (so the kit's own tests can run it against broken connectors)
that fails with an `AssertionError` saying which step broke and how the sandbox's state differs.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

from ..sdk.connector import Connector
from ..sdk.http import Action
from ..sdk.sandbox import FaultPlan
from ..sdk.types import AudienceRef, Member
from .harness import SandboxHarness, step
from .scenarios import FaultScenario, MembershipScenario, indexes

if TYPE_CHECKING:
    from .declaration import ContractDeclaration

#: How many times a fault scenario is re-run with the next seed when its plan injected nothing.
_RESEEDS = 3


def _chunks(members: Sequence[Member], size: int) -> list[Sequence[Member]]:
    return [members[i : i + size] for i in range(0, len(members), size)]


def _difference(got: set[Hashable], want: set[Hashable]) -> str:
    missing, extra = len(want - got), len(got - want)
    return f"{len(got)} members in the sandbox, {len(want)} expected: {missing} missing, {extra} unexpected"


def run_membership(
    contract: ContractDeclaration,
    harness: SandboxHarness,
    connector: Connector,
    audience: AudienceRef,
    scenario: MembershipScenario,
) -> None:
    """Play the scenario's steps, checking the sandbox's membership after each."""
    members = contract.members(range(scenario.size))
    for number, entry in enumerate(scenario.steps, start=1):
        what = f"{scenario.name}, step {number} ({entry.op} contacts {entry.span[0]}..{entry.span[1] - 1})"
        batch = members[entry.span[0] : entry.span[1]]
        send = connector.add_members if entry.op == "add" else connector.remove_members
        for chunk in _chunks(batch, min(entry.batch or len(batch), connector.max_batch_size)):
            with step(what):
                result = send(audience, chunk)
            assert not result.rejections, f"{what}: valid members were refused: {result.rejections[:3]}"
        got = contract.sandbox_members(harness.app, audience)
        want = contract.keys_of(members[i] for i in indexes(entry.expect))
        note = f" ({entry.note})" if entry.note else ""
        assert got == want, f"{what}{note}: {_difference(got, want)}"


def _ensure(connector: Connector, spec_name: str, contract: ContractDeclaration) -> AudienceRef:
    with step(f"ensure_audience({spec_name!r}, None)"):
        return connector.ensure_audience(contract.audience_spec(spec_name), None)


def check_ensure_audience(contract: ContractDeclaration) -> None:
    """Known ref → the same audience; twice → one audience in the sandbox; another spec → another audience."""
    spec = contract.audience_spec("awareness")
    with SandboxHarness(contract) as harness:
        connector = harness.connector()
        first = _ensure(connector, "awareness", contract)
        assert first.key == spec.key and first.remote_id, f"ensure_audience returned {first!r} for key {spec.key!r}"
        with step("ensure_audience(spec, known)"):
            again = connector.ensure_audience(spec, first)
        assert again == first, f"ensure_audience with the known ref returned {again!r}, not {first!r}"
        audiences = contract.sandbox_audiences(harness.app)
        assert audiences == {first.remote_id}, f"after ensuring one audience twice the sandbox holds {audiences}"
        if contract.finds_audience_without_ref:
            with step("ensure_audience(spec, None) from a connector without state"):
                found = harness.connector().ensure_audience(spec, None)
            assert found == first, f"finds_audience_without_ref is declared, yet a second create gave {found!r}"
            assert contract.sandbox_audiences(harness.app) == {first.remote_id}
        other = _ensure(connector, "conversion", contract)
        assert other.remote_id != first.remote_id, "two audience specs were given the same audience"
        audiences = contract.sandbox_audiences(harness.app)
        assert audiences == {first.remote_id, other.remote_id}, f"two specs left {audiences} in the sandbox"
        with step("ensure_audience(other spec, known)"):
            assert connector.ensure_audience(contract.audience_spec("conversion"), other) == other


#: The injected delay of a lost answer, and the client's read timeout under it (well apart on a busy machine).
_LOST_ANSWER_DELAY, _LOST_ANSWER_READ_TIMEOUT = 1.0, 0.3


def check_lost_answers_leave_one_audience(contract: ContractDeclaration) -> None:
    """Whichever request of a first `ensure_audience` loses its answer (the create too), one audience results.

    The answer to request n is lost after the sandbox applied it, for every n of a clean `ensure_audience`:
    a create retried blindly would leave a second audience (an orphan the campaign never fills nor removes).
    """
    spec = contract.audience_spec("awareness")
    with SandboxHarness(contract) as harness:
        harness.connector().ensure_audience(spec, None)
        requests = len(harness.app.requests)
    policy = contract.policy.model_copy(update={"read_timeout": _LOST_ANSWER_READ_TIMEOUT})
    for lost in range(1, requests + 1):
        plan = FaultPlan(timeout_requests=frozenset({lost}), timeout_seconds=_LOST_ANSWER_DELAY)
        with SandboxHarness(contract, plan) as harness:
            with step(f"ensure_audience(spec, None) losing the answer to request {lost} of {requests}"):
                ref = harness.connector(policy=policy).ensure_audience(spec, None)
            audiences = contract.sandbox_audiences(harness.app)
            assert audiences == {ref.remote_id}, (
                f"losing the answer to request {lost} left {sorted(audiences)} in the sandbox, not just "
                f"{ref.remote_id}: {harness.describe_requests()}"
            )


def check_membership(contract: ContractDeclaration, scenario: MembershipScenario) -> None:
    """The scenario's end state after every step, on a clean sandbox."""
    with SandboxHarness(contract) as harness:
        connector = harness.connector()
        audience = _ensure(connector, "awareness", contract)
        run_membership(contract, harness, connector, audience, scenario)


def _connector_class_for(contract: ContractDeclaration, size: int) -> type[Connector]:
    cls = contract.connector
    if size == cls.max_batch_size:
        return cls
    # A lowered limit for the test only: the connector sees the same contract (never more than max) at a size
    # the suite can afford.
    return type(f"{cls.__name__}AtTestSize", (cls,), {"max_batch_size": size, "__module__": cls.__module__})


def check_batch_limit(contract: ContractDeclaration) -> None:
    """Exactly `max_batch_size` members in one call: accepted, and no request carries more records."""
    limit = contract.connector.max_batch_size
    size = min(limit, contract.max_batch_size_under_test or limit)
    members = contract.members(range(size), bulk=True)
    with SandboxHarness(contract) as harness:
        connector = harness.connector(cls=_connector_class_for(contract, size))
        audience = _ensure(connector, "awareness", contract)
        for operation, send, want in (
            ("add", connector.add_members, contract.keys_of(members)),
            ("remove", connector.remove_members, set()),
        ):
            with step(f"{operation} one batch of exactly max_batch_size ({size}) members"):
                send(audience, members)
            counts = harness.record_counts()
            assert counts, (
                "records_in_request counted no records in any request the sandbox received: "
                f"it must recognise the requests that carry members ({harness.describe_requests()})"
            )
            assert max(counts) <= size, (
                f"a request carried {max(counts)} records, more than max_batch_size {size} "
                f"(records per request: {counts[:20]})"
            )
            got = contract.sandbox_members(harness.app, audience)
            assert got == want, f"after the full-size {operation}: {_difference(got, want)}"


def check_faults(contract: ContractDeclaration, scenario: FaultScenario) -> None:
    """The scenario's membership reached despite its faults, which must actually have been injected."""
    policy = contract.policy
    if scenario.plan.timeout_rate:  # the client must give up before the sandbox answers, or nothing times out
        policy = policy.model_copy(update={"read_timeout": min(policy.read_timeout, scenario.plan.timeout_seconds / 2)})
    with SandboxHarness(contract) as harness:
        connector = harness.connector(policy=policy)
        for attempt in range(_RESEEDS):
            harness.set_faults(FaultPlan())
            audience = _ensure(connector, f"faults-{attempt}", contract)  # created before the faults start
            plan = scenario.plan.model_copy(update={"seed": scenario.plan.seed + attempt})
            harness.set_faults(plan)
            run_membership(contract, harness, connector, audience, scenario.membership)
            if harness.faults_seen(scenario.fault):
                break
        harness.set_faults(FaultPlan())
        seen = harness.faults_seen(scenario.fault)
        assert seen, f"{scenario.name}: the sandbox injected no {scenario.fault} fault in {_RESEEDS} seeds"
        if scenario.backs_off:
            assert harness.sleep.calls, f"{scenario.name}: retried without waiting through the injected sleep"
        if scenario.fault == "throttle":
            _check_throttling_was_recognised(harness, seen, policy.max_wait)


def _check_throttling_was_recognised(harness: SandboxHarness, throttled: int, max_wait: float) -> None:
    """Throttling answers were read as throttling, and each Retry-After was waited for (capped at max_wait)."""
    limited = [answer for answer in harness.answers if answer.action is Action.RATE_LIMITED]
    assert len(limited) >= throttled, (
        f"the sandbox throttled {throttled} requests but the classifier read only {len(limited)} answers as "
        "throttling: the others were retried as plain errors, ignoring the platform's Retry-After and pacing"
    )
    waits = list(harness.sleep.calls)
    for answer in limited:
        if answer.retry_after is None:
            continue
        wanted = min(answer.retry_after, max_wait)
        match = next((i for i, w in enumerate(waits) if math.isclose(w, wanted, abs_tol=1e-6)), None)
        assert match is not None, f"a throttling answer said Retry-After {answer.retry_after:g}; no wait honoured it"
        waits.pop(match)


def check_partial_rejects(contract: ContractDeclaration) -> None:
    """With every batch partly refused: each refusal names a contact of the batch, and refused ones are not in."""
    members = contract.members(range(contract.partial_reject_batch), bulk=True)
    by_id = {member.contact_id: member for member in members}
    with SandboxHarness(contract) as harness:
        connector = harness.connector()
        audience = _ensure(connector, "awareness", contract)
        harness.set_faults(FaultPlan(partial_reject_rate=1.0, seed=1))
        with step("add a batch the sandbox partly refuses"):
            result = connector.add_members(audience, members)
        got = contract.sandbox_members(harness.app, audience)
        everyone = contract.keys_of(members)
        if not contract.reports_record_rejections:
            assert not result.rejections and not result.invalid, (
                "reports_record_rejections is False (whole-request platform) but the batch reported refusals"
            )
            assert got == everyone, f"a whole-request platform's batch was partly applied: {_difference(got, everyone)}"
            return
        assert result.rejections, "partial_reject_rate=1.0 but no record was reported refused (sandbox or connector)"
        assert all(r.contact_id for r in result.rejections), "a rejection names no contact (contact_id is empty)"
        refused = {str(rejection.contact_id) for rejection in result.rejections}
        strangers = sorted(refused - set(by_id))
        assert not strangers, f"rejections name contacts that were not in the batch: {strangers[:5]}"
        for rejection in result.rejections:
            member = by_id[str(rejection.contact_id)]
            values = [v for v in member.fields.values() if len(v) >= 4]
            assert not any(v.lower() in rejection.reason.lower() for v in values), (
                f"the rejection reason for {rejection.contact_id} repeats one of its identifier values"
            )
        refused_keys = contract.keys_of(by_id[cid] for cid in refused)
        assert not refused_keys & got, "records reported as refused are in the audience"
        if contract.rejections_are_sampled:
            assert result.invalid >= len(result.rejections), "fewer invalid records than rejections reported"
            assert got <= everyone - refused_keys and len(got) == len(members) - result.invalid, (
                f"{result.invalid} reported invalid, yet {len(got)} of {len(members)} members are in the audience"
            )
        else:
            assert result.invalid == len(result.rejections), (
                f"{result.invalid} reported invalid but {len(result.rejections)} rejections name a contact"
            )
            want = everyone - refused_keys
            assert got == want, f"the records not refused should all be in: {_difference(got, want)}"
