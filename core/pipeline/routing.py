"""Routing one onboarded contact: holdout group, the platforms it is offered, and the members to push.

This is the heart of the data flow — segmentation, holdout, eligibility and payload building, in that
order — and it is pure: it returns a `RoutedContact` and touches no database, so the invariant "no control
contact ever reaches a platform" can be tested here directly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..sdk.contact import Contact
from ..sdk.summary import Outcome
from ..sdk.types import Member
from .eligibility import ChannelRules, ContactGate
from .holdout import Group, assign_group, strata_key
from .payload import IdentifierProblem, NormalizationCache, PayloadBuilder, PayloadOutcome
from .segmentation import Segmenter


@dataclass(slots=True)
class ContactRef:
    """Who a routed contact is, as accounting and staging read it; the whole `Contact` is built on demand.

    The batch pipeline routes contacts held by column and never builds a `Contact` unless a step needs all of it
    (e-mail personalizes with every attribute; a plugin veto receives one): `build` makes it then, once.
    """

    contact_id: str
    source: str
    row: int
    country: str | None
    segment: str | None
    stage: str
    build: Callable[[], Contact] | None = None
    built: Contact | None = None

    @classmethod
    def of(cls, contact: Contact) -> ContactRef:
        """The reference of a contact already built (with its segment and funnel stage set)."""
        attributes = contact.attributes
        return cls(
            contact.contact_id, contact.source, contact.row, contact.country, attributes.segment,
            attributes.funnel_stage or "", built=contact,
        )

    def contact(self) -> Contact:
        """The whole contact (built now if it was not)."""
        if self.built is None:
            if self.build is None:
                raise ValueError(f"contact {self.contact_id} cannot be built")
            self.built = self.build()
        return self.built


@dataclass(slots=True)
class RoutedContact:
    """Where one contact goes.

    Attributes:
        ref: who the contact is: id, source row, country, segment and funnel stage (the whole contact on demand).
        group: holdout group.
        stratum: the holdout stratum key.
        offered: platforms its country and segment are offered (the treatment), for both groups.
        reachable: platforms it would be pushed to (for control: would have been).
        members: platform → member to push; always empty for control contacts.
        withheld: for control contacts, their payload on every platform, whatever their country, consent or
            suppression; kept only so the engine can keep off each platform the test contacts who share an
            identifier with them (to the platform they are the same person).
        regrouped: whether the group differs from the one the contact's own id draws (its cluster's anchor
            drew another), counted in the summary.
        outcome: the row's one outcome, and `reason` for held-out-less non-activations.
        suppressed: platform → why it was kept off; unreachable: platform → why it cannot be matched there.
        problems: identifier values a platform rule refused, by platform.
    """

    ref: ContactRef
    group: Group
    stratum: tuple[str, ...]
    offered: tuple[str, ...] = ()
    reachable: tuple[str, ...] = ()
    members: dict[str, Member] = field(default_factory=dict)
    withheld: dict[str, Member] = field(default_factory=dict)
    regrouped: bool = False
    outcome: Outcome = Outcome.INELIGIBLE
    reason: str | None = None
    suppressed: dict[str, str] = field(default_factory=dict)
    unreachable: dict[str, str] = field(default_factory=dict)
    problems: dict[str, tuple[IdentifierProblem, ...]] = field(default_factory=dict)

    @property
    def contact(self) -> Contact:
        """The whole contact, with its segment and funnel stage set (built on first use)."""
        return self.ref.contact()

    def built(self, platform: str, outcome: PayloadOutcome, members: dict[str, Member]) -> None:
        """Take one platform's payload: its member into `members`, else why the contact is unreachable there."""
        if outcome.problems:
            self.problems[platform] = outcome.problems
        if outcome.member is None:
            self.unreachable[platform] = outcome.ineligible_reason or "unreachable"
        else:
            members[platform] = outcome.member

    def settle(
        self, members: dict[str, Member], not_offered: str | None, every_payload: Callable[[], dict[str, Member]]
    ) -> RoutedContact:
        """Decide the outcome from the members built for the offered platforms (the last step of routing).

        A control contact is held out and keeps every platform's payload (`withheld`, from `every_payload`); a
        test contact is activated where it has members, else suppressed or unreachable, with the first reason.
        """
        self.reachable = tuple(sorted(members))
        if self.group is Group.CONTROL:
            self.outcome = Outcome.HELD_OUT
            self.withheld = every_payload()
            return self
        if not self.offered:
            self.outcome, self.reason = Outcome.INELIGIBLE, not_offered
            return self
        self.members = members
        if members:
            self.outcome = Outcome.ACTIVATED
        elif self.suppressed:
            self.outcome, self.reason = Outcome.SUPPRESSED, sorted(self.suppressed.values())[0]
        else:
            self.outcome, self.reason = Outcome.INELIGIBLE, sorted(self.unreachable.values())[0]
        return self


class ContactRouter:
    """Applies the campaign's rules to each contact."""

    def __init__(
        self,
        *,
        segmenter: Segmenter,
        salt: str,
        control_fraction: float,
        strata: tuple[str, ...],
        rules: ChannelRules,
        gate: ContactGate,
        builders: Mapping[str, PayloadBuilder],
        default_stage: str,
    ) -> None:
        self.segmenter = segmenter
        self.salt = salt
        self.control_fraction = control_fraction
        self.strata = strata
        self.rules = rules
        self.gate = gate
        self.builders = builders
        self.default_stage = default_stage
        self.cache = NormalizationCache()

    def stratum_of(self, contact: Contact) -> tuple[str, ...]:
        """The contact's holdout stratum (country, segment by default)."""
        values = [contact.country if name == "country" else contact.attributes.value(name) for name in self.strata]
        return strata_key(str(v) if v is not None else None for v in values)

    def route(self, contact: Contact, anchor: str | None = None) -> RoutedContact:
        """Decide everything about one contact.

        `anchor` is the contact id whose holdout draw the contact's identity cluster takes (see `clusters.py`);
        None or the contact's own id means the contact is a person of its own.
        """
        contact = self.segmenter.apply(contact)
        if not contact.attributes.funnel_stage:
            contact = contact.model_copy(
                update={"attributes": contact.attributes.model_copy(update={"funnel_stage": self.default_stage})}
            )
        group = assign_group(self.salt, anchor or contact.contact_id, self.control_fraction)
        routed = RoutedContact(ContactRef.of(contact), group, self.stratum_of(contact))
        if anchor and anchor != contact.contact_id:
            routed.regrouped = group is not assign_group(self.salt, contact.contact_id, self.control_fraction)
        routed.offered, not_offered = self.rules.offered(contact)
        cache = self.cache
        members = self._members(contact, routed, cache) if routed.offered else {}
        return routed.settle(members, not_offered, lambda: self._every_payload(contact, cache))

    def _every_payload(self, contact: Contact, cache: NormalizationCache) -> dict[str, Member]:
        payloads = {}
        for platform, builder in self.builders.items():
            member = builder.build(contact, cache).member
            if member is not None:
                payloads[platform] = member
        return payloads

    def _members(self, contact: Contact, routed: RoutedContact, cache: NormalizationCache) -> dict[str, Member]:
        members: dict[str, Member] = {}
        everywhere = self.gate.contact_reason(contact)
        for platform in routed.offered:
            reason = everywhere or self.gate.platform_reason(contact, platform)
            if reason:
                routed.suppressed[platform] = reason
                continue
            routed.built(platform, self.builders[platform].build(contact, cache), members)
        return members
