"""Audience ownership, checked through the real engine: campaigns that name their audiences alike never share one.

A connector may take an existing platform audience for its own only when it provably belongs to the campaign: the
id the state database recorded, or the campaign's marker (`AudienceSpec.marker`) where the platform keeps one.
Adopting by display name would let two campaigns with the same audience names push into, and remove from, each
other's audiences, and a lost state database could take over anybody's audience of that name. So the kit runs two
campaigns whose audiences share their names against one sandbox, then reruns one of them with a fresh state
database (it must find its own audiences again where the platform can look them up, and in any case never the
other campaign's), then deletes one of its audiences on the platform (the next run must create a new one).
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..pipeline.holdout import Group, assign_group
from ..pipeline.platform_sync import audience_key
from ..sdk.types import AudienceRef
from ..state.store import StateStore
from .engine_checks import STAGES, run_engine, set_credentials_env, write_campaign
from .harness import SandboxHarness

if TYPE_CHECKING:
    from .declaration import ContractDeclaration

#: The two campaigns: different ids, the same audience names.
CAMPAIGNS = ("kit-owner-spring", "kit-owner-autumn")
SHARED_NAMES = {stage: f"Contract kit {stage}" for stage in STAGES}
#: Contact indexes of the second campaign start here, so the campaigns' members differ.
_SECOND_CAMPAIGN_START = 500


class _Campaign:
    """One of the check's campaigns: its file, its contacts, and what each of its audiences must hold."""

    def __init__(self, contract: ContractDeclaration, folder: Path, campaign_id: str, first_index: int) -> None:
        self.id = campaign_id
        self.folder = folder
        self.indexes = range(first_index, first_index + contract.holdout_contacts)
        contacts = [contract.make_contact(i) for i in self.indexes]
        folder.mkdir(parents=True)
        self.path = write_campaign(contract, folder, contacts, campaign_id, SHARED_NAMES)
        members = {m.contact_id: m for m in contract.members(self.indexes)}
        self.expected: dict[str, set[Hashable]] = {}
        for stage in STAGES:
            staged = [
                members[c.contact_id]
                for number, c in enumerate(contacts)
                if (c.attributes.funnel_stage or STAGES[number % len(STAGES)]) == stage
                and assign_group(campaign_id, c.contact_id, 0.5) is Group.TEST
            ]
            self.expected[stage] = contract.keys_of(staged)

    def refs(self, slug: str, state: Path | None = None) -> dict[str, AudienceRef]:
        """The audiences the campaign's state database recorded, by stage."""
        store = StateStore(state or self.folder / "state.sqlite")
        try:
            found = {stage: store.audience(slug, audience_key(self.id, stage)) for stage in STAGES}
        finally:
            store.close()
        missing = [stage for stage, ref in found.items() if ref is None]
        assert not missing, f"campaign {self.id}: the engine recorded no audience for stages {missing}"
        return {stage: ref for stage, ref in found.items() if ref is not None}

    def fresh_state(self) -> Path:
        """The campaign file again, pointing at an empty state database: as if the old one were lost."""
        fresh = self.folder / "fresh"
        fresh.mkdir(exist_ok=True)
        text = self.path.read_text(encoding="utf-8")
        copy = fresh / self.path.name
        copy.write_text(text.replace('"contacts.csv"', '"../contacts.csv"'), encoding="utf-8")
        return copy


def _assert_members(
    contract: ContractDeclaration, harness: SandboxHarness, campaign: _Campaign, refs: dict[str, AudienceRef], when: str
) -> None:
    """Each of the campaign's audiences holds exactly its own stage's test group."""
    for stage, ref in refs.items():
        got = contract.sandbox_members(harness.app, ref)
        want = campaign.expected[stage]
        strangers = len(got - want)
        assert got == want, (
            f"{when}: campaign {campaign.id}'s {stage} audience {ref.remote_id} holds {len(got)} members, "
            f"{len(want)} expected ({len(want - got)} missing, {strangers} not its own)"
        )


def check_audience_ownership(contract: ContractDeclaration, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same names, two campaigns: separate audiences with their own members; a lost state finds only its own."""
    slug = contract.connector.platform
    set_credentials_env(contract, monkeypatch)
    spring = _Campaign(contract, tmp / CAMPAIGNS[0], CAMPAIGNS[0], 0)
    autumn = _Campaign(contract, tmp / CAMPAIGNS[1], CAMPAIGNS[1], _SECOND_CAMPAIGN_START)
    with SandboxHarness(contract) as harness:
        for campaign in (spring, autumn):
            run_engine(contract, harness, campaign.path)
        springs, autumns = spring.refs(slug), autumn.refs(slug)
        spring_ids = {ref.remote_id for ref in springs.values()}
        autumn_ids = {ref.remote_id for ref in autumns.values()}
        shared = sorted(spring_ids & autumn_ids)
        assert not shared, (
            f"two campaigns whose audiences have the same names share remote audiences {shared}: an audience was "
            "adopted for its name (only the recorded id or the campaign's marker may prove it is the campaign's)"
        )
        assert len(spring_ids | autumn_ids) == 2 * len(STAGES), "a campaign's stages share one remote audience"
        existing = contract.sandbox_audiences(harness.app)
        assert existing == spring_ids | autumn_ids, f"two campaigns left audiences {sorted(existing)} in the sandbox"
        _assert_members(contract, harness, spring, springs, "after both campaigns ran")
        _assert_members(contract, harness, autumn, autumns, "after both campaigns ran")

        # The second campaign's state database is lost: it runs again with an empty one.
        fresh = autumn.fresh_state()
        run_engine(contract, harness, fresh)
        found = autumn.refs(slug, fresh.parent / "state.sqlite")
        found_ids = {ref.remote_id for ref in found.values()}
        taken = sorted(found_ids & spring_ids)
        assert not taken, f"campaign {autumn.id}, its state lost, took the other campaign's audiences {taken}"
        if contract.finds_audience_without_ref:
            assert found == autumns, (
                f"campaign {autumn.id}, its state lost, did not find its own audiences by its marker: it now uses "
                f"{sorted(found_ids)} instead of {sorted(autumn_ids)} (finds_audience_without_ref is declared)"
            )
            existing = contract.sandbox_audiences(harness.app)
            assert existing == spring_ids | autumn_ids, f"a rerun with a lost state left audiences {sorted(existing)}"
        _assert_members(contract, harness, spring, springs, f"after {autumn.id} reran with a lost state")
        _assert_members(contract, harness, autumn, found, f"after {autumn.id} reran with a lost state")

        # A person deletes one of its audiences on the platform: the next run makes a new one, never another's.
        gone = found[STAGES[0]]
        harness.app.delete_audience(gone.remote_id)
        run_engine(contract, harness, fresh)
        again = autumn.refs(slug, fresh.parent / "state.sqlite")
        new = again[STAGES[0]].remote_id
        assert new != gone.remote_id and new not in spring_ids, (
            f"campaign {autumn.id}'s deleted {STAGES[0]} audience was replaced by {new}, which is not a new audience"
        )
        assert again[STAGES[1]] == found[STAGES[1]], "deleting one audience moved the campaign's other audience"
        _assert_members(contract, harness, spring, springs, f"after {autumn.id} recreated a deleted audience")
        _assert_members(contract, harness, autumn, again, f"after {autumn.id} recreated a deleted audience")
