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
