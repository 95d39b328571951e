"""Meta custom audiences pass the connector contract kit."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member
from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body


class FacebookContract(ConnectorContract):
    """Declarations and state adapters, shared with the kit's own tests (which break this connector on purpose)."""

    connector = FacebookConnector
    account = FacebookAccount(ad_account_id="act_1234567890")
    credentials = FacebookCredentials(access_token=SecretStr("EAAGcontractTOKEN0123456789abcdef"))
    rejections_are_sampled = True  # Meta returns `invalid_entry_samples`, a handful of rows, never all of them
    finds_audience_without_ref = True  # the ad account's audiences are listed and the marker read in `description`
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.PHONE, raw="+1 (415) 555-0123", normalized="14155550123",
                         note="Meta: digits with country code, no +"),
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw="Mary-Ann", normalized="maryann"),
        IdentifierVector(kind=IdentifierKind.STATE, raw="California", normalized="ca", note="US: 2-letter code"),
        IdentifierVector(kind=IdentifierKind.ZIP, raw="94103-1234", normalized="94103", note="US: first 5 digits"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="US", normalized="us"),
        IdentifierVector(kind=IdentifierKind.MAID, raw="6D92078A-8246-4BA4-AE5B-76104861E7DC",
                         normalized="6d92078a-8246-4ba4-ae5b-76104861e7dc"),
        IdentifierVector(kind=IdentifierKind.MAID, raw="6D92078A82464BA4AE5B76104861E7DC",
                         normalized="6d92078a-8246-4ba4-ae5b-76104861e7dc", note="MADID: hyphens restored"),
        IdentifierVector(kind=IdentifierKind.GENDER, raw="Female", normalized="f", note="GEN: m or f"),
        IdentifierVector(kind=IdentifierKind.DATE_OF_BIRTH, raw="1985-07-04", normalized="1985", note="DOBY"),
        IdentifierVector(kind=IdentifierKind.DATE_OF_BIRTH, raw="03/04/1985", normalized=None,
                         note="day/month or month/day: ambiguous"),
        IdentifierVector(kind=IdentifierKind.ZIP, raw="02134-1234", normalized="02134", country=None,
                         note="ZIP+4 cut whatever the country"),
        IdentifierVector(kind=IdentifierKind.EXTERNAL_ID, raw=" crm-1 ", normalized="crm-1"),
    )

    def member_keys(self, member: Member) -> set[Any]:
        return {tuple(sorted((key, value) for key, value in member.fields.items() if value))}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if not entry["path"].endswith(("/users", "/usersreplace")):
            return None
        return len(loads_body(entry)["payload"]["data"])


class TestFacebookContract(FacebookContract):
    entry_point = "facebook"
