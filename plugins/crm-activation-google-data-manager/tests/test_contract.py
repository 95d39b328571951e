"""The connector contract kit (`crm_activation.testing`), run against this plugin's sandbox."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from pydantic import SecretStr

from crm_activation import AudienceRef, IdentifierKind, Member, RetryPolicy, SandboxApp
from crm_activation.testing import ConnectorContract, IdentifierVector, loads_body
from crm_activation_google_data_manager import (
    GoogleDataManagerAccount,
    GoogleDataManagerConnector,
    GoogleDataManagerCredentials,
)


class TestGoogleDataManagerContract(ConnectorContract):
    connector = GoogleDataManagerConnector
    account = GoogleDataManagerAccount(account_id="1234567890", customer_match_terms_accepted=True)
    credentials = GoogleDataManagerCredentials(
        client_id=SecretStr("kit-client.apps.googleusercontent.com"),
        client_secret=SecretStr("GOCSPX-kit-client-secret-0001"),
        refresh_token=SecretStr("1//0kit-refresh-token-zyxwvutsrq"),
    )
    entry_point = "google_data_manager"
    # A full 10,000-member request takes ~0.3 s to validate, apply and log in the sandbox; the kit's 0.3 s read
    # timeout would turn a busy machine into retries (the kit lowers it itself for its timeout scenarios).
    policy = RetryPolicy(max_attempts=12, initial_wait=0.001, max_wait=0.01, connect_timeout=2.0, read_timeout=5.0)
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
                         normalized="jdoe+ads@googlemail.com", note="googlemail.com too; +tags are kept"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="(800)555-0100", normalized="+18005550100",
                         note="Google's own example: E.164 with the plus sign"),
        IdentifierVector(kind=IdentifierKind.PHONE, raw="020 7946 0018", country="GB", normalized="+442079460018"),
        IdentifierVector(kind=IdentifierKind.FIRST_NAME, raw=" Mary Ann ", normalized="maryann",
                         note="Google's formatter trims and lowercases; its hashing drops inner whitespace"),
        IdentifierVector(kind=IdentifierKind.ZIP, raw="SW1A 1AA", country="GB", normalized="SW1A 1AA"),
        IdentifierVector(kind=IdentifierKind.COUNTRY, raw="gb", normalized="GB"),
    )

    def sandbox_audiences(self, app: SandboxApp) -> set[str]:
        accounts = app.state()["accounts"].values()
        return {list_id for lists in accounts for list_id, found in lists.items() if not found["deleted"]}

    def sandbox_members(self, app: SandboxApp, audience: AudienceRef) -> set[Hashable]:
        found = [lists[audience.remote_id] for lists in app.state()["accounts"].values() if audience.remote_id in lists]
        rows = [row for user_list in found for row in user_list["member_rows"]]
        return {next(i["emailAddress"] for i in row if "emailAddress" in i) for row in rows}

    def member_keys(self, member: Member) -> set[Hashable]:
        return {member.fields["emailAddress"]}

    def records_in_request(self, entry: dict[str, Any]) -> int | None:
        if not entry["path"].endswith(("audienceMembers:ingest", "audienceMembers:remove")):
            return None
        return len(loads_body(entry)["audienceMembers"])
