from crm_activation.campaign.schema import Condition, SegmentRule
from crm_activation.pipeline.segmentation import Segmenter, condition_holds
from crm_activation.sdk.contact import Attributes, Contact

RULES = (
    SegmentRule(name="high", when=(Condition(field="score", op=">=", value=0.7),)),
    SegmentRule(
        name="lapsed_hirer",
        when=(
            Condition(field="lifecycle_stage", op="in", value=["inactive", "lapsing"]),
            Condition(field="hires", op=">", value=0),
        ),
    ),
    SegmentRule(name="rest"),
)


def contact(**attributes) -> Contact:
    return Contact(contact_id="c1", attributes=Attributes(**attributes))


def test_first_matching_rule_wins_and_catch_all_applies():
    segmenter = Segmenter(RULES, "none")
    assert segmenter.segment_of(contact(extra={"score": "0.91"})) == "high"
    assert segmenter.segment_of(contact(lifecycle_stage="Lapsing", history={"hires": 3})) == "lapsed_hirer"
    assert segmenter.segment_of(contact(lifecycle_stage="active", history={"hires": 3})) == "rest"


def test_crm_segment_is_kept():
    assert Segmenter(RULES, "none").segment_of(contact(segment="vip", extra={"score": 0.99})) == "vip"


def test_default_when_nothing_matches():
    assert Segmenter(RULES[:1], "unsegmented").segment_of(contact(extra={"score": 0.1})) == "unsegmented"


def test_missing_or_non_numeric_values_never_pass_thresholds():
    rule = Condition(field="score", op="<", value=0.5)
    assert not condition_holds(rule, Attributes())
    assert not condition_holds(rule, Attributes(extra={"score": "n/a"}))
    assert condition_holds(rule, Attributes(extra={"score": "0.2"}))


def test_contains_and_emptiness():
    attrs = Attributes(preferred_categories=("Web Development", "Design"))
    assert condition_holds(Condition(field="preferred_categories", op="contains", value="design"), attrs)
    assert condition_holds(Condition(field="funnel_stage", op="is empty"), attrs)
    assert not condition_holds(Condition(field="preferred_categories", op="is empty"), attrs)


def segmented(segmenter: Segmenter, *contacts: Contact) -> list[str]:
    return [segmenter.apply(c).attributes.segment or "" for c in contacts]


def test_a_crm_segment_the_campaign_never_names_is_a_warning():
    segmenter = Segmenter(RULES, "none", restricted=("high", "vip"))
    crm = [contact(segment="vip"), contact(segment="VIP"), contact(segment="VIP"), contact(segment="gold")]
    assert segmented(segmenter, *crm, contact(extra={"score": 0.9})) == ["vip", "VIP", "VIP", "gold", "high"]
    assert segmenter.warnings() == [
        "segment 'VIP' from the CRM (2 contacts) is not a segment the campaign names (segments, default_segment, "
        "channels.by_segment): no segment rule applies to it (did you mean 'vip'? segment names are compared "
        "exactly)",
        "segment 'gold' from the CRM (1 contact) is not a segment the campaign names (segments, default_segment, "
        "channels.by_segment): no segment rule applies to it",
    ]


def test_a_by_segment_key_no_contact_is_in_is_a_warning():
    segmenter = Segmenter(RULES, "none", restricted=("rest", "lapsed_hirer", "Gold"))
    segmented(segmenter, contact(), contact(segment="gold"))  # "rest" (catch-all) and an unknown CRM value
    warnings = segmenter.warnings()
    assert warnings[1:] == [
        "channels.by_segment names segment 'lapsed_hirer', which no contact is in: its restriction never applied",
        "channels.by_segment names segment 'Gold', which no contact is in: its restriction never applied "
        "(did you mean 'gold'? segment names are compared exactly)",
    ]
    assert warnings[0].startswith("segment 'gold' from the CRM (1 contact)")


def test_segments_named_by_the_campaign_give_no_warning_and_an_empty_run_none_at_all():
    segmenter = Segmenter(RULES, "none", restricted=("high",))
    assert segmenter.warnings() == []  # nothing segmented: no rule can be said to be wrong
    segmented(segmenter, contact(segment="rest"), contact(segment="none"), contact(extra={"score": 0.8}))
    assert segmenter.warnings() == []


def test_unknown_segment_values_are_remembered_up_to_a_bound_and_the_rest_counted():
    from crm_activation.pipeline.segmentation import MAX_UNKNOWN_SEGMENTS, SHOWN_UNKNOWN_SEGMENTS

    segmenter = Segmenter(RULES, "none")
    extra = 25
    for i in range(MAX_UNKNOWN_SEGMENTS + extra):
        segmenter.apply(contact(segment=f"free text {i}"))
    segmenter.apply(contact(segment="free text 0"))
    assert len(segmenter.counts) == MAX_UNKNOWN_SEGMENTS and segmenter.unremembered == extra
    warnings = segmenter.warnings()
    assert len(warnings) == SHOWN_UNKNOWN_SEGMENTS + 1
    assert warnings[0].startswith("segment 'free text 0' from the CRM (2 contacts)")  # the most common first
    more = MAX_UNKNOWN_SEGMENTS - SHOWN_UNKNOWN_SEGMENTS
    contacts = MAX_UNKNOWN_SEGMENTS - SHOWN_UNKNOWN_SEGMENTS + extra
    assert warnings[-1] == (
        f"{more}+ more segment values from the CRM that the campaign does not name ({contacts} contacts)"
    )
