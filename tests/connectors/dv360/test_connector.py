"""The DV360 connector against its sandbox over real HTTP: OAuth, audiences, consent, limits, faults, dry run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from urllib.parse import parse_qs

import pytest
from pydantic import SecretStr, ValidationError

from crm_activation import (
    Action,
    AudienceRef,
    AudienceSpec,
    ConfigError,
    FatalError,
    FaultPlan,
    HttpResponse,
    IdentifierKind,
    Member,
    PlatformHttp,
    RateLimitedError,
    RetryPolicy,
    SandboxServer,
)
from crm_activation.connectors import dv360
from crm_activation.connectors.dv360 import Dv360Account, Dv360Connector, Dv360Credentials, Dv360Sandbox
from crm_activation.connectors.dv360.settings import MAX_CONTACTS_PER_REQUEST, MAX_MEMBERS_PER_REQUEST
from crm_activation.normalization import sha256_hex
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.oauth import DRY_RUN_TOKEN
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.redaction import Redactor

CLIENT_ID = "1234567890-sandbox.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-sandbox-client-secret-0123"
REFRESH_TOKEN = "1//0sandbox-refresh-token-abcdefghijkl"
ADVERTISER = "4455667788"
ACCOUNT = Dv360Account(advertiser_id=ADVERTISER)
SPEC = AudienceSpec(key="spring-sale/awareness", name="Spring sale - awareness")
GRANTED, UNSPECIFIED = "CONSENT_STATUS_GRANTED", "CONSENT_STATUS_UNSPECIFIED"
NO_CONSENT_CLAIM = {"adUserData": UNSPECIFIED, "adPersonalization": UNSPECIFIED}


class Clock:
    """A monotonic clock the test moves; shared by the sandbox and the connector's authenticator."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def creds() -> Dv360Credentials:
    return Dv360Credentials(
        client_id=SecretStr(CLIENT_ID), client_secret=SecretStr(CLIENT_SECRET), refresh_token=SecretStr(REFRESH_TOKEN)
    )


@pytest.fixture(scope="module")
def running(creds: Dv360Credentials) -> Iterator[tuple[Dv360Sandbox, SandboxServer]]:
    app = Dv360Sandbox(creds)
    with SandboxServer(app) as server:  # one server for the module: stopping one takes half a second
        yield app, server


@pytest.fixture
def sandbox(running: tuple[Dv360Sandbox, SandboxServer]) -> Iterator[tuple[Dv360Sandbox, SandboxServer]]:
    app, server = running
    app.reset()
    yield app, server
    app.oauth.clock = time.monotonic


#: Injected timeouts (0.7 s below) must trip the client; everything else gets the default's generous 30 s.
FAULT_POLICY = RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=0.3)


def make_connector(server: SandboxServer, creds: Dv360Credentials, account: Dv360Account = ACCOUNT, **overrides):
    sandboxed = Dv360Connector.for_sandbox(account, server.url)  # as the engine does: moves API and token endpoint
    settings = {
        "platform": "dv360",
        "base_url": sandboxed.base_url,
        "classify": Dv360Connector.classify_response,
        "policy": RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=30.0),
        "sleep": lambda s: None,
    }
    return Dv360Connector(sandboxed, creds, PlatformHttp(**(settings | overrides)))


def to_member(contact_id: str, raw: dict[IdentifierKind, str], consent=None, country: str | None = "US") -> Member:
    """What the engine hands the connector: each value normalized by the connector's rule, hashed when declared."""
    fields = {}
    for kind, value in raw.items():
        rule = Dv360Connector.rule_for(kind)
        assert rule is not None
        normalized = rule.normalize(value, country)
        fields[rule.key] = sha256_hex(normalized) if rule.hashed else normalized
    return Member(contact_id, fields, country, consent or {})


def members(start: int, stop: int, consent=None) -> list[Member]:
    return [to_member(f"c{i}", {IdentifierKind.EMAIL: f"User{i}@Example.com"}, consent) for i in range(start, stop)]


def canonical(row: dict) -> str:
    return json.dumps(row, sort_keys=True)


def rows_for(batch: list[Member]) -> list[dict]:
    """Expected sandbox rows for e-mail-only members, built independently of the connector's payload code."""
    return sorted(({"hashedEmails": [m.fields["hashedEmails"]]} for m in batch), key=canonical)


def rows_of(app: Dv360Sandbox, audience: AudienceRef) -> list[dict]:
    return sorted(app.state()["audiences"][audience.remote_id]["members"], key=canonical)


def calls(app: Dv360Sandbox, suffix: str, method: str = "POST") -> list[dict]:
    return [r for r in app.requests if r["method"] == method and r["path"].endswith(suffix)]


def edits(app: Dv360Sandbox) -> list[dict]:
    return [json.loads(r["body"]) for r in calls(app, ":editCustomerMatchMembers") if r["status"] == 200]


# -- declarations --------------------------------------------------------------------------------------------
def test_registers_through_its_hook() -> None:
    manager = make_plugin_manager([dv360], load_entry_points=False)
    assert collect_connectors(manager) == {"dv360": Dv360Connector}


@pytest.mark.skipif(
    "dv360" not in {ep.name for ep in entry_points(group="crm_activation")},
    reason="the dv360 entry point is not in pyproject.toml yet",
)
def test_registers_through_the_entry_point() -> None:
    assert collect_connectors(make_plugin_manager())["dv360"] is Dv360Connector


def test_account_settings_are_validated() -> None:
    assert Dv360Account(advertiser_id=" 42 ").advertiser_id == "42"
    assert ACCOUNT.membership_duration_days == 540
    assert ACCOUNT.token_url == "https://oauth2.googleapis.com/token"
    for bad in ({"advertiser_id": "adv-1"}, {"advertiser_id": "1", "membership_duration_days": 0},
                {"advertiser_id": "1", "membership_duration_days": 541}):
        with pytest.raises(ValidationError):
            Dv360Account(**bad)


def test_for_sandbox_moves_the_api_and_the_token_endpoint() -> None:
    moved = Dv360Connector.for_sandbox(ACCOUNT, "http://127.0.0.1:9/")
    assert moved.base_url == "http://127.0.0.1:9/"
    assert moved.token_url == "http://127.0.0.1:9/token"


def test_batch_size_stays_within_googles_member_limit() -> None:
    # a contact splits into at most three members (one e-mail, one phone, one address)
    assert Dv360Connector.max_batch_size == MAX_CONTACTS_PER_REQUEST
    assert 3 * MAX_CONTACTS_PER_REQUEST <= MAX_MEMBERS_PER_REQUEST


def test_identifier_rules_follow_googles_normalization() -> None:
    member = to_member(
        "c1",
        {
            IdentifierKind.EMAIL: " Test@Example.com ",
            IdentifierKind.PHONE: "(415) 555-0123",
            IdentifierKind.FIRST_NAME: " Mary Ann ",
            IdentifierKind.LAST_NAME: "O'Neil",
            IdentifierKind.ZIP: "94103-1234",
            IdentifierKind.COUNTRY: "us",
        },
    )
    assert member.fields == {
        "hashedEmails": sha256_hex("test@example.com"),
        "hashedPhoneNumbers": sha256_hex("+14155550123"),
        "hashedFirstName": sha256_hex("maryann"),
        "hashedLastName": sha256_hex("o'neil"),
        "zipCodes": "94103",
        "countryCode": "US",
    }
    assert all(rule.source for rule in Dv360Connector.identifier_rules)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}, Action.RATE_LIMITED),
        (403, {"error": {"code": 403, "errors": [{"reason": "rateLimitExceeded"}]}}, Action.RATE_LIMITED),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE"}}, Action.RETRY),
        (500, {"error": {"code": 500, "status": "INTERNAL"}}, Action.RETRY),
        (401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, Action.REFRESH_AUTH),
        (403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}}, Action.CONFIG_ERROR),
        (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, Action.FAIL),
        (404, {"error": {"code": 404, "status": "NOT_FOUND"}}, Action.FAIL),
        (401, {"error": "invalid_client", "error_description": "Unauthorized"}, Action.CONFIG_ERROR),
        (400, {"error": "invalid_grant"}, Action.CONFIG_ERROR),
        (401, {"error": "something_new"}, Action.CONFIG_ERROR),  # never "refresh" on the token endpoint
    ],
)
def test_classifier_reads_google_statuses(status: int, body: dict, expected: Action) -> None:
    assert Dv360Connector.classify_response(HttpResponse(status, {}, json.dumps(body).encode())) is expected


def test_classifier_leaves_other_bodies_to_the_status_table() -> None:
    assert Dv360Connector.classify_response(HttpResponse(502, {}, b"<html>bad gateway</html>")) is None
    assert Dv360Connector.classify_response(HttpResponse(200, {}, b'{"error": {"status": "INTERNAL"}}')) is None


# -- OAuth -------------------------------------------------------------------------------------------------------
def test_token_is_fetched_once_with_the_refresh_token_grant(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    connector.check()
    connector.ensure_audience(SPEC, None)
    token_calls = calls(app, "/token")
    assert len(token_calls) == 1 and app.requests[0]["path"] == "/token"
    assert token_calls[0]["headers"]["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(token_calls[0]["body"])
    assert form["grant_type"] == ["refresh_token"] and set(form) >= {"client_id", "client_secret", "refresh_token"}
    assert all(r["headers"].get("authorization") == "***" for r in app.requests[1:])


def test_token_is_refreshed_before_it_expires(sandbox, creds) -> None:
    app, server = sandbox
    clock = Clock()
    app.oauth.clock = clock
    connector = make_connector(server, creds)
    connector.http.auth.clock = clock
    connector.check()
    clock.now += 3599 - 30  # inside the connector's safety margin, still valid for Google
    connector.check()
    clock.now += 3599
    connector.check()
    assert [r["path"] for r in app.requests] == ["/token", f"/v4/advertisers/{ADVERTISER}"] * 3
    assert all(r["status"] == 200 for r in app.requests)


def test_an_expired_token_mid_run_is_refreshed_on_401(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, members(0, 10))
    app.oauth.expire()
    connector.add_members(audience, members(10, 20))
    assert rows_of(app, audience) == rows_for(members(0, 20))
    refused = [r for r in app.requests if r["status"] == 401]
    assert len(refused) == 1 and len(calls(app, "/token")) == 2


def test_a_token_refused_at_first_use_is_a_configuration_error(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(token_lifetime=0)  # every token is dead on arrival
    with pytest.raises(ConfigError, match="just issued"):
        make_connector(server, creds).check()
    assert len(calls(app, "/token")) == 2


@pytest.mark.parametrize("wrong", ["client_secret", "refresh_token", "client_id"])
def test_bad_credentials_are_a_configuration_error_without_secrets(sandbox, creds, wrong: str) -> None:
    app, server = sandbox
    bad = creds.model_copy(update={wrong: SecretStr("wrong-" + wrong + "-value-123")})
    connector = make_connector(server, bad)
    with pytest.raises(ConfigError, match="client_id, client_secret and refresh_token") as caught:
        connector.check()
    text = str(caught.value)
    assert not any(s in text for s in (CLIENT_SECRET, REFRESH_TOKEN, f"wrong-{wrong}-value-123"))
    assert len(calls(app, "/token")) == 1  # refused credentials are not retried
    assert not app.oauth.issued


def test_permission_denied_names_the_advertiser_and_leaks_no_token(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(advertiser_ids=[ADVERTISER])
    make_connector(server, creds).check()
    other = make_connector(server, creds, Dv360Account(advertiser_id="999"))
    with pytest.raises(ConfigError, match="advertiser 999") as caught:
        other.check()
    with pytest.raises(ConfigError) as on_create:
        other.ensure_audience(SPEC, None)
    issued = list(app.oauth.issued)
    assert issued and not any(t in str(caught.value) + str(on_create.value) for t in issued)
    assert not any(t in json.dumps(app.requests) for t in issued)


# -- audiences -------------------------------------------------------------------------------------------------
def test_ensure_audience_is_idempotent_and_recreates_on_404(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    first = connector.ensure_audience(SPEC, None)
    assert connector.ensure_audience(SPEC, first) == first
    assert list(app.state()["audiences"]) == [first.remote_id]
    created = json.loads(calls(app, "/firstPartyAndPartnerAudiences")[0]["body"])
    assert created == {
        "displayName": SPEC.name,
        "description": SPEC.marker,  # no description of its own: the campaign's marker alone
        "audienceType": "CUSTOMER_MATCH_CONTACT_INFO",
        "firstPartyAndPartnerAudienceType": "TYPE_FIRST_PARTY",
        "membershipDurationDays": "540",
        "contactInfoList": {"contactInfos": [], "consent": NO_CONSENT_CLAIM},
    }

    app.delete_audience(first.remote_id)
    again = connector.ensure_audience(SPEC, first)
    assert again.remote_id != first.remote_id and again.key == SPEC.key
    assert [r["status"] for r in calls(app, first.remote_id, "GET")] == [200, 404]
    assert connector.ensure_audience(SPEC, again) == again
    with pytest.raises(FatalError):
        connector.add_members(first, members(0, 3))


def test_audiences_are_told_apart_by_the_campaigns_marker_never_by_name(sandbox, creds, monkeypatch) -> None:
    app, server = sandbox
    monkeypatch.setattr("crm_activation.connectors.dv360.connector.MAX_LIST_PAGE_SIZE", 2)  # read several pages
    spring = SPEC.model_copy(update={"campaign": "spring-sale", "description": "CRM push"})
    autumn = spring.model_copy(update={"campaign": "autumn-sale", "key": "autumn-sale/awareness"})
    connector = make_connector(server, creds)
    for n in range(3):  # same display name, made by a person or another tool: never adopted
        connector.ensure_audience(AudienceSpec(key=f"ui/{n}", name=SPEC.name), None)
    first = connector.ensure_audience(spring, None)
    assert json.loads(calls(app, "/firstPartyAndPartnerAudiences")[-1]["body"])["description"] == (
        f"CRM push ({spring.marker})"
    )
    other = connector.ensure_audience(autumn, None)
    assert len({first.remote_id, other.remote_id}) == 2 and len(app.state()["audiences"]) == 5
    # state lost: each campaign finds its own audience by the marker in its description, past the first page
    assert make_connector(server, creds).ensure_audience(autumn, None) == other
    assert make_connector(server, creds).ensure_audience(spring, None) == first
    assert len(app.state()["audiences"]) == 5
    assert any(r["query"].get("pageToken") for r in calls(app, "/firstPartyAndPartnerAudiences", "GET"))


@pytest.mark.parametrize(
    "query",
    [{"pageSize": "0"}, {"pageSize": "5001"}, {"pageToken": "bogus"}, {"filter": 'description:"x"'},
     {"filter": 'displayName:"a" AND displayName:"b"'}, {"filter": 'displayName:"' + "x" * 500 + '"'},
     {"orderBy": "description"}],
)
def test_the_sandbox_lists_audiences_as_dv360_does(sandbox, creds, query) -> None:
    _, server = sandbox
    connector = make_connector(server, creds)
    for n in range(3):
        connector.ensure_audience(AudienceSpec(key=f"k/{n}", name=f"Audience {n}"), None)
    path = "/v4/firstPartyAndPartnerAudiences"
    listed = connector.http.request("GET", path, params={"advertiserId": ADVERTISER, "pageSize": 2}).json()
    assert len(listed["firstPartyAndPartnerAudiences"]) == 2 and listed["nextPageToken"]
    rest = connector.http.request(
        "GET", path, params={"advertiserId": ADVERTISER, "pageToken": listed["nextPageToken"]}
    ).json()
    assert len(rest["firstPartyAndPartnerAudiences"]) == 1 and "nextPageToken" not in rest
    assert "displayAudienceSize" not in rest["firstPartyAndPartnerAudiences"][0]
    named = connector.http.request(
        "GET", path, params={"advertiserId": ADVERTISER, "filter": 'displayName:"audience 1"'}
    ).json()
    assert [a["displayName"] for a in named["firstPartyAndPartnerAudiences"]] == ["Audience 1"]
    other = connector.http.request("GET", path, params={"advertiserId": "999"}).json()
    assert other == {}  # another advertiser's audiences are not listed
    with pytest.raises(FatalError, match="INVALID_ARGUMENT"):
        connector.http.request("GET", path, params={"advertiserId": ADVERTISER, **query})


def test_membership_duration_comes_from_the_audience_settings(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    short = SPEC.model_copy(update={"settings": {"membership_duration_days": 30}})
    audience = connector.ensure_audience(short, None)
    assert app.state()["audiences"][audience.remote_id]["duration"] == "30"
    with pytest.raises(ConfigError, match=r"1\.\.540"):
        connector.ensure_audience(SPEC.model_copy(update={"settings": {"membership_duration_days": 600}}), None)


def test_sandbox_refuses_a_bad_creation(sandbox, creds) -> None:
    _, server = sandbox
    connector = make_connector(server, creds)
    good = {"displayName": "x", "audienceType": "CUSTOMER_MATCH_CONTACT_INFO", "membershipDurationDays": "30"}
    for change in ({"membershipDurationDays": "10000"}, {"audienceType": "CUSTOMER_MATCH_DEVICE_ID"},
                   {"displayName": ""}, {"bogus": 1}):
        with pytest.raises(FatalError, match="INVALID_ARGUMENT"):
            path = "/v4/firstPartyAndPartnerAudiences"
            connector.http.request("POST", path, params={"advertiserId": ADVERTISER}, json_body=good | change)


# -- membership ------------------------------------------------------------------------------------------------
def test_add_and_remove_reach_the_end_state(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = members(0, 100, {"ad_user_data": True, "ad_personalization": True})
    result = connector.add_members(audience, batch)
    connector.add_members(audience, batch)  # re-adding is a no-op
    assert result.received == 100 and result.invalid == 0 and not result.rejections
    assert rows_of(app, audience) == rows_for(batch)
    removed = connector.remove_members(audience, batch[:40])
    assert removed.received == 40
    assert rows_of(app, audience) == rows_for(batch[40:])
    removal = edits(app)[-1]
    assert removal["advertiserId"] == ADVERTISER and set(removal) == {"advertiserId", "removedContactInfoList"}
    assert removal["removedContactInfoList"]["consent"] == NO_CONSENT_CLAIM


def test_consent_splits_a_batch_and_denied_contacts_are_refused(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    both = {"ad_user_data": True, "ad_personalization": True}
    data_only = {"ad_user_data": True, "ad_personalization": None}
    batch = [*members(0, 3, both), *members(3, 5, {}), *members(5, 6, data_only), *members(6, 7, both)]
    denied = members(7, 8, {"ad_user_data": True, "ad_personalization": False})
    result = connector.add_members(audience, batch + denied)
    assert result.received == 7
    assert [(r.contact_id, "adPersonalization" in r.reason) for r in result.rejections] == [("c7", True)]
    sent = [(e["addedContactInfoList"]["consent"], len(e["addedContactInfoList"]["contactInfos"])) for e in edits(app)]
    assert sent == [
        ({"adUserData": GRANTED, "adPersonalization": GRANTED}, 4),
        (NO_CONSENT_CLAIM, 2),
        ({"adUserData": GRANTED, "adPersonalization": UNSPECIFIED}, 1),
    ]
    assert "DENIED" not in json.dumps(app.requests)
    assert app.state()["audiences"][audience.remote_id]["consent"] == {
        "GRANTED/GRANTED": 4, "UNSPECIFIED/UNSPECIFIED": 2, "GRANTED/UNSPECIFIED": 1}
    assert rows_of(app, audience) == rows_for(batch)


def test_address_is_sent_only_when_complete(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    name = {IdentifierKind.FIRST_NAME: "Ann", IdentifierKind.LAST_NAME: "Lee", IdentifierKind.ZIP: "SW1A 1AA"}
    full = to_member("full", {IdentifierKind.PHONE: "020 7946 0000", **name, IdentifierKind.COUNTRY: "gb"}, None, "GB")
    partial = to_member("partial", {IdentifierKind.EMAIL: "a@example.com", **name}, None, "GB")
    connector.add_members(audience, [full, partial])
    assert rows_of(app, audience) == sorted(
        [
            {"hashedPhoneNumbers": [sha256_hex("+442079460000")], "hashedFirstName": sha256_hex("ann"),
             "hashedLastName": sha256_hex("lee"), "zipCodes": ["SW1A 1AA"], "countryCode": "GB"},
            {"hashedEmails": [sha256_hex("a@example.com")]},
        ],
        key=canonical,
    )


def test_malformed_contacts_are_refused_before_sending(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    good = members(0, 3)
    bad = [
        Member("raw-email", {"hashedEmails": "someone@example.com"}),
        Member("upper-hash", {"hashedEmails": sha256_hex("x@example.com").upper()}),
        Member("hashed-zip", {"hashedFirstName": sha256_hex("a"), "hashedLastName": sha256_hex("b"),
                              "zipCodes": sha256_hex("94103"), "countryCode": "US"}),
        Member("names-only", {"hashedFirstName": sha256_hex("a"), "hashedLastName": sha256_hex("b")}),
    ]
    result = connector.add_members(audience, good + bad)
    assert result.received == 3
    assert [r.contact_id for r in result.rejections] == ["raw-email", "upper-hash", "hashed-zip", "names-only"]
    assert all("someone@example.com" not in r.reason for r in result.rejections)
    assert rows_of(app, audience) == rows_for(good)


def test_sandbox_enforces_the_body_contract(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    path = f"/v4/firstPartyAndPartnerAudiences/{audience.remote_id}:editCustomerMatchMembers"
    info = {"hashedEmails": [sha256_hex("a@example.com")]}
    consent = {"adUserData": GRANTED, "adPersonalization": GRANTED}
    ok = {"contactInfos": [info], "consent": consent}
    denied = consent | {"adUserData": "CONSENT_STATUS_DENIED"}
    for lists, reason in (
        ({}, "exactly one of"),
        ({"addedContactInfoList": ok, "removedContactInfoList": ok}, "exactly one of"),
        ({"addedContactInfoList": {"contactInfos": [info]}}, "consent is required"),
        ({"addedContactInfoList": ok | {"consent": denied}}, "CONSENT_STATUS_DENIED"),
        ({"addedContactInfoList": ok | {"contactInfos": []}}, "non-empty list"),
        ({"addedContactInfoList": ok | {"contactInfos": [{"hashedEmails": ["A" * 64]}]}}, "64 lowercase hex"),
        ({"addedContactInfoList": ok | {"contactInfos": [{"countryCode": "gb"}]}}, "upper case"),
        ({"addedContactInfoList": ok | {"contactInfos": [info | {"zipCodes": ["1"]}]}}, "together"),
        ({"addedContactInfoList": ok | {"contactInfos": [info | {"email": "x"}]}}, "Unknown name"),
    ):
        with pytest.raises(FatalError, match="INVALID_ARGUMENT") as caught:
            connector.http.request("POST", path, json_body={"advertiserId": ADVERTISER, **lists})
        assert reason in caught.value.response.json()["error"]["message"]
    assert app.state()["audiences"][audience.remote_id]["members"] == []


def test_batches_over_the_limit_are_refused_by_connector_and_sandbox(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    with pytest.raises(ValueError, match="10000"):
        connector.add_members(audience, members(0, MAX_CONTACTS_PER_REQUEST + 1))
    assert not edits(app)
    # Google's limit counts members after splitting: 20 contacts with e-mail, phone and address are 60
    app.max_members_per_request = 50
    rich = [
        to_member(f"r{i}", {IdentifierKind.EMAIL: f"r{i}@example.com", IdentifierKind.PHONE: f"+1415555{i:04d}",
                            IdentifierKind.FIRST_NAME: "A", IdentifierKind.LAST_NAME: "B",
                            IdentifierKind.ZIP: "94103", IdentifierKind.COUNTRY: "US"})
        for i in range(20)
    ]
    with pytest.raises(FatalError, match="after splitting"):
        connector.add_members(audience, rich)
    connector.add_members(audience, rich[:16])  # 48 members
    assert len(app.state()["audiences"][audience.remote_id]["members"]) == 16


def test_20001_members_go_in_requests_of_at_most_10000(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    everyone = members(0, 20_001)
    size = Dv360Connector.max_batch_size
    results = [connector.add_members(audience, everyone[i : i + size]) for i in range(0, len(everyone), size)]
    assert [len(e["addedContactInfoList"]["contactInfos"]) for e in edits(app)] == [10_000, 10_000, 1]
    assert sum(r.received for r in results) == 20_001
    assert len(app.state()["audiences"][audience.remote_id]["members"]) == 20_001


# -- faults ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "fault"),
    [
        (FaultPlan(throttle_rate=0.3, seed=3), "throttle"),
        (FaultPlan(server_error_rate=0.3, seed=5), "server_error"),
        (FaultPlan(timeout_rate=0.25, timeout_seconds=0.7, seed=2), "timeout"),
        (FaultPlan(partial_reject_rate=1.0, seed=1), None),  # DV360 has no per-member outcome to fake
    ],
)
def test_faults_still_reach_the_exact_end_state(sandbox, creds, plan: FaultPlan, fault: str | None) -> None:
    app, server = sandbox
    connector = make_connector(server, creds, policy=FAULT_POLICY)
    audience = connector.ensure_audience(SPEC, None)  # creation is not idempotent on DV360: done before faults
    app.set_faults(plan)
    everyone = members(0, 300, {"ad_user_data": True})
    for i in range(0, 300, 100):
        connector.add_members(audience, everyone[i : i + 100])
    app.oauth.expire()  # the token refresh happens under the same faults
    connector.remove_members(audience, everyone[:50])
    connector.add_members(audience, everyone[:10])
    assert rows_of(app, audience) == rows_for(everyone[:10] + everyone[50:])
    assert len(calls(app, "/token")) >= 2
    if fault is not None:
        faulted = [r for r in app.requests if r["fault"] == fault]
        assert faulted, "the plan injected no fault: the test would prove nothing"
        if fault == "throttle":
            assert {r["status"] for r in faulted} == {429}


def test_throttle_has_googles_shape_and_no_retry_after(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds, policy=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01))
    connector.check()
    app.set_faults(FaultPlan(throttle_rate=1.0))
    with pytest.raises(RateLimitedError) as caught:
        connector.check()
    response = caught.value.response
    assert response.status == 429 and "Retry-After" not in response.headers
    assert response.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after is None


# -- dry run -----------------------------------------------------------------------------------------------------
def test_dry_run_records_the_token_request_masked_and_sends_nothing(sandbox, creds, tmp_path) -> None:
    app, server = sandbox
    outbox = Outbox(tmp_path, Redactor())  # no secrets registered: the connector must keep them out itself
    connector = make_connector(server, creds, outbox=outbox)
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    assert audience.remote_id == "dry-run-spring-sale-awareness"
    result = connector.add_members(audience, members(0, 3, {"ad_user_data": True, "ad_personalization": True}))
    assert result.received == 3
    connector.remove_members(audience, members(0, 1))
    assert app.requests == []  # nothing reached the platform, not even the token endpoint
    text = (tmp_path / "dv360.jsonl").read_text()
    assert not any(s in text for s in (CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, DRY_RUN_TOKEN))
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["method"], line["url"].split("?")[0].rsplit("/", 1)[-1]) for line in lines] == [
        ("POST", "token"),
        ("GET", ADVERTISER),
        ("GET", "firstPartyAndPartnerAudiences"),  # the lookup by marker, which finds nothing in a dry run
        ("POST", "firstPartyAndPartnerAudiences"),
        ("POST", "dry-run-spring-sale-awareness:editCustomerMatchMembers"),
        ("POST", "dry-run-spring-sale-awareness:editCustomerMatchMembers"),
    ]
    assert lines[0]["body"] == {"grant_type": "refresh_token", "client_id": "***", "client_secret": "***",
                                "refresh_token": "***"}
    assert all(line["headers"]["Authorization"] == "***" for line in lines[1:])
    assert lines[4]["body"]["addedContactInfoList"]["consent"]["adUserData"] == GRANTED
