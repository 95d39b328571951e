"""DV360 Customer Match passes the connector contract kit."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member, member_key
from crm_activation.connectors.dv360 import Dv360Account, Dv360Connector, Dv360Credentials
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body

_ADDRESS = ("hashedFirstName", "hashedLastName", "zipCodes", "countryCode")
_LISTS = {"hashedEmails", "hashedPhoneNumbers", "zipCodes"}


class Dv360Contract(ConnectorContract):
    """Declarations and state adapters for DV360 (a member is its ContactInfo, as `member_key` spells it)."""

    connector = Dv360Connector
    account = Dv360Account(advertiser_id="4455667788")
    credentials = Dv360Credentials(
        client_id=SecretStr("1234567890-contract.apps.googleusercontent.com"),
        client_secret=SecretStr("GOCSPX-contract-client-secret-0123"),
        refresh_token=SecretStr("1//0contract-refresh-token-abcdefghijkl"),
    )
    # Google accepts or refuses an edit request as a whole and names no member, so the sandbox ignores
    # `partial_reject_rate` and the kit checks that nothing is refused record by record.
    reports_record_rejections = False
    # The advertiser's audiences are listed and the campaign's marker read in each one's `description`.
    finds_audience_without_ref = True
    # Google matches addresses on the postal code as the country writes it, unhashed (ContactInfo.zipCodes).
    clear_personal_kinds = frozenset({IdentifierKind.ZIP})
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.PHONE, raw="+1 (415) 555-0123", normalized="+14155550123",
                         note="Google: E.164 with the +"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="020 7946 0958", normalized="+442079460958", country="GB",
                         note="national format, country from the contact"),
        IdentifierVector(kind=IdentifierKind.EMAIL, raw="Cloudy.SanFrancisco+shopping@gmail.com",
                         normalized="cloudysanfrancisco@gmail.com", note="Google's Gmail rule, as Data Manager"),
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw=" Mary Ann ", normalized="maryann"),
        IdentifierVector(kind=IdentifierKind.ZIP, raw="94103-1234", normalized="94103"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="gb", normalized="GB"),
    )

    def member_keys(self, member: Member) -> set[Any]:
        """The ContactInfo Google keeps, built from the payload fields independently of the connector's code."""
        fields = member.fields
        keep = [name for name in ("hashedEmails", "hashedPhoneNumbers") if fields.get(name)]
        if all(fields.get(name) for name in _ADDRESS):
            keep += _ADDRESS
        info = {name: [fields[name]] if name in _LISTS else fields[name] for name in keep}
        return {member_key(info)}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if not entry["path"].endswith(":editCustomerMatchMembers"):
            return None
        body = loads_body(entry)
        edit = body.get("addedContactInfoList") or body.get("removedContactInfoList") or {}
        return len(edit.get("contactInfos", []))


class TestDv360Contract(Dv360Contract):
    entry_point = "dv360"
