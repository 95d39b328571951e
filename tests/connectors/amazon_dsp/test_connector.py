"""The Amazon DSP connector against its sandbox over real HTTP: tokens, contract, consent, faults, dry run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import quote

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
from crm_activation.connectors import amazon_dsp
from crm_activation.connectors.amazon_dsp import (
    AmazonDspAccount,
    AmazonDspConnector,
    AmazonDspCredentials,
    AmazonDspSandbox,
)
from crm_activation.connectors.amazon_dsp.api import CLIENT_ID_HEADER, LoginWithAmazon, build_record
from crm_activation.connectors.amazon_dsp.settings import EXTERNAL_USER_ID, MEDIA_TYPE, external_user_id
from crm_activation.normalization import sha256_hex
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.redaction import Redactor

from ..sandbox_http import sandbox_http

CLIENT_ID = "amzn1.application-oa2-client.0123456789abcdef0123456789abcdef"
CLIENT_SECRET = "amzn1.oa2-cs.v1.sandboxSECRET0123456789abcdef"
REFRESH_TOKEN = "Atzr|IwEBIsandboxREFRESH0123456789abcdef"
ACCOUNT = AmazonDspAccount(advertiser_id="5830184726450123")
SPEC = AudienceSpec(key="spring-sale/awareness", name="Spring sale - awareness", description="crm-activation test")


@pytest.fixture(scope="module")
def creds() -> AmazonDspCredentials:
    return AmazonDspCredentials(
        client_id=SecretStr(CLIENT_ID), client_secret=SecretStr(CLIENT_SECRET), refresh_token=SecretStr(REFRESH_TOKEN)
    )


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("amazon_dsp") / "sandbox.jsonl"


@pytest.fixture(scope="module")
def running(creds: AmazonDspCredentials, log_file: Path) -> Iterator[tuple[AmazonDspSandbox, SandboxServer]]:
    app = AmazonDspSandbox(creds)
    with SandboxServer(app, log_path=log_file) as server:  # one server for the module: stopping one takes 0.5 s
        yield app, server


@pytest.fixture
def sandbox(running: tuple[AmazonDspSandbox, SandboxServer], log_file: Path) -> tuple[AmazonDspSandbox, SandboxServer]:
    running[0].reset()
    log_file.write_text("")  # the JSON-lines log on disk, as `run --sandbox` writes it (redacted)
    return running


def make_http(server: SandboxServer, **overrides) -> PlatformHttp:
    return sandbox_http(server, AmazonDspConnector, **overrides)


def make_connector(server: SandboxServer, creds, account: AmazonDspAccount = ACCOUNT, **kw) -> AmazonDspConnector:
    sandboxed = AmazonDspConnector.for_sandbox(account, server.url)
    return AmazonDspConnector(sandboxed, creds, make_http(server, **kw))


def to_member(
    contact_id: str, raw: dict[IdentifierKind, str], country: str | None = "US", consent: bool | None = None
) -> Member:
    """What the engine hands the connector: each value normalized by the connector's rule, hashed when declared."""
    fields = {}
    for kind, value in raw.items():
        rule = AmazonDspConnector.rule_for(kind)
        assert rule is not None
        normalized = rule.normalize(value, country)
        fields[rule.key] = sha256_hex(normalized) if rule.hashed else normalized
    return Member(contact_id, fields, country, {"ad_user_data": consent, "ad_personalization": consent})


def members(start: int, stop: int, country: str = "US", consent: bool | None = None) -> list[Member]:
    return [
        to_member(f"c{i}", {IdentifierKind.EMAIL: f"User{i}@Example.com", IdentifierKind.COUNTRY: country}, country,
                  consent)
        for i in range(start, stop)
    ]


def record_for(member: Member, action: str = "CREATE") -> dict:
    return build_record(member, ACCOUNT.advertiser_id, action)


def post_records(connector: AmazonDspConnector, audience: AudienceRef, records: list[dict]) -> HttpResponse:
    """Send records as a client that skips the connector's own checks would."""
    body = {"audienceId": int(audience.remote_id), "records": records}
    headers = {"Content-Type": MEDIA_TYPE}
    return connector.http.request("POST", "/amc/audiences/records", json_body=body, headers=headers)


def ext(contact_id: str) -> str:
    return external_user_id(ACCOUNT.advertiser_id, contact_id)


def ids_of(app: AmazonDspSandbox, audience: AudienceRef) -> set[str]:
    return set(app.state()["audiences"][audience.remote_id]["members"])


def ids_for(batch: list[Member]) -> set[str]:
    return {ext(m.contact_id) for m in batch}


def calls(app: AmazonDspSandbox, method: str, path: str) -> list[dict]:
    return [r for r in app.requests if r["method"] == method and r["path"] == path]


def sent_records(app: AmazonDspSandbox) -> list[dict]:
    return [rec for call in calls(app, "POST", "/amc/audiences/records") for rec in json.loads(call["body"])["records"]]


# -- declarations ----------------------------------------------------------------------------------------------
def test_registers_through_the_entry_point() -> None:
    if "amazon_dsp" not in {ep.name for ep in entry_points(group="crm_activation")}:
        pytest.skip("the amazon_dsp entry point is not declared in pyproject.toml yet")
    assert collect_connectors(make_plugin_manager())["amazon_dsp"] is AmazonDspConnector


def test_plugin_module_registers_a_valid_connector() -> None:
    manager = make_plugin_manager(extra_plugins=[amazon_dsp], load_entry_points=False)
    assert collect_connectors(manager) == {"amazon_dsp": AmazonDspConnector}  # collect validates declarations
    described = AmazonDspConnector.describe()
    assert described["max_batch_size"] == 6000 and described["capabilities"] == ["remove"]
    assert all(rule.source for rule in AmazonDspConnector.identifier_rules)


def test_account_settings_follow_the_region() -> None:
    assert ACCOUNT.base_url == "https://advertising-api.amazon.com"
    assert ACCOUNT.token_url == "https://api.amazon.com/auth/o2/token"
    eu = AmazonDspAccount(advertiser_id=" 42 ", region="eu", country_code="uk")
    assert (eu.advertiser_id, eu.country_code) == ("42", "GB")
    assert eu.base_url == "https://advertising-api-eu.amazon.com"
    assert eu.token_url == "https://api.amazon.co.uk/auth/o2/token"
    fe = AmazonDspAccount(advertiser_id="42", region="FE")
    assert fe.base_url == "https://advertising-api-fe.amazon.com"
    assert fe.token_url == "https://api.amazon.co.jp/auth/o2/token"
    for bad in ({"advertiser_id": "adv-1"}, {"region": "US"}, {"ttl_seconds": -1}, {"country_code": "Narnia"},
                {"job_wait_seconds": -1}):
        with pytest.raises(ValidationError):
            AmazonDspAccount(**({"advertiser_id": "1"} | bad))


def test_for_sandbox_moves_the_api_and_the_token_endpoint() -> None:
    moved = AmazonDspConnector.for_sandbox(AmazonDspAccount(advertiser_id="1", region="EU"), "http://127.0.0.1:9")
    assert moved.base_url == "http://127.0.0.1:9"
    assert moved.token_url == "http://127.0.0.1:9/auth/o2/token"


def test_identifier_rules_give_amazon_values() -> None:
    member = to_member(
        "c1",
        {
            IdentifierKind.EMAIL: " John_Doe+News@Example.com ",
            IdentifierKind.PHONE: "+1 (415) 555-0123",
            IdentifierKind.FIRST_NAME: "Zoë-Ann",
            IdentifierKind.CITY: "San Francisco",
            IdentifierKind.ZIP: "SW1A 1AA",
            IdentifierKind.COUNTRY: "uk",
        },
    )
    assert member.fields["email"] == sha256_hex("johndoenews@example.com")
    assert member.fields["phone"] == sha256_hex("14155550123")
    assert member.fields["firstname"] == sha256_hex("zoeann")
    assert member.fields["city"] == sha256_hex("sanfrancisco")
    assert member.fields["postal"] == sha256_hex("sw1a1aa")
    assert member.fields["countryCode"] == "GB"  # in clear, as Amazon wants it


def test_external_user_id_is_keyed_stable_and_valid() -> None:
    value = external_user_id("5830184726450123", "jane@example.com")
    assert value == external_user_id("5830184726450123", "jane@example.com")
    assert EXTERNAL_USER_ID.match(value) and len(value) == 64
    assert value != sha256_hex("jane@example.com")  # not the hashed e-mail Amazon matches on
    assert value != external_user_id("999", "jane@example.com")  # not linkable across advertisers
    assert "jane" not in value


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "invalid_grant", "error_description": "invalid grant parameter"}, Action.CONFIG_ERROR),
        (401, {"error": "invalid_client", "error_description": "Client authentication failed"}, Action.CONFIG_ERROR),
        (503, {"error": "temporarily_unavailable"}, Action.RETRY),
        (401, {"code": "UNAUTHORIZED", "details": "Not authorized to access scope 123"}, Action.CONFIG_ERROR),
        (401, {"code": "UNAUTHORIZED", "details": "Amazon-Advertising-API-ClientId is missing"}, Action.CONFIG_ERROR),
        (401, {"code": "UNAUTHORIZED", "details": "The access token is expired"}, None),
        (429, {"code": "TOO_MANY_REQUESTS", "details": "Retry later"}, None),
        (400, {"message": "records[0]: action must be CREATE or DELETE"}, None),
        (200, {"error": "invalid_grant"}, None),
    ],
)
def test_classifier_reads_amazon_error_bodies(status: int, body: dict, expected: Action | None) -> None:
    assert AmazonDspConnector.classify_response(HttpResponse(status, {}, json.dumps(body).encode())) is expected


# -- Login with Amazon -----------------------------------------------------------------------------------------
def test_one_token_serves_many_calls_with_amazon_headers(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    connector.ensure_audience(SPEC, audience)
    assert len(calls(app, "POST", "/auth/o2/token")) == 1
    for call in app.requests[1:]:
        assert call["headers"]["authorization"] == "***" and call["headers"]["amazon-advertising-api-clientid"] == "***"
        assert call["headers"]["accept"] == MEDIA_TYPE and call["status"] < 300
    assert calls(app, "POST", "/amc/audiences/metadata")[0]["headers"]["content-type"] == MEDIA_TYPE
    assert "amazon-advertising-api-scope" not in app.requests[-1]["headers"]


def test_token_is_renewed_before_it_expires(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(token_lifetime=0.6)  # renewed early (by half its lifetime at most): after 0.3 s
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    time.sleep(0.6)
    connector.ensure_audience(SPEC, audience)
    assert len(calls(app, "POST", "/auth/o2/token")) == 2
    assert all(r["status"] != 401 for r in app.requests)


def test_a_401_mid_run_refreshes_the_token_once_and_continues(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, members(0, 10))
    app.oauth.expire()  # Amazon's clock is ahead of ours: the token we trust is refused
    connector.add_members(audience, members(10, 20))
    assert [r["status"] for r in app.requests].count(401) == 1
    assert len(calls(app, "POST", "/auth/o2/token")) == 2
    assert ids_of(app, audience) == ids_for(members(0, 20))


def test_tokens_refused_on_first_use_are_a_configuration_error(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(token_lifetime=0.0)  # every token is dead on arrival: no refresh can help
    with pytest.raises(ConfigError, match="newly issued"):
        make_connector(server, creds).ensure_audience(SPEC, None)
    assert len(calls(app, "POST", "/auth/o2/token")) == 3


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("refresh_token", "Atzr|IwEBIrevokedREFRESH999999", "invalid_grant"),
        ("client_secret", "amzn1.oa2-cs.v1.wrongSECRET99", "invalid_client"),
    ],
)
def test_refused_credentials_are_a_configuration_error_without_secrets(sandbox, creds, log_file, field, value, code):
    app, server = sandbox
    wrong = creds.model_copy(update={field: SecretStr(value)})
    with pytest.raises(ConfigError, match=code) as caught:
        make_connector(server, wrong).check()
    assert len(calls(app, "POST", "/auth/o2/token")) == 1  # never retried, never "refreshed"
    logged = log_file.read_text()
    assert "/auth/o2/token" in logged
    for secret in (value, REFRESH_TOKEN, CLIENT_SECRET, CLIENT_ID):
        assert secret not in str(caught.value)
        assert secret not in logged and quote(secret, safe="") not in logged


def test_a_missing_client_id_header_is_a_configuration_error(sandbox, creds) -> None:
    app, server = sandbox

    class ForgetsClientId(LoginWithAmazon):
        def apply(self, headers, params):
            super().apply(headers, params)
            del headers[CLIENT_ID_HEADER]

    connector = make_connector(server, creds)
    token_url = connector.account.token_url
    connector.http.auth = ForgetsClientId(connector.http, token_url, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN)
    with pytest.raises(ConfigError, match="ClientId"):
        connector.ensure_audience(SPEC, None)
    assert len(calls(app, "POST", "/auth/o2/token")) == 1


# -- audiences -------------------------------------------------------------------------------------------------
def test_ensure_audience_is_idempotent_and_recreates_a_missing_one(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    first = connector.ensure_audience(SPEC, None)
    assert int(first.remote_id) > 2**53  # a JSON number beyond float precision, kept exactly as text
    assert connector.ensure_audience(SPEC, first) == first
    assert list(app.state()["audiences"]) == [first.remote_id]
    created = calls(app, "POST", "/amc/audiences/metadata")[0]["body"]
    assert '"advertiserId": 5830184726450123' in created  # a number, as the API wants
    body = json.loads(created)
    assert body["metadata"] == {"externalAudienceId": SPEC.marker} and "countryCode" not in body
    assert body["description"] == f"crm-activation test ({SPEC.marker})"

    app.delete_audience(first.remote_id)
    again = connector.ensure_audience(SPEC, first)
    assert again.remote_id != first.remote_id and again.key == SPEC.key
    assert connector.ensure_audience(SPEC, again) == again


def test_two_campaigns_with_one_audience_name_get_two_audiences_each_marked(sandbox, creds) -> None:
    app, server = sandbox
    spring = SPEC.model_copy(update={"campaign": "spring-sale", "description": "x" * 1200})
    autumn = spring.model_copy(update={"campaign": "autumn-sale", "key": "autumn-sale/awareness"})
    connector = make_connector(server, creds)
    first, other = connector.ensure_audience(spring, None), connector.ensure_audience(autumn, None)
    assert first.remote_id != other.remote_id
    bodies = [json.loads(c["body"]) for c in calls(app, "POST", "/amc/audiences/metadata")]
    assert [b["metadata"]["externalAudienceId"] for b in bodies] == [spring.marker, autumn.marker]
    assert all(len(b["description"]) == 1000 and b["description"].endswith(f"({m})")  # cut, marker kept
               for b, m in zip(bodies, (spring.marker, autumn.marker), strict=True))


def test_short_names_ttl_and_audience_country(sandbox, creds) -> None:
    app, server = sandbox
    account = AmazonDspAccount(advertiser_id=ACCOUNT.advertiser_id, ttl_seconds=604800, country_code="de")
    audience = make_connector(server, creds, account).ensure_audience(AudienceSpec(key="k", name="VIP"), None)
    body = json.loads(calls(app, "POST", "/amc/audiences/metadata")[0]["body"])
    assert (body["name"], body["countryCode"], body["metadata"]["ttl"]) == ("VIP (crm-activation)", "DE", 604800)
    assert app.state()["audiences"][audience.remote_id]["name"] == "VIP (crm-activation)"


def test_an_advertiser_the_user_cannot_manage_is_a_configuration_error(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(advertiser_ids=["111"])
    with pytest.raises(ConfigError, match="403"):
        make_connector(server, creds).ensure_audience(SPEC, None)


def test_the_vendor_media_type_is_enforced(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    with pytest.raises(FatalError) as caught:  # plain application/json
        connector.http.request("POST", "/amc/audiences/metadata", json_body=connector.audience_body(SPEC))
    assert caught.value.response.status == 415
    assert caught.value.response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert app.state()["audiences"] == {}


# -- membership ------------------------------------------------------------------------------------------------
def test_add_remove_reach_the_end_state_and_re_adding_is_idempotent(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = members(0, 100)
    result = connector.add_members(audience, batch)
    connector.add_members(audience, batch)
    assert ids_of(app, audience) == ids_for(batch)
    assert result.received == 100 and result.invalid == 0 and result.job_id
    removed = connector.remove_members(audience, batch[:40])
    assert removed.received == 40 and removed.job_id != result.job_id
    assert ids_of(app, audience) == ids_for(batch[40:])
    assert [r["action"] for r in sent_records(app)] == ["CREATE"] * 200 + ["DELETE"] * 40


def test_13000_members_go_in_requests_of_at_most_6000(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    everyone = members(0, 13_000)
    size = AmazonDspConnector.max_batch_size
    for i in range(0, len(everyone), size):
        connector.add_members(audience, everyone[i : i + size])
    uploads = calls(app, "POST", "/amc/audiences/records")
    assert [len(json.loads(c["body"])["records"]) for c in uploads] == [6000, 6000, 1000]
    assert ids_of(app, audience) == ids_for(everyone)


def test_batches_over_the_limit_are_refused_by_connector_and_sandbox(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    too_many = members(0, 6001)
    with pytest.raises(ValueError, match="6000"):
        connector.add_members(audience, too_many)
    with pytest.raises(FatalError, match="at most 6000"):
        post_records(connector, audience, [record_for(m) for m in too_many])
    assert app.state()["audiences"][audience.remote_id]["members"] == []


# -- consent and per-record errors ----------------------------------------------------------------------------
def test_uk_and_eea_records_are_sent_only_with_recorded_consent(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    email = IdentifierKind.EMAIL
    batch = [
        to_member("gb-yes", {email: "a@example.co.uk", IdentifierKind.COUNTRY: "GB"}, "GB", True),
        to_member("gb-unknown", {email: "b@example.co.uk", IdentifierKind.COUNTRY: "uk"}, "UK", None),
        to_member("de-no", {email: "c@example.de"}, "DE", False),
        to_member("us-unknown", {email: "d@example.com"}, "US", None),
        to_member("fr-yes", {email: "e@example.fr"}, "FR", True),
    ]
    result = connector.add_members(audience, batch)
    assert {r.contact_id for r in result.rejections} == {"gb-unknown", "de-no"}
    assert all("consent_ad_user_data" in r.reason and "@" not in r.reason for r in result.rejections)
    assert result.received == 3 and result.invalid == 2
    records = {r["externalUserId"]: r for r in sent_records(app)}
    assert set(records) == {ext("gb-yes"), ext("us-unknown"), ext("fr-yes")}  # the refused were never sent
    assert records[ext("gb-yes")]["userConsent"] == {
        "consent": {"amzn": {"amznUserData": "GRANTED"}},
        "geo": {"countryCode": "GB"},
    }
    assert records[ext("gb-yes")]["countryCode"] == "GB"
    assert "userConsent" not in records[ext("us-unknown")]
    assert ids_of(app, audience) == {ext("gb-yes"), ext("us-unknown"), ext("fr-yes")}
    connector.remove_members(audience, [batch[0]])  # withdrawing data needs no consent check
    assert ids_of(app, audience) == {ext("us-unknown"), ext("fr-yes")}


def test_country_less_records_in_the_eu_region_need_consent(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds, AmazonDspAccount(advertiser_id=ACCOUNT.advertiser_id, region="EU"))
    audience = connector.ensure_audience(SPEC, None)
    batch = [to_member("none", {IdentifierKind.EMAIL: "a@example.com"}, None, None),
             to_member("yes", {IdentifierKind.EMAIL: "b@example.com"}, None, True)]
    result = connector.add_members(audience, batch)
    assert [r.contact_id for r in result.rejections] == ["none"]
    assert ids_of(app, audience) == {ext("yes")}


def test_sandbox_refuses_uk_records_without_granted_consent_per_record(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    ok, missing, denied = members(0, 3, country="GB")
    records = [record_for(ok), record_for(missing), record_for(denied)]
    records[0]["userConsent"] = {"consent": {"amzn": {"amznUserData": "GRANTED"}}}
    records[2]["userConsent"] = {"consent": {"amzn": {"amznUserData": "DENIED", "amznAdStorage": "DENIED"}}}
    job = post_records(connector, audience, records)
    assert job.status == 202
    status = connector.http.request("GET", f"/amc/audiences/records/{job.json()['jobRequestId']}").json()
    assert status["jobState"] == "SUCCEEDED"
    assert {(i["externalId"], i["error"]) for i in status["invalidRecords"]} == {
        (ext("c1"), "UK/EEA record without a consent signal"),
        (ext("c2"), "consent denied (amznUserData DENIED)"),
    }
    assert ids_of(app, audience) == {ext("c0")}


def test_malformed_records_are_refused_whole_and_bad_values_per_record(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    good = members(0, 3)
    raw_email = Member("raw-email", {"email": "someone@example.com"}, "US")
    result = connector.add_members(audience, [*good, raw_email])
    assert result.invalid == 1
    assert [(r.contact_id, r.reason) for r in result.rejections] == [
        ("raw-email", "Amazon: hashedPII.email is not a SHA-256 hex digest")
    ]
    assert ids_of(app, audience) == ids_for(good)
    for broken in ({"externalUserId": "crm id with spaces"}, {"action": "ADD"}, {"hashedPII": [{"zip": "x"}]},
                   {"countryCode": "UK"}):
        with pytest.raises(FatalError) as caught:
            post_records(connector, audience, [record_for(good[0]) | broken])
        assert caught.value.response.status == 400 and "records[0]" in caught.value.response.json()["message"]


def test_partial_rejects_are_reported_and_not_added(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.set_faults(FaultPlan(partial_reject_rate=1.0, seed=1))
    batch = members(0, 300)
    result = connector.add_members(audience, batch)
    assert 10 < result.invalid < 60 and len(result.rejections) == result.invalid
    rejected = {r.contact_id for r in result.rejections}
    assert ids_of(app, audience) == ids_for([m for m in batch if m.contact_id not in rejected])


# -- upload jobs -----------------------------------------------------------------------------------------------
def test_job_status_is_polled_with_backoff_until_final(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(job_pending_polls=2)
    slept: list[float] = []
    connector = make_connector(server, creds, sleep=slept.append)
    audience = connector.ensure_audience(SPEC, None)
    result = connector.add_members(audience, members(0, 5))
    polls = [r for r in app.requests if r["method"] == "GET" and r["path"].startswith("/amc/audiences/records/")]
    assert [r["path"].rsplit("/", 1)[1] for r in polls] == [result.job_id] * 3
    assert slept == [1.0, 2.0]


def test_a_job_still_pending_is_left_to_amazon(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(job_pending_polls=100)
    slept: list[float] = []
    account = AmazonDspAccount(advertiser_id=ACCOUNT.advertiser_id, job_wait_seconds=5)
    connector = make_connector(server, creds, account, sleep=slept.append)
    audience = connector.ensure_audience(SPEC, None)
    result = connector.add_members(audience, members(0, 5))
    assert result.job_id and result.rejections == () and sum(slept) == 5.0
    assert ids_of(app, audience) == ids_for(members(0, 5))  # applied; only the report is pending


def test_a_failed_job_is_a_fatal_error(sandbox, creds) -> None:
    _, server = sandbox
    connector = make_connector(server, creds)
    with pytest.raises(FatalError, match="FAILED"):
        connector.add_members(AudienceRef(key=SPEC.key, remote_id="424242"), members(0, 2))


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "fault"),
    [
        (FaultPlan(throttle_rate=0.3, seed=3), "throttle"),
        (FaultPlan(server_error_rate=0.3, seed=5), "server_error"),
        (FaultPlan(timeout_rate=0.2, timeout_seconds=0.5, seed=2), "timeout"),
    ],
)
def test_faults_still_reach_the_exact_end_state(sandbox, creds, plan: FaultPlan, fault: str) -> None:
    app, server = sandbox
    app.reset(job_pending_polls=1)
    policy = RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=0.3)
    connector = make_connector(server, creds, policy=policy)
    audience = connector.ensure_audience(SPEC, None)  # creation is not idempotent on Amazon: done before faults
    app.set_faults(plan)
    app.oauth.expire()  # the token endpoint gets faults too
    everyone = members(0, 400)
    for i in range(0, 400, 100):
        connector.add_members(audience, everyone[i : i + 100])
    connector.remove_members(audience, everyone[:50])
    assert ids_of(app, audience) == ids_for(everyone[50:])
    faulted = [r for r in app.requests if r["fault"] == fault]
    assert faulted, "the plan injected no fault: the test would prove nothing"
    if fault == "throttle":
        assert all(r["status"] == 429 for r in faulted)


def test_throttling_is_429_with_retry_after_and_it_is_honoured(sandbox, creds) -> None:
    app, server = sandbox
    slept: list[float] = []
    policy = RetryPolicy(max_attempts=3, initial_wait=0.001, max_wait=5.0)
    connector = make_connector(server, creds, policy=policy, sleep=slept.append)
    connector.check()
    app.set_faults(FaultPlan(throttle_rate=1.0, retry_after=2))
    with pytest.raises(RateLimitedError) as caught:
        connector.ensure_audience(SPEC, None)
    response = caught.value.response
    assert response.status == 429 and response.headers["Retry-After"] == "2"
    assert response.json()["code"] == "TOO_MANY_REQUESTS"
    assert slept == [2.0, 2.0]


# -- redaction and dry run -------------------------------------------------------------------------------------
def test_sandbox_log_masks_credentials_and_issued_tokens(sandbox, creds, log_file) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.oauth.expire()
    connector.add_members(audience, members(0, 3))
    issued = list(app.oauth.issued)
    assert len(issued) == 2
    logged = log_file.read_text()
    assert len(logged.splitlines()) == len(app.requests)
    for secret in (*issued, REFRESH_TOKEN, CLIENT_SECRET, CLIENT_ID):
        assert secret not in logged and quote(secret, safe="") not in logged
        assert connector.http.redactor.redact(f"Bearer {secret}") == "Bearer ***"


def test_dry_run_records_requests_masked_and_never_asks_for_a_token(sandbox, creds, tmp_path) -> None:
    app, server = sandbox
    redactor = Redactor()
    connector = make_connector(server, creds, outbox=Outbox(tmp_path, redactor), redactor=redactor)
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    assert audience.remote_id == connector.dry_run_audience(SPEC)["audienceId"]
    result = connector.add_members(audience, members(0, 3))
    assert result.received == 3 and result.job_id
    connector.remove_members(audience, members(0, 1))
    assert app.requests == []  # no token exchange, no API call: nothing reached Amazon
    text = (tmp_path / "amazon_dsp.jsonl").read_text()
    for secret in (REFRESH_TOKEN, CLIENT_SECRET, CLIENT_ID):
        assert secret not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["method"], line["url"].split("/amc/")[1]) for line in lines] == [
        ("POST", "audiences/metadata"),
        ("POST", "audiences/records"),
        ("POST", "audiences/records"),
    ]
    assert all(line["headers"]["Authorization"] == line["headers"][CLIENT_ID_HEADER] == "***" for line in lines)
    assert [r["action"] for r in lines[2]["body"]["records"]] == ["DELETE"]
