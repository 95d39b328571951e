"""The holdout invariant, checked through the real engine: campaign file, CSV, credentials from the environment.

The engine is what keeps control contacts away from platforms, but a connector can still break the promise
(caching members across calls, seeding audiences, mixing up audiences), so the kit runs a small campaign end to
end against the connector's sandbox and inspects every request the sandbox received. A second run with the same
state must send no membership change, which also proves `ensure_audience` finds its audiences again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import SecretStr, ValidationError

from ..campaign.credentials import default_env_name
from ..campaign.loader import load_campaign
from ..pipeline.engine import Engine, RunOptions
from ..pipeline.holdout import Group, assign_group
from ..pipeline.payload import NormalizationCache
from ..sdk.connector import Connector
from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.plugins import hookimpl, make_plugin_manager
from ..sdk.summary import RunSummary
from ..sdk.types import AccountConfig, AudienceRef
from .harness import SandboxHarness, on_wire

if TYPE_CHECKING:
    from .declaration import ContractDeclaration

CAMPAIGN_ID = "contract-kit"
STAGES = ("awareness", "conversion")
_CONSENT = {True: "yes", False: "no", None: ""}


class _Registration:
    """A plugin registering just the connector under test, so the run does not depend on what else is installed."""

    def __init__(self, cls: type[Connector]) -> None:
        self.cls = cls

    @hookimpl
    def register_connectors(self) -> list[type[Connector]]:
        """The connector under test."""
        return [self.cls]


def write_campaign(
    contract: ContractDeclaration,
    folder: Path,
    contacts: list[Contact],
    campaign_id: str = CAMPAIGN_ID,
    audience_names: Mapping[str, str] | None = None,
) -> Path:
    """A campaign file (JSON is YAML) and its contacts CSV, one platform, two funnel stages, a 50 % holdout.

    `audience_names` names the platform's audience of each stage (the engine's defaults contain the campaign id,
    and the ownership check needs two campaigns whose audiences are named alike).
    """
    slug = contract.connector.platform
    kinds = [kind.value for kind in IdentifierKind]
    columns = ["contact_id", *kinds, "funnel_stage", "consent_ad_user_data", "consent_ad_personalization"]
    with (folder / "contacts.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        for number, contact in enumerate(contacts):
            consent = contact.attributes.consent
            row = {kind.value: value for kind, value in contact.identifiers.items()}
            writer.writerow(row | {
                "contact_id": contact.contact_id,
                "funnel_stage": contact.attributes.funnel_stage or STAGES[number % len(STAGES)],
                "consent_ad_user_data": _CONSENT[consent.ad_user_data],
                "consent_ad_personalization": _CONSENT[consent.ad_personalization],
            })
    account = minimal_settings(contract.account)
    platform: dict[str, Any] = {"account": account}
    if audience_names:
        platform["audiences"] = {stage: {"name": name} for stage, name in audience_names.items()}
    campaign = {
        "campaign": campaign_id,
        "audience": {"source": {"type": "csv", "path": "contacts.csv"}},
        "holdout": {"fraction": 0.5},
        "channels": {"default": [slug]},
        "funnel": {"stages": list(STAGES)},
        "platforms": {slug: platform},
        "state": {"path": "state.sqlite"},
        "http": contract.policy.model_dump(),
    }
    path = folder / "campaign.yaml"
    path.write_text(json.dumps(campaign, indent=2), encoding="utf-8")
    return path


def minimal_settings(account: AccountConfig) -> dict[str, Any]:
    """The fewest account settings that validate back to `account`, as a person would write them.

    Fields a validator derives (Amazon's token URL from the region) are left out: the campaign file refuses
    keys that look like secrets (`token_url`), and a derived value would be derived again anyway.
    """
    data = account.model_dump(mode="json", exclude_unset=True)
    for key in list(data):
        trial = {name: value for name, value in data.items() if name != key}
        try:
            if type(account).model_validate(trial) == account:
                data = trial
        except ValidationError:
            continue
    return data


def set_credentials_env(contract: ContractDeclaration, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each credential field in its default variable, as `load_credentials` reads them."""
    slug = contract.connector.platform
    for name, value in contract.credentials:
        variable = default_env_name(slug, name)
        if value is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, value.get_secret_value() if isinstance(value, SecretStr) else str(value))


def run_engine(contract: ContractDeclaration, harness: SandboxHarness, campaign: Path) -> RunSummary:
    """Run the campaign file through the real engine against the harness's sandbox; fail unless it succeeded."""
    slug = contract.connector.platform
    options = RunOptions(base_urls={slug: harness.server.url}, sleep=harness.sleep)
    manager = make_plugin_manager([_Registration(contract.connector)], load_entry_points=False)
    summary = Engine(load_campaign(campaign), options, plugin_manager=manager).run()
    failure = summary.platforms[slug].error if slug in summary.platforms else summary.error
    assert summary.status == "succeeded", f"the engine's run failed on {slug}: {failure}"
    return summary


def check_holdout_invariant(contract: ContractDeclaration, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No control contact's identifiers in any request; the test group in the sandbox; a rerun changes nothing."""
    contacts = [contract.make_contact(i) for i in range(contract.holdout_contacts)]
    campaign = write_campaign(contract, tmp, contacts)
    set_credentials_env(contract, monkeypatch)
    control = {c.contact_id for c in contacts if assign_group(CAMPAIGN_ID, c.contact_id, 0.5) is Group.CONTROL}
    assert 0 < len(control) < len(contacts), "the kit's holdout split left one group empty: use more contacts"
    held_out = [contact for contact in contacts if contact.contact_id in control]
    with SandboxHarness(contract) as harness:
        first = run_engine(contract, harness, campaign)
        assert first.outcomes["held_out"] == len(control), (
            f"the engine held out {first.outcomes['held_out']} contacts, the kit's holdout oracle {len(control)}"
        )
        _assert_no_control_on_the_wire(contract, held_out, harness.requests_text())
        audiences = contract.sandbox_audiences(harness.app)
        assert len(audiences) == len(STAGES), f"a campaign with {len(STAGES)} stages left audiences {audiences}"
        pushed = _members_in(contract, harness)
        members = {m.contact_id: m for m in contract.members(range(contract.holdout_contacts))}
        test_keys = contract.keys_of(m for cid, m in members.items() if cid not in control)
        control_keys = contract.keys_of(m for cid, m in members.items() if cid in control)
        assert not pushed & control_keys, "control-group members are in the sandbox's audiences"
        assert pushed == test_keys, f"the sandbox holds {len(pushed)} members, the test group has {len(test_keys)}"
        seen = len(harness.app.requests)
        second = run_engine(contract, harness, campaign)
        platform = second.platforms[contract.connector.platform]
        changes = {stage: (c.added, c.removed) for stage, c in platform.stages.items() if c.added or c.removed}
        assert not changes, f"a rerun with nothing changed pushed membership changes (added, removed): {changes}"
        assert platform.batches == 0, f"a rerun with nothing changed sent {platform.batches} batches"
        assert _members_in(contract, harness) == pushed, "the rerun changed the sandbox's membership"
        _assert_no_control_on_the_wire(contract, held_out, harness.requests_text(seen))


def _assert_no_control_on_the_wire(contract: ContractDeclaration, control: list[Contact], wire: str) -> None:
    """No match-key value (as sent or as in the CRM) or contact id of a control contact in the requests."""
    builder, cache = contract.builder(), NormalizationCache()
    leaks = []
    for contact in control:
        outcome = builder.build(contact, cache)
        fields = outcome.member.fields if outcome.member else {}
        values = [v for k, v in fields.items() if k in builder.match_fields]
        values += [v.strip() for k, v in contact.identifiers.items() if k in contract.connector.match_keys]
        if any(len(v) >= 4 and on_wire(v, wire) for v in [*values, contact.contact_id]):
            leaks.append(contact.contact_id)
    assert not leaks, f"control-group contacts reached the sandbox: {sorted(leaks)[:10]}"


def _members_in(contract: ContractDeclaration, harness: SandboxHarness) -> set[Hashable]:
    """Every member of every audience in the sandbox."""
    found: set[Hashable] = set()
    for remote_id in contract.sandbox_audiences(harness.app):
        found |= contract.sandbox_members(harness.app, AudienceRef(key="", remote_id=remote_id))
    return found
