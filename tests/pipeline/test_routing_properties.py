"""Invariants of routing, over arbitrary contacts: control never gets a member, every contact one outcome."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_activation import IdentifierKind, IdentifierRule
from crm_activation.campaign.schema import ChannelsConfig, CountryChannels
from crm_activation.pipeline.eligibility import ChannelRules, ContactGate
from crm_activation.pipeline.holdout import Group
from crm_activation.pipeline.payload import PayloadBuilder
from crm_activation.pipeline.routing import ContactRouter
from crm_activation.pipeline.segmentation import Segmenter
from crm_activation.sdk.contact import Attributes, Consent, Contact
from crm_activation.sdk.summary import Outcome


def lower(value: str, country: str | None) -> str:
    return value.strip().lower()


RULES = (IdentifierRule(IdentifierKind.EMAIL, "EMAIL", lower, hashed=True),)
CHANNELS = ChannelsConfig(
    default=("mail",),
    by_country=(CountryChannels(countries=("US", "GB"), platforms=("ads", "mail")),),
    by_segment={"cold": ("mail",)},
)


def router(fraction: float) -> ContactRouter:
    return ContactRouter(
        segmenter=Segmenter((), "warm"),
        salt="property",
        control_fraction=fraction,
        strata=("country", "segment"),
        rules=ChannelRules(CHANNELS, {"ads", "mail"}),
        gate=ContactGate({"mail"}),
        builders={p: PayloadBuilder(p, RULES, frozenset({IdentifierKind.EMAIL})) for p in ("ads", "mail")},
        default_stage="awareness",
    )


contacts = st.builds(
    lambda cid, email, country, segment, ads_ok, unsub: Contact(
        contact_id=cid,
        identifiers={
            k: v for k, v in ((IdentifierKind.EMAIL, email), (IdentifierKind.COUNTRY, country)) if v
        },
        attributes=Attributes(
            segment=segment, consent=Consent(ad_user_data=ads_ok), email_unsubscribed=unsub
        ),
    ),
    st.text(min_size=1, max_size=12),
    st.one_of(st.none(), st.emails()),
    st.sampled_from([None, "US", "GB", "FR", "DE"]),
    st.sampled_from([None, "cold", "warm"]),
    st.sampled_from([None, True, False]),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(contacts, max_size=40), st.floats(min_value=0.05, max_value=0.95))
def test_no_control_contact_ever_gets_a_member(batch, fraction):
    r = router(fraction)
    for contact in batch:
        routed = r.route(contact)
        if routed.group is Group.CONTROL:
            assert routed.members == {}
            assert routed.outcome is Outcome.HELD_OUT
        else:
            assert routed.outcome is not Outcome.HELD_OUT
            assert (routed.outcome is Outcome.ACTIVATED) == bool(routed.members)
        assert set(routed.members) <= set(routed.offered)
        if contact.attributes.segment == "cold":
            assert "ads" not in routed.offered


@settings(max_examples=200, deadline=None)
@given(contacts)
def test_routing_is_deterministic(contact):
    first, second = router(0.5).route(contact), router(0.5).route(contact)
    assert (first.group, first.offered, first.reachable, first.outcome) == (
        second.group, second.offered, second.reachable, second.outcome
    )
    assert {p: m.fields for p, m in first.members.items()} == {p: m.fields for p, m in second.members.items()}


def test_suppressed_by_consent_is_counted_as_suppressed():
    contact = Contact(
        contact_id="x",
        identifiers={IdentifierKind.EMAIL: "a@b.co", IdentifierKind.COUNTRY: "US"},
        attributes=Attributes(consent=Consent(ad_user_data=False), email_unsubscribed=True),
    )
    r = router(0.0001)
    routed = r.route(contact)
    assert routed.group is Group.TEST
    assert routed.outcome is Outcome.SUPPRESSED
    assert set(routed.suppressed) == {"ads", "mail"}
