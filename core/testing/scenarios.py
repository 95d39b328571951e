"""The contract kit's scenarios: plain data with the outcome each one expects.

The standard tests are few and generic; what varies between runs (which faults, which members, which values)
lives here as frozen models, so a plugin author extends the kit by adding data — another identifier vector,
another fault plan — instead of copying a test body and letting it drift from the original.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator

from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.sandbox import FaultPlan

_FROZEN = ConfigDict(frozen=True, extra="forbid")

#: A half-open run of contact indexes, `(first, stop)`, as the kit's contact factory numbers contacts.
Span = tuple[int, int]


def indexes(spans: tuple[Span, ...]) -> frozenset[int]:
    """Every index the spans cover."""
    return frozenset(i for first, stop in spans for i in range(first, stop))


class IdentifierVector(BaseModel):
    """One raw identifier value and what the connector's rule must make of it.

    Attributes:
        kind: the identifier kind; vectors for kinds the connector does not declare are skipped.
        raw: the value as a CRM export holds it.
        normalized: the value the platform's published normalization gives (hashed by the kit when the rule
            says `hashed`); None for a value that must be refused.
        country: the contact's country, which phone, state and zip rules depend on.
        note: why the vector exists, shown when it fails.
    """

    model_config = _FROZEN

    kind: IdentifierKind
    raw: str
    normalized: str | None
    country: str | None = "US"
    note: str = ""

    @property
    def rejected(self) -> bool:
        """Whether the rule must refuse the value."""
        return self.normalized is None


class MembershipStep(BaseModel):
    """Add or remove a span of contacts, then expect the audience to hold exactly `expect`.

    `batch` splits the step into several calls (never above the connector's `max_batch_size`).
    """

    model_config = _FROZEN

    op: Literal["add", "remove"]
    span: Span
    expect: tuple[Span, ...]
    batch: int | None = None
    note: str = ""


class MembershipScenario(BaseModel):
    """Steps against one audience; the expectations are checked against set semantics when the model is built."""

    model_config = _FROZEN

    name: str
    steps: tuple[MembershipStep, ...]

    @model_validator(mode="after")
    def _expectations_follow_the_steps(self) -> MembershipScenario:
        members: frozenset[int] = frozenset()
        for number, step in enumerate(self.steps, start=1):
            span = frozenset(range(*step.span))
            members = members | span if step.op == "add" else members - span
            if indexes(step.expect) != members:
                raise ValueError(f"{self.name}: step {number} expects a membership its operations do not give")
        return self

    @property
    def size(self) -> int:
        """Contacts the scenario needs (the highest index it uses, plus one)."""
        return max(step.span[1] for step in self.steps)


class FaultScenario(BaseModel):
    """A fault plan the connector must ride out, reaching the membership the scenario expects.

    Attributes:
        name: the test id.
        plan: what the sandbox injects (seeded, so a run repeats).
        fault: the fault that must actually have been injected, or the test would prove nothing.
        membership: what to do once the audience exists (it is created before faults start: creating is not
            idempotent on every platform, and `ensure_audience` is tested on its own).
        backs_off: whether the connector must have waited (through the injected sleep) before a retry.
    """

    model_config = _FROZEN

    name: str
    plan: FaultPlan
    fault: Literal["throttle", "server_error", "timeout"]
    membership: MembershipScenario
    backs_off: bool = True


#: Add, add again, remove, remove again, add back: each step's expectation is the end state the sandbox holds.
BASIC_MEMBERSHIP = MembershipScenario(
    name="add, re-add, remove, re-remove, add back",
    steps=(
        MembershipStep(op="add", span=(0, 12), expect=((0, 12),), batch=5),
        MembershipStep(op="add", span=(0, 12), expect=((0, 12),), note="re-adding is a no-op"),
        MembershipStep(op="remove", span=(0, 5), expect=((5, 12),), note="remove leaves the rest"),
        MembershipStep(op="remove", span=(0, 5), expect=((5, 12),), note="removing again is a no-op"),
        MembershipStep(op="add", span=(3, 8), expect=((3, 12),), note="re-adding removed members"),
    ),
)

#: Enough calls that a 30 % fault rate hits some, few enough that timeouts stay cheap.
FAULTED_MEMBERSHIP = MembershipScenario(
    name="batches under faults",
    steps=(
        MembershipStep(op="add", span=(0, 16), expect=((0, 16),), batch=4),
        MembershipStep(op="remove", span=(0, 6), expect=((6, 16),), batch=3),
        MembershipStep(op="add", span=(2, 4), expect=((2, 4), (6, 16))),
    ),
)

DEFAULT_FAULT_SCENARIOS: tuple[FaultScenario, ...] = (
    FaultScenario(name="throttle", plan=FaultPlan(throttle_rate=0.3, seed=11), fault="throttle",
                  membership=FAULTED_MEMBERSHIP),
    FaultScenario(name="server_error", plan=FaultPlan(server_error_rate=0.3, seed=5), fault="server_error",
                  membership=FAULTED_MEMBERSHIP),
    # A timeout is answered after the sandbox applied the request: the retry re-sends work already done.
    FaultScenario(name="timeout", plan=FaultPlan(timeout_rate=0.2, timeout_seconds=0.6, seed=2), fault="timeout",
                  membership=FAULTED_MEMBERSHIP),
)
