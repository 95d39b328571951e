"""LinkedIn DMP segments pass the connector contract kit."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member
from crm_activation.connectors.linkedin import LinkedInAccount, LinkedInConnector, LinkedInCredentials
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body


class LinkedInContract(ConnectorContract):
    """Declarations and state adapters for LinkedIn (a segment's member is keyed by its sorted userIds)."""

    connector = LinkedInConnector
    # `source_platform` is the enum LinkedIn assigns each partner; without it no segment can be created.
    account = LinkedInAccount(ad_account_id="urn:li:sponsoredAccount:507404993", source_platform="CRM_ACTIVATION")
    credentials = LinkedInCredentials(
        access_token=SecretStr("AQXcontractACCESStoken0123456789abcdef"),
        refresh_token=SecretStr("AQWcontractREFRESHtoken9876543210fedcba"),
        client_id="86contractclient",
        client_secret=SecretStr("contract-client-secret-0123456789"),
    )
    # The segment finder looks segments up by `sourceSegmentId`, the campaign's marker: a lost state finds them again.
    finds_audience_without_ref = True
    # LinkedIn's users schema takes firstName/lastName unhashed (LinkedIn does the matching on profile names).
    clear_personal_kinds = frozenset({IdentifierKind.FIRST_NAME, IdentifierKind.LAST_NAME})
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw="  José  O'Neil ", normalized="José O'Neil",
                         note="names in clear, as the member spells them"),
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw="A" * 36, normalized=None, note="over 35 characters"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="gb", normalized="GB"),
    )

    def member_keys(self, member: Member) -> set[Any]:
        names = {"SHA256_EMAIL": "SHA256_EMAIL", "MAID": str(self.account.maid_id_type)}
        return {tuple(sorted((names[key], value) for key, value in member.fields.items() if key in names))}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if entry["method"] != "POST" or not entry["path"].endswith("/users"):
            return None
        return len(loads_body(entry)["elements"])


class TestLinkedInContract(LinkedInContract):
    entry_point = "linkedin"
