"""The example connector of docs/writing-a-connector.md (examples/acme) passes the whole contract kit.

The example ships as source, not as an installed package, so this module puts `examples/` on the import path.
If the kit, the SDK or the docs' example drift apart, this test says so.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member, member_key
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import acme
from acme.connector import AcmeAccount, AcmeConnector, AcmeCredentials


class TestAcmeContract(ConnectorContract):
    connector = AcmeConnector
    account = AcmeAccount(advertiser_id="4242")
    credentials = AcmeCredentials(
        client_id=SecretStr("acme-client-0123456789"),
        client_secret=SecretStr("acme-secret-0123456789"),
        refresh_token=SecretStr("acme-refresh-0123456789"),
    )
    finds_audience_without_ref = True  # the lookup by external id
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.PHONE, raw="+1 (415) 555-0123", normalized="+14155550123"),
    )

    def member_keys(self, member: Member) -> set[Any]:
        return {member_key({key: value for key, value in member.fields.items() if value})}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        return len(loads_body(entry)["members"]) if "/members:" in entry["path"] else None


def test_the_example_package_registers_its_connector() -> None:
    """What an `acme = "acme"` entry point would load: the package's hook registers the example connector."""
    manager = make_plugin_manager(extra_plugins=[acme], load_entry_points=False)
    assert collect_connectors(manager) == {"acme": AcmeConnector}
