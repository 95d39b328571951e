"""Amazon DSP advertiser audiences pass the connector contract kit."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member
from crm_activation.connectors.amazon_dsp import (
    AmazonDspAccount,
    AmazonDspConnector,
    AmazonDspCredentials,
)
from crm_activation.connectors.amazon_dsp.settings import external_user_id
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body


class AmazonDspContract(ConnectorContract):
    """Declarations and state adapters for Amazon (a member is its `externalUserId`, derived from the CRM id)."""

    connector = AmazonDspConnector
    account = AmazonDspAccount(advertiser_id="5830184726450123")
    credentials = AmazonDspCredentials(
        client_id=SecretStr("amzn1.application-oa2-client.contract0123456789abcdef"),
        client_secret=SecretStr("amzn1.oa2-cs.v1.contractSECRET0123456789abcdef"),
        refresh_token=SecretStr("Atzr|IwEBIcontractREFRESH0123456789abcdef"),
    )
    # The kit's contacts are US contacts with consent granted; UK/EEA records without consent are refused by
    # the connector before sending, which tests/connectors/test_amazon_dsp.py covers.
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.EMAIL, raw="Jane_Doe+ads@Example.com", normalized="janedoeads@example.com",
                         note="Amazon keeps only a-z 0-9 . @ -"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="+1 (415) 555-0123", normalized="14155550123"),
        IdentifierVector(kind=IdentifierKind.CITY, raw="São Paulo", normalized="saopaulo", country="BR"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="uk", normalized="GB"),
    )

    def member_keys(self, member: Member) -> set[Any]:
        return {external_user_id(self.account.advertiser_id, member.contact_id)}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if entry["method"] != "POST" or entry["path"] != "/amc/audiences/records":
            return None
        return len(loads_body(entry)["records"])


class TestAmazonDspContract(AmazonDspContract):
    entry_point = "amazon_dsp"
