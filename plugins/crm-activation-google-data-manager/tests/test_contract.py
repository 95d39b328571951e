"""The connector contract kit (`crm_activation.testing`), run against this plugin's sandbox."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydantic import SecretStr

from crm_activation import IdentifierKind, Member, member_key
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body
from crm_activation_google_data_manager import (
    GoogleDataManagerAccount,
    GoogleDataManagerConnector,
    GoogleDataManagerCredentials,
)

_ADDRESS = ("givenName", "familyName", "regionCode", "postalCode")


class TestGoogleDataManagerContract(ConnectorContract):
    connector = GoogleDataManagerConnector
    account = GoogleDataManagerAccount(account_id="1234567890", customer_match_terms_accepted=True)
    credentials = GoogleDataManagerCredentials(
        client_id=SecretStr("kit-client.apps.googleusercontent.com"),
        client_secret=SecretStr("GOCSPX-kit-client-secret-0001"),
        refresh_token=SecretStr("1//0kit-refresh-token-zyxwvutsrq"),
    )
    entry_point = "google_data_manager"
    # Google accepts or refuses a request whole; per-record outcomes are later counts, never contacts.
    reports_record_rejections = False
    # User list names are unique per account, and ensure_audience looks the name up before creating.
    finds_audience_without_ref = True
    # "Don't hash region_code"; the postal code is sent in clear too (AddressInfo.postalCode).
    clear_personal_kinds = frozenset({IdentifierKind.ZIP})
    identifier_vectors = (
        IdentifierVector(kind=IdentifierKind.EMAIL, raw="Jane.Doe@GMAIL.com", normalized="janedoe@gmail.com",
                         note="Data Manager formatting: no dots before the @ for gmail.com"),
        IdentifierVector(kind=IdentifierKind.EMAIL, raw="j.doe+ads@googlemail.com",
                         normalized="jdoe@googlemail.com", note="googlemail.com too: +tag gone, domain kept"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="(800)555-0100", normalized="+18005550100",
                         note="Google's own example: E.164 with the plus sign"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="020 7946 0018", country="GB", normalized="+442079460018"),
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw=" Mary Ann ", normalized="maryann",
                         note="Google's formatter trims and lowercases; its hashing drops inner whitespace"),
        IdentifierVector(kind=IdentifierKind.ZIP, raw="SW1A 1AA", country="GB", normalized="SW1A 1AA"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="gb", normalized="GB"),
    )

    def member_keys(self, member: Member) -> set[Hashable]:
        """The UserIdentifiers Google keeps (sorted by kind), built from the fields independently of the plugin."""
        fields = member.fields
        address = [{"address": {k: fields[k] for k in _ADDRESS}}] if all(fields.get(k) for k in _ADDRESS) else []
        return {member_key([*address, *({k: fields[k]} for k in ("emailAddress", "phoneNumber") if fields.get(k))])}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if not entry["path"].endswith(("audienceMembers:ingest", "audienceMembers:remove")):
            return None
        return len(loads_body(entry)["audienceMembers"])
