"""`AudienceSpec.marker`: the campaign's proof of ownership every connector writes on, and looks up from, a platform."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crm_activation import AudienceSpec
from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.platform_sync import audience_specs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"


def test_the_marker_is_short_plain_and_derived_from_campaign_and_key() -> None:
    spec = AudienceSpec(key="winback/awareness", name="Awareness", campaign="winback")
    assert re.fullmatch(r"crm-activation-[0-9a-f]{32}", spec.marker)
    assert len(spec.marker) <= 50  # Xandr's segment codes take 50 characters
    assert spec.marker == AudienceSpec(key="winback/awareness", name="Renamed", campaign="winback").marker
    assert spec.marker != spec.model_copy(update={"campaign": "winback-2"}).marker
    assert spec.marker != spec.model_copy(update={"key": "winback/conversion"}).marker


def test_a_description_carries_the_marker_and_is_cut_never_the_marker() -> None:
    spec = AudienceSpec(key="k", name="n", campaign="c", description="CRM push ")
    assert spec.described_with_marker() == f"CRM push ({spec.marker})"
    assert spec.model_copy(update={"description": ""}).described_with_marker() == spec.marker
    long = spec.model_copy(update={"description": "x" * 2000})
    cut = long.described_with_marker(1000)
    assert len(cut) == 1000 and cut.endswith(f"({spec.marker})") and long.is_marked(cut)
    with pytest.raises(ValueError, match="cannot hold"):
        spec.described_with_marker(20)
    assert spec.is_marked(f"anything ({spec.marker})") and not spec.is_marked(None)
    assert not spec.is_marked(spec.model_copy(update={"campaign": "other"}).described_with_marker())


def test_the_engines_specs_of_two_campaigns_with_the_same_names_have_different_markers() -> None:
    campaign = load_campaign(EXAMPLE).campaign
    other = campaign.model_copy(update={"campaign": "winback-copy"})
    first, second = audience_specs(campaign, "facebook"), audience_specs(other, "facebook")
    for stage in first:
        assert first[stage].name == second[stage].name  # the names the campaign file gives, alike
        assert first[stage].campaign == campaign.campaign and second[stage].campaign == "winback-copy"
        assert first[stage].marker != second[stage].marker
    assert len({spec.marker for spec in first.values()}) == len(first)
