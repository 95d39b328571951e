"""A batch sent as the state database holds it makes the same request as the same members sent as `Member`s.

The engine calls `add_staged`/`remove_staged`; a connector without its own (a plugin written against
`add_members`) gets the default, which rebuilds the members; Meta's builds the request from the stored payloads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pydantic import SecretStr

from crm_activation import AudienceRef, BatchResult, Connector, Member, PlatformHttp
from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.redaction import Redactor
from crm_activation.sdk.types import StagedBatch, member_payload

REF = AudienceRef(key="c1/awareness", remote_id="42")
MEMBERS = [
    Member("1", {"EMAIL": "a" * 64, "PHONE": "b" * 64}, "US", {}),
    Member("2", {"EMAIL": "c" * 64, "PHONE": ""}, None, {}),
    Member("3", {"MADID": "6d92078a-8246-4ba4-ae5b-76104861e7dc", "EXTERN_ID": 'x"1'}, "DE", {"ad_user_data": True}),
]


def staged(members: Sequence[Member]) -> StagedBatch:
    return StagedBatch([m.contact_id for m in members], [member_payload(m) for m in members])


def sent_bodies(outbox: Path) -> list[tuple[str, object]]:
    lines = (outbox / "facebook.jsonl").read_text().splitlines()
    return [(entry["method"], entry["body"]) for entry in map(json.loads, lines)]


def facebook(outbox: Path) -> FacebookConnector:
    http = PlatformHttp(platform="facebook", base_url="https://graph.example", outbox=Outbox(outbox, Redactor()))
    creds = FacebookCredentials(access_token=SecretStr("EAAGsandboxTOKEN0123456789abcdef"))
    return FacebookConnector(FacebookAccount(ad_account_id="1234567890"), creds, http)


def test_meta_builds_the_same_request_from_stored_payloads(tmp_path: Path) -> None:
    by_member, by_payload = tmp_path / "members", tmp_path / "staged"
    for members in (MEMBERS, MEMBERS[:1], MEMBERS[1:2]):
        assert facebook(by_member).add_members(REF, members) == facebook(by_payload).add_staged(REF, staged(members))
        facebook(by_member).remove_members(REF, members)
        facebook(by_payload).remove_staged(REF, staged(members))

    assert sent_bodies(by_payload) == sent_bodies(by_member)
    first = sent_bodies(by_payload)[0][1]
    assert isinstance(first, dict)
    assert first["payload"]["schema"] == ["EMAIL", "PHONE", "MADID", "EXTERN_ID"]  # declaration order
    assert first["payload"]["data"][1] == ["c" * 64, "", "", ""]  # "" where a member lacks a field


class ByMember(Connector):
    """A connector written against `add_members`/`remove_members` only, as a plugin may be."""

    platform = "bymember"
    display_name = "By member"
    max_batch_size = 100
    default_base_url = "https://example.invalid"

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[Member]]] = []

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        self.calls.append(("add", list(members)))
        return BatchResult(received=len(members))

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        self.calls.append(("remove", list(members)))
        return BatchResult(received=len(members))


def test_a_connector_without_a_staged_form_gets_its_members_back_as_staged() -> None:
    connector = ByMember()
    assert connector.add_staged(REF, staged(MEMBERS)) == BatchResult(received=3)
    connector.remove_staged(REF, staged(MEMBERS[2:]))
    assert connector.calls == [("add", MEMBERS), ("remove", MEMBERS[2:])]
