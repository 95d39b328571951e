"""Routing the contacts of a batch held by column: `ContactRouter.route` without a `Contact` per row.

The decisions and their order are `ContactRouter`'s (segment, holdout group, offered platforms, suppression and
consent, payloads), and so are the pieces deciding them (its segmenter, channel rules, gate, payload builders and
normalization cache): only where the values come from differs. They are read from the batch's columns; the
channel rules are decided once per (country, segment); a `Contact` is built only when a step needs the whole
of it (a plugin veto; e-mail's staged form, see `ContactRef`).
"""

from __future__ import annotations

from typing import Any

from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.types import Member
from .contact_batch import ContactColumns
from .holdout import assign_group, strata_key
from .routing import ContactRef, ContactRouter, RoutedContact


class RowAttributes:
    """One record's attributes as rules read them (`AttributeSource`), with the segment routing gave it."""

    __slots__ = ("columns", "index", "segment")

    def __init__(self, columns: ContactColumns, index: int, segment: str | None) -> None:
        self.columns = columns
        self.index = index
        self.segment = segment

    def value(self, name: str) -> Any:
        """The attribute's value as `Attributes.value` gives it."""
        if name == "segment":
            return self.segment
        values = self.columns.attributes.get(name)
        if values is not None:
            return values[self.index]
        return self.columns.contact(self.index).attributes.value(name)  # a whole model: asked of the contact


class BatchRouter:
    """Routes records of `ContactColumns` with a `ContactRouter`'s rules (see the module doc)."""

    def __init__(self, router: ContactRouter) -> None:
        self.router = router

    @property
    def wanted(self) -> set[str]:
        """The attribute names segment rules and holdout strata read (the columns a batch must keep)."""
        return self.router.segmenter.fields | {name for name in self.router.strata if name != "country"}

    def route(self, columns: ContactColumns, index: int, anchor: str | None) -> RoutedContact:
        """Route record `index` of the batch; `anchor` as for `ContactRouter.route`."""
        router = self.router
        contact_id = columns.contact_id[index]
        segment = router.segmenter.assign(columns.text["segment"][index], RowAttributes(columns, index, None))
        country = columns.identifiers[IdentifierKind.COUNTRY][index]
        stage = columns.text["funnel_stage"][index] or router.default_stage
        batch = columns.batch
        ref = ContactRef(
            contact_id, batch.source, batch.rows[index], country, segment, stage,
            build=lambda: _built(columns, index, segment),
        )
        attributes = RowAttributes(columns, index, segment)
        stratum = strata_key(
            _text(country if name == "country" else attributes.value(name)) for name in router.strata
        )
        group = assign_group(router.salt, anchor or contact_id, router.control_fraction)
        routed = RoutedContact(ref, group, stratum)
        if anchor and anchor != contact_id:
            routed.regrouped = group is not assign_group(router.salt, contact_id, router.control_fraction)
        routed.offered, not_offered = router.rules.offered_for(country, segment)
        identifiers = columns.row_identifiers(index)
        consent = columns.consent
        ad_consent = (_flag(consent, "ad_user_data", index), _flag(consent, "ad_personalization", index))
        members = self._members(columns, index, routed, identifiers, ad_consent) if routed.offered else {}
        return routed.settle(
            members, not_offered, lambda: self._every_payload(contact_id, identifiers, country, ad_consent)
        )

    def _every_payload(
        self,
        contact_id: str,
        identifiers: dict[IdentifierKind, str],
        country: str | None,
        ad_consent: tuple[bool | None, bool | None],
    ) -> dict[str, Member]:
        payloads = {}
        cache = self.router.cache
        for platform, builder in self.router.builders.items():
            member = builder.build_values(contact_id, identifiers, country, ad_consent, cache).member
            if member is not None:
                payloads[platform] = member
        return payloads

    def _members(
        self,
        columns: ContactColumns,
        index: int,
        routed: RoutedContact,
        identifiers: dict[IdentifierKind, str],
        ad_consent: tuple[bool | None, bool | None],
    ) -> dict[str, Member]:
        router = self.router
        gate = router.gate
        members: dict[str, Member] = {}
        contact_id = routed.ref.contact_id
        everywhere = (
            gate.suppression(contact_id, identifiers.get(IdentifierKind.EMAIL)) if gate.suppression else None
        )
        consent = (*ad_consent, _flag(columns.consent, "email_marketing", index))
        unsubscribed = columns.unsubscribed[index]
        for platform in routed.offered:
            reason = everywhere or gate.consent_reason(platform, consent, unsubscribed)
            if reason is None and gate.veto is not None:
                reason = gate.veto(routed.contact, platform)
            if reason:
                routed.suppressed[platform] = reason
                continue
            built = router.builders[platform].build_values(
                contact_id, identifiers, routed.ref.country, ad_consent, router.cache
            )
            routed.built(platform, built, members)
        return members


def _flag(consent: dict[str, list[bool | None]], name: str, index: int) -> bool | None:
    values = consent.get(name)
    return values[index] if values else None


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _built(columns: ContactColumns, index: int, segment: str | None) -> Contact:
    """Record `index` as `ContactRouter.route` holds it: the parsed contact with its segment set."""
    contact = columns.contact(index)
    if contact.attributes.segment == segment:
        return contact
    return contact.model_copy(update={"attributes": contact.attributes.model_copy(update={"segment": segment})})
