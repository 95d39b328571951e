"""The Data Manager connector against its sandbox over real HTTP: declarations, lists, members, limits, faults, CLI."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests
from pydantic import SecretStr, ValidationError

import crm_activation_google_data_manager as plugin
from crm_activation import (
    Action,
    AudienceSpec,
    ConfigError,
    FatalError,
    FaultPlan,
    HttpResponse,
    IdentifierKind,
    Member,
    PlatformHttp,
    RetryPolicy,
    SandboxServer,
)
from crm_activation.normalization import sha256_hex
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation_google_data_manager import (
    GoogleDataManagerAccount,
    GoogleDataManagerConnector,
    GoogleDataManagerCredentials,
    GoogleDataManagerSandbox,
)

CLIENT_ID = "1234567890-dm.apps.googleusercontent.com"
CLIENT_SECRET = "GOCSPX-sandbox-dm-secret-0123"
REFRESH_TOKEN = "1//0sandbox-dm-refresh-abcdefghijkl"
CREDS = GoogleDataManagerCredentials(
    client_id=SecretStr(CLIENT_ID), client_secret=SecretStr(CLIENT_SECRET), refresh_token=SecretStr(REFRESH_TOKEN)
)
ACCOUNT = GoogleDataManagerAccount(account_id="123-456-7890", customer_match_terms_accepted=True)
OPERATING = "GOOGLE_ADS/1234567890"
SPEC = AudienceSpec(key="spring/awareness", name="Spring - awareness", description="crm-activation test")
POLICY = RetryPolicy(max_attempts=12, initial_wait=0.001, max_wait=0.01, read_timeout=0.4)


@pytest.fixture
def sandbox() -> Iterator[tuple[GoogleDataManagerSandbox, SandboxServer]]:
    app = GoogleDataManagerSandbox(CREDS)
    with SandboxServer(app) as server:
        yield app, server


def make_connector(
    server: SandboxServer, account=ACCOUNT, creds=CREDS, sleeps=None, policy=POLICY
) -> GoogleDataManagerConnector:
    """A connector as the engine builds one for `--endpoint`: for_sandbox moves the API and the token endpoint."""
    moved = GoogleDataManagerConnector.for_sandbox(account, server.url)
    http = PlatformHttp(
        platform="google_data_manager",
        base_url=moved.base_url,
        classify=GoogleDataManagerConnector.classify_response,
        policy=policy,
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        rng=random.Random(0).random,
    )
    return GoogleDataManagerConnector(moved, creds, http)


def to_member(index: int, consent=None, *, full: bool = False, email: str | None = None) -> Member:
    """What the engine hands over: each value normalized by the connector's declared rule, hashed when declared."""
    raw = {IdentifierKind.EMAIL: email or f"User.{index}@Example.com"}
    if full:
        raw |= {IdentifierKind.PHONE: f"(415) 555-{index:04d}", IdentifierKind.FIRST_NAME: " Mary Ann ",
                IdentifierKind.LAST_NAME: f"O'Neil{chr(97 + index % 26)}", IdentifierKind.ZIP: "94103-1234",
                IdentifierKind.COUNTRY: "us"}
    fields = {}
    for kind, value in raw.items():
        rule = GoogleDataManagerConnector.rule_for(kind)
        assert rule is not None
        normalized = rule.normalize(value, "US")
        fields[rule.key] = sha256_hex(normalized) if rule.hashed else normalized
    granted = {"ad_user_data": True, "ad_personalization": True}
    return Member(f"c{index}", fields, "US", granted if consent is None else consent)


def members(start: int, stop: int, **options) -> list[Member]:
    return [to_member(i, **options) for i in range(start, stop)]


def lists_of(app: GoogleDataManagerSandbox, account: str = OPERATING) -> dict[str, dict]:
    """The user lists of one operating account, as the sandbox's standard state shows them."""
    return {list_id: ul for list_id, ul in app.state()["audiences"].items() if ul["account"] == account}


def emails_in(app: GoogleDataManagerSandbox, list_id: str, account: str = OPERATING) -> set[str]:
    rows = lists_of(app, account)[list_id]["members"]
    return {i["emailAddress"] for row in rows for i in row if "emailAddress" in i}


def wait_for_log(app: GoogleDataManagerSandbox, wanted, count: int, seconds: float = 3.0) -> list[dict]:
    """The logged requests matching `wanted` once there are `count`: a timed-out request is logged when answered."""
    deadline = time.monotonic() + seconds
    while True:
        found = [r for r in list(app.requests) if wanted(r)]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


def bodies(app: GoogleDataManagerSandbox, suffix: str) -> list[dict]:
    return [json.loads(r["body"]) for r in app.requests if r["path"].endswith(suffix) and r["status"] == 200]


# -- declarations ------------------------------------------------------------------------------------------------
def test_registers_through_its_hook_and_the_installed_entry_point() -> None:
    assert collect_connectors(make_plugin_manager([plugin], load_entry_points=False)) == {
        "google_data_manager": GoogleDataManagerConnector
    }
    found = [ep for ep in entry_points(group="crm_activation") if ep.name == "google_data_manager"]
    assert [ep.value for ep in found] == ["crm_activation_google_data_manager"], "is the plugin installed?"
    assert collect_connectors(make_plugin_manager())["google_data_manager"] is GoogleDataManagerConnector


def test_declarations() -> None:
    described = GoogleDataManagerConnector.describe()
    assert described["max_batch_size"] == 10_000 and described["capabilities"] == ["remove"]
    assert described["match_keys"] == ["email", "phone"]
    assert {(i["key"], i["hashed"]) for i in described["identifiers"]} == {
        ("emailAddress", True), ("phoneNumber", True), ("givenName", True), ("familyName", True),
        ("postalCode", False), ("regionCode", False),
    }
    assert all(rule.source for rule in GoogleDataManagerConnector.identifier_rules)


def test_account_settings_are_validated() -> None:
    assert ACCOUNT.account_id == "1234567890" and ACCOUNT.parent == "accountTypes/GOOGLE_ADS/accounts/1234567890"
    for bad in (
        {"account_id": "1"},  # the Customer Match terms were not stated
        {"account_id": "abc", "customer_match_terms_accepted": True},
        {"account_id": "1", "customer_match_terms_accepted": True, "login_account_id": "2"},
        {"account_id": "1", "customer_match_terms_accepted": True, "membership_duration_days": 541},
        {"account_id": "1", "customer_match_terms_accepted": True, "account_type": "DATA_PARTNER"},
    ):
        with pytest.raises(ValidationError):
            GoogleDataManagerAccount(**bad)


def test_for_sandbox_moves_the_api_and_the_token_endpoint() -> None:
    moved = GoogleDataManagerConnector.for_sandbox(ACCOUNT, "http://127.0.0.1:9/")
    assert (moved.base_url, moved.token_url) == ("http://127.0.0.1:9/", "http://127.0.0.1:9/token")


@pytest.mark.parametrize(
    ("kind", "raw", "normalized"),
    [
        (IdentifierKind.EMAIL, " Jane.Doe@GMail.com ", "janedoe@gmail.com"),  # Data Manager's Gmail rule
        (IdentifierKind.EMAIL, "jane.doe+news@googlemail.com", "janedoe@googlemail.com"),  # +tag gone, domain kept
        (IdentifierKind.EMAIL, "Cloudy.SanFrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),  # Google's
        (IdentifierKind.EMAIL, "user.name+NYC@Example.com", "user.name+nyc@example.com"),  # Google's example
        (IdentifierKind.EMAIL, "Jane.Doe@Example.com", "jane.doe@example.com"),  # dots elsewhere kept
        (IdentifierKind.PHONE, "(800) 555-0100", "+18005550100"),  # Google's own example
        (IdentifierKind.FIRST_NAME, " Mary Ann ", "maryann"),
        (IdentifierKind.ZIP, "94103-1234", "94103"),
        (IdentifierKind.COUNTRY, "us", "US"),
    ],
)
def test_identifier_rules_follow_data_managers_formatting(kind: IdentifierKind, raw: str, normalized: str) -> None:
    rule = GoogleDataManagerConnector.rule_for(kind)
    assert rule is not None and rule.normalize(raw, "US") == normalized


def test_gmail_addresses_made_of_dots_are_refused_without_the_value() -> None:
    rule = GoogleDataManagerConnector.rule_for(IdentifierKind.EMAIL)
    assert rule is not None
    for raw in ("...@gmail.com", ".+news@googlemail.com"):
        with pytest.raises(ValueError, match="nothing before the @") as refused:
            rule.normalize(raw, None)
        assert "news" not in str(refused.value)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}, Action.RATE_LIMITED),
        (503, {"error": {"code": 503, "status": "UNAVAILABLE"}}, Action.RETRY),
        (401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}, Action.REFRESH_AUTH),
        (403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}}, Action.CONFIG_ERROR),
        (400, {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}, Action.FAIL),
        (401, {"error": "invalid_client", "error_description": "Unauthorized"}, Action.CONFIG_ERROR),
        (400, {"error": "invalid_grant"}, Action.CONFIG_ERROR),
    ],
)
def test_googles_errors_are_classified_by_status_name(status: int, body: dict, expected: Action) -> None:
    response = HttpResponse(status, {}, json.dumps(body).encode())
    assert GoogleDataManagerConnector.classify_response(response) is expected


# -- user lists --------------------------------------------------------------------------------------------------
def test_ensure_audience_creates_once_then_reuses_by_id_and_by_marker(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    connector.check()
    ref = connector.ensure_audience(SPEC.model_copy(update={"settings": {"membership_duration_days": 30}}), None)
    lists = lists_of(app)
    assert list(lists) == [ref.remote_id] and lists[ref.remote_id]["duration"] == "2592000s"
    assert connector.ensure_audience(SPEC, ref) == ref
    assert make_connector(server).ensure_audience(SPEC, None) == ref  # state lost: found by its integration code
    assert lists_of(app)[ref.remote_id]["integration_code"] == SPEC.marker
    app.delete_audience(ref.remote_id)
    again = connector.ensure_audience(SPEC, ref)
    assert again.remote_id != ref.remote_id
    assert list(lists_of(app)) == [again.remote_id]


def test_two_campaigns_naming_a_list_alike_get_two_lists_and_a_person_s_list_is_never_taken(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    theirs = connector.ensure_audience(AudienceSpec(key="made-in-ui", name=SPEC.name), None)  # a person's list
    spring = SPEC.model_copy(update={"campaign": "spring"})
    autumn = SPEC.model_copy(update={"campaign": "autumn", "key": "autumn/awareness"})
    first, other = connector.ensure_audience(spring, None), connector.ensure_audience(autumn, None)
    assert len({theirs.remote_id, first.remote_id, other.remote_id}) == 3
    names = {list_id: ul["name"] for list_id, ul in lists_of(app).items()}
    # Google wants names unique per account: the campaign's id tells them apart
    assert names[first.remote_id] == f"{SPEC.name} (spring)" and names[other.remote_id] == f"{SPEC.name} (autumn)"
    assert make_connector(server).ensure_audience(autumn, None) == other  # state lost: its own list, by marker
    assert make_connector(server).ensure_audience(spring, None) == first
    creates = [r for r in app.requests if r["method"] == "POST" and r["path"].endswith("/userLists")]
    assert [r["status"] for r in creates] == [200, 409, 200, 409, 200]
    finds = [r["query"]["filter"][0] for r in app.requests if r["method"] == "GET" and r["path"].endswith("/userLists")]
    assert all(f.startswith("integration_code = ") for f in finds)  # never looked up by display name


def test_a_name_taken_by_a_campaign_s_own_id_falls_back_to_the_marker(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    spring = SPEC.model_copy(update={"campaign": "spring"})
    for name in (SPEC.name, f"{SPEC.name} (spring)"):
        connector.ensure_audience(AudienceSpec(key=f"ui/{name}", name=name), None)
    ref = connector.ensure_audience(spring, None)
    assert lists_of(app)[ref.remote_id]["name"] == f"{SPEC.name} ({spring.marker})"


def test_the_sandbox_filters_and_pages_user_lists_as_google_does(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    for n in range(3):
        connector.ensure_audience(AudienceSpec(key=f"k/{n}", name=f"List {n}", campaign="c"), None)
    path = f"/v1/{ACCOUNT.parent}/userLists"
    page = connector.http.request("GET", path, params={"pageSize": 2}).json()
    assert len(page["userLists"]) == 2 and page["nextPageToken"]
    rest = connector.http.request("GET", path, params={"pageSize": 2, "pageToken": page["nextPageToken"]}).json()
    assert len(rest["userLists"]) == 1 and "nextPageToken" not in rest
    with pytest.raises(FatalError, match="INVALID_ARGUMENT"):  # a page token is only good for the same query
        connector.http.request("GET", path, params={"pageSize": 1, "pageToken": page["nextPageToken"]})
    marker = AudienceSpec(key="k/1", name="x", campaign="c").marker
    both = f'integration_code = "{marker}" AND display_name = "List 1"'
    listed = connector.http.request("GET", path, params={"filter": both}).json()["userLists"]
    assert [u["displayName"] for u in listed] == ["List 1"]
    has = connector.http.request("GET", path, params={"filter": 'display_name : "List" AND membership_status = '
                                                                 '"OPEN" AND display_name != "List 0"'}).json()
    assert sorted(u["displayName"] for u in has["userLists"]) == ["List 1", "List 2"]
    mixed = 'integration_code = "x" AND displayName = "y"'  # Google refuses snake_case mixed with camelCase
    for bad_filter in ('bogus = "x"', "display_name = List", mixed):
        with pytest.raises(FatalError, match="INVALID_ARGUMENT"):
            connector.http.request("GET", path, params={"filter": bad_filter})
    assert len(app.state()["audiences"]) == 3


def timeouts(seed: int, count: int) -> list[bool]:
    """Which of the first `count` requests a FaultPlan(timeout_rate=0.5, seed=seed) times out."""
    rng = random.Random(seed)
    return [rng.random() < 0.5 for _ in range(count)]


def test_a_create_that_timed_out_is_not_duplicated(sandbox) -> None:
    app, server = sandbox
    # requests: token, list by marker, create (times out after it was applied), create again (409), list by marker
    seed = next(s for s in range(1000) if timeouts(s, 5) == [False, False, True, False, False])
    app.set_faults(FaultPlan(timeout_rate=0.5, timeout_seconds=0.6, seed=seed))
    ref = make_connector(server).ensure_audience(SPEC, None)
    creates = wait_for_log(app, lambda r: r["method"] == "POST" and r["path"].endswith("/userLists"), 2)
    assert [(r["status"], r["fault"]) for r in creates] == [(200, "timeout"), (409, None)]  # applied, then refused
    assert list(lists_of(app)) == [ref.remote_id]


def test_a_pinned_user_list_is_used_as_is_or_refused(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    existing = connector.ensure_audience(AudienceSpec(key="made-in-ui", name="Made in the Ads UI"), None)
    pinned = SPEC.model_copy(update={"settings": {"user_list_id": existing.remote_id}})
    assert connector.ensure_audience(pinned, None).remote_id == existing.remote_id
    with pytest.raises(ConfigError, match="user list 42 does not exist"):
        connector.ensure_audience(SPEC.model_copy(update={"settings": {"user_list_id": "42"}}), None)
    assert len(lists_of(app)) == 1


def test_an_account_the_user_cannot_reach_is_a_config_error() -> None:
    app = GoogleDataManagerSandbox(CREDS, accounts={"GOOGLE_ADS/999"})
    with SandboxServer(app) as server, pytest.raises(ConfigError, match="PERMISSION_DENIED"):
        make_connector(server).check()


# -- members -----------------------------------------------------------------------------------------------------
def test_add_remove_readd_reach_the_exact_end_state(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    ref = connector.ensure_audience(SPEC, None)
    batch = members(0, 6, full=True)
    result = connector.add_members(ref, batch)
    assert (result.received, result.rejections) == (6, ()) and result.job_id
    connector.add_members(ref, batch)  # re-adding is a no-op
    assert emails_in(app, ref.remote_id) == {m.fields["emailAddress"] for m in batch}
    assert lists_of(app)[ref.remote_id]["consent"] == {"GRANTED/GRANTED": 6}
    connector.remove_members(ref, batch[:2])
    connector.remove_members(ref, batch[:2])
    assert emails_in(app, ref.remote_id) == {m.fields["emailAddress"] for m in batch[2:]}
    status = connector.request_status(result.job_id)
    assert status[0]["requestStatus"] == "SUCCESS"
    assert status[0]["audienceMembersIngestionStatus"]["userDataIngestionStatus"]["recordCount"] == "6"


def test_request_bodies_follow_the_contract(sandbox) -> None:
    app, server = sandbox
    login = {"login_account_type": "GOOGLE_ADS", "login_account_id": "555-000-1111"}
    account = GoogleDataManagerAccount(**(ACCOUNT.model_dump() | login))
    connector = make_connector(server, account)
    ref = connector.ensure_audience(SPEC, None)
    batch = [to_member(0, full=True), to_member(1, {"ad_user_data": True})]
    connector.add_members(ref, batch)
    connector.remove_members(ref, batch)
    ingest, remove = bodies(app, ":ingest")[0], bodies(app, ":remove")[0]
    assert ingest["destinations"] == remove["destinations"] == [{
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
        "productDestinationId": ref.remote_id,
        "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "5550001111"},
    }]
    assert ingest["encoding"] == remove["encoding"] == "HEX"
    assert ingest["termsOfService"] == {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    fields = batch[0].fields
    assert ingest["audienceMembers"][0] == {
        "userData": {"userIdentifiers": [
            {"emailAddress": fields["emailAddress"]}, {"phoneNumber": fields["phoneNumber"]},
            {"address": {"givenName": sha256_hex("maryann"), "familyName": sha256_hex("o'neila"),
                         "regionCode": "US", "postalCode": "94103"}},
        ]},
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"},
    }
    assert ingest["audienceMembers"][1]["consent"]["adPersonalization"] == "CONSENT_STATUS_UNSPECIFIED"
    assert "termsOfService" not in remove and all("consent" not in m for m in remove["audienceMembers"])
    logged = [r for r in app.requests if "/userLists" in r["path"]]
    assert all(r["headers"]["login-account"] == "accountTypes/GOOGLE_ADS/accounts/5550001111" for r in logged)


def test_denied_consent_is_refused_per_contact_and_never_sent(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    ref = connector.ensure_audience(SPEC, None)
    denied = to_member(1, {"ad_user_data": True, "ad_personalization": False})
    result = connector.add_members(ref, [to_member(0), denied])
    assert result.received == 1 and [r.contact_id for r in result.rejections] == ["c1"]
    assert "adPersonalization is denied" in result.rejections[0].reason
    assert "DENIED" not in json.dumps(bodies(app, ":ingest"))
    assert emails_in(app, ref.remote_id) == {to_member(0).fields["emailAddress"]}


def test_a_full_batch_goes_in_one_request_and_one_more_is_refused(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server, policy=POLICY.model_copy(update={"read_timeout": 10.0}))  # 10k take ~0.3 s
    ref = connector.ensure_audience(SPEC, None)
    batch = members(0, GoogleDataManagerConnector.max_batch_size)
    assert connector.add_members(ref, batch).received == 10_000
    assert [len(b["audienceMembers"]) for b in bodies(app, ":ingest")] == [10_000]
    assert len(lists_of(app)[ref.remote_id]["members"]) == 10_000
    with pytest.raises(ValueError, match="exceeds 10000"):
        connector.add_members(ref, [*batch, to_member(10_000)])
    # and the sandbox holds Google's line on its own: 10,001 members is TOO_MANY_AUDIENCE_MEMBERS
    body = ingest_body(connector.destination(ref), [raw_member(str(i)) for i in range(10_001)])
    answer = post_ingest(server, body)
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][1]["fieldViolations"][0]["reason"] == "TOO_MANY_AUDIENCE_MEMBERS"


GRANTED = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_GRANTED"}


def raw_member(seed: str, consent: dict | None = GRANTED) -> dict:
    member: dict = {"userData": {"userIdentifiers": [{"emailAddress": sha256_hex(seed)}]}}
    return member if consent is None else member | {"consent": consent}


def ingest_body(destination: dict, audience_members: list[dict]) -> dict:
    terms = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    return {
        "destinations": [destination],
        "encoding": "HEX",
        "termsOfService": terms,
        "audienceMembers": audience_members,
    }


def post_ingest(server: SandboxServer, body: dict) -> requests.Response:
    grant = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
             "refresh_token": REFRESH_TOKEN}
    token = requests.post(f"{server.url}/token", data=grant, timeout=5).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    return requests.post(f"{server.url}/v1/audienceMembers:ingest", json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda b: b.pop("encoding"), "REQUIRED_FIELD_MISSING"),
        (lambda b: b.update(encoding="BASE64"), "INVALID_ENUM_VALUE"),  # Google takes it; the connector sends HEX
        (lambda b: b.pop("termsOfService"), "TERMS_AND_CONDITIONS_NOT_SIGNED"),
        (lambda b: b.update(extra=1), "INVALID_ARGUMENT"),  # unknown field
        (
            lambda b: b["audienceMembers"][0]["userData"]["userIdentifiers"][0].update(emailAddress="a@b.com"),
            "INVALID_HEX_ENCODING",
        ),  # Google's quickstart example: a plain address
        (
            lambda b: b["audienceMembers"][0]["userData"]["userIdentifiers"][0].update(emailAddress="ab" * 16),
            "INVALID_SHA256_FORMAT",
        ),  # hex, but not a SHA-256 digest
        (lambda b: b["audienceMembers"][0].pop("consent"), "REQUIRED_FIELD_MISSING"),
        (lambda b: b["destinations"][0].update(productDestinationId="42"), "INVALID_USER_LIST_ID"),
        (
            lambda b: b["audienceMembers"][0]["userData"].update(
                userIdentifiers=[{"emailAddress": sha256_hex(str(i))} for i in range(11)]
            ),
            "TOO_MANY_USER_IDENTIFIERS",
        ),
    ],
    ids=[
        "no-encoding",
        "base64",
        "terms",
        "unknown-field",
        "not-hex",
        "not-sha256",
        "no-consent",
        "unknown-list",
        "11-identifiers",
    ],
)
def test_the_sandbox_refuses_what_google_refuses(sandbox, change, reason) -> None:
    app, server = sandbox
    ref = make_connector(server).ensure_audience(SPEC, None)
    body = ingest_body(make_connector(server).destination(ref), [raw_member("a"), raw_member("b")])
    change(body)
    answer = post_ingest(server, body)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["details"][1]["fieldViolations"][0]["reason"] == reason
    assert lists_of(app)[ref.remote_id]["members"] == []


def test_the_sandbox_drops_denied_members_and_reports_them_in_the_diagnostics(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    ref = connector.ensure_audience(SPEC, None)
    denied = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"}
    body = ingest_body(connector.destination(ref), [raw_member("a", None), raw_member("b", denied)])
    body["consent"] = GRANTED  # request-level consent, overridden field by field by a member's own
    answer = post_ingest(server, body)
    assert answer.status_code == 200
    assert emails_in(app, ref.remote_id) == {sha256_hex("a")}
    status = connector.request_status(answer.json()["requestId"])[0]
    assert status["requestStatus"] == "PARTIAL_SUCCESS"
    assert status["errorInfo"]["errorCounts"] == [
        {"recordCount": "1", "reason": "PROCESSING_ERROR_REASON_DENIED_CONSENT"}
    ]


@pytest.mark.parametrize(
    "plan",
    [
        FaultPlan(throttle_rate=0.35, seed=3),
        FaultPlan(server_error_rate=0.35, seed=4),
        FaultPlan(timeout_rate=0.25, timeout_seconds=0.6, seed=5),
        FaultPlan(throttle_rate=0.15, server_error_rate=0.15, timeout_rate=0.1, timeout_seconds=0.6, seed=6),
    ],
    ids=["throttle", "5xx", "timeout", "mixed"],
)
def test_faults_are_retried_to_the_exact_end_state(sandbox, plan: FaultPlan) -> None:
    app, server = sandbox
    sleeps: list[float] = []
    connector = make_connector(server, sleeps=sleeps)
    ref = connector.ensure_audience(SPEC, None)
    app.set_faults(plan)
    for start in range(0, 24, 4):
        connector.add_members(ref, members(start, start + 4))
    for start in range(0, 10, 5):
        connector.remove_members(ref, members(start, start + 5))
    connector.add_members(ref, members(2, 4))
    assert sleeps, "the plan injected nothing, or retries did not back off"
    assert wait_for_log(app, lambda r: r["fault"] is not None, 1)
    assert emails_in(app, ref.remote_id) == {m.fields["emailAddress"] for m in members(2, 4) + members(10, 24)}
    assert len(lists_of(app)) == 1


def test_an_expired_token_is_refreshed(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    ref = connector.ensure_audience(SPEC, None)
    app.oauth.expire()
    connector.add_members(ref, members(0, 2))
    assert len(emails_in(app, ref.remote_id)) == 2
    assert sum(1 for r in app.requests if r["path"] == "/token") == 2


def test_a_wrong_secret_is_a_config_error_that_leaks_nothing(sandbox) -> None:
    app, server = sandbox
    wrong = CREDS.model_copy(update={"client_secret": SecretStr("GOCSPX-wrong-secret-9999")})
    with pytest.raises(ConfigError) as refused:
        make_connector(server, creds=wrong).ensure_audience(SPEC, None)
    message = str(refused.value)
    assert "invalid_client" in message and "client_secret" in message
    assert len(app.requests) == 1  # refused credentials are not retried
    logged = json.dumps(app.requests)
    for secret in (CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, "GOCSPX-wrong-secret-9999"):
        assert secret not in message and secret not in logged


# -- through the real CLI ----------------------------------------------------------------------------------------
CAMPAIGN = """\
campaign: dm-e2e
audience:
  source: {type: csv, path: contacts.csv}
segments: [{name: everyone}]
holdout: {fraction: 0.5}
channels: {default: [google_data_manager]}
funnel: {stages: [awareness, conversion]}
platforms:
  google_data_manager:
    account: {account_id: "123-456-7890", customer_match_terms_accepted: true, membership_duration_days: 90}
    audiences:
      awareness: {name: "DM awareness"}
      conversion: {name: "DM conversion"}
state: {path: state.sqlite}
http: {max_attempts: 8, initial_wait: 0.001, max_wait: 0.01, read_timeout: 0.5}
"""


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_ACTIVATION_GOOGLE_DATA_MANAGER_CLIENT_ID": CLIENT_ID,
           "CRM_ACTIVATION_GOOGLE_DATA_MANAGER_CLIENT_SECRET": CLIENT_SECRET,
           "CRM_ACTIVATION_GOOGLE_DATA_MANAGER_REFRESH_TOKEN": REFRESH_TOKEN}
    command = Path(sys.executable).with_name("crm-activation")
    return subprocess.run([str(command), *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_the_cli_lists_the_plugin_pushes_to_its_sandbox_and_masks_secrets_in_dry_runs(sandbox, tmp_path) -> None:
    app, server = sandbox
    listed = cli(tmp_path, "connectors", "--json")
    assert listed.returncode == 0 and "google_data_manager" in listed.stdout
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN)
    rows = ["contact_id,email,country,funnel_stage,consent_ad_user_data,consent_ad_personalization"]
    rows += [f"C{i},Person.{i}@gmail.com,US,{'awareness' if i % 3 else 'conversion'},yes,yes" for i in range(60)]
    (tmp_path / "contacts.csv").write_text("\n".join(rows) + "\n")

    dry = cli(tmp_path, "run", "campaign.yaml", "--dry-run", "--outbox", "outbox", "--json")
    assert dry.returncode == 0, dry.stderr
    assert app.requests == [], "a dry run must send nothing"
    outbox = (tmp_path / "outbox" / "google_data_manager.jsonl").read_text()
    assert ":ingest" in outbox and "/token" in outbox
    for secret in (CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in outbox + dry.stdout + dry.stderr

    done = cli(tmp_path, "run", "campaign.yaml", "--endpoint", f"google_data_manager={server.url}", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)["platforms"]["google_data_manager"]
    lists = {v["name"]: v for v in lists_of(app).values()}
    assert set(lists) == {"DM awareness", "DM conversion"}
    assert lists["DM awareness"]["duration"] == "7776000s"
    pushed = sum(len(v["members"]) for v in lists.values())
    assert 0 < pushed == sum(s["added"] for s in summary["stages"].values()) < 60  # the holdout stayed home
    hashes = {e for list_id in lists_by_id(app) for e in emails_in(app, list_id)}
    assert len(hashes) == pushed and hashes <= {sha256_hex(f"person{i}@gmail.com") for i in range(60)}  # Gmail dots go


def lists_by_id(app: GoogleDataManagerSandbox) -> list[str]:
    return list(lists_of(app))
