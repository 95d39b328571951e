"""The LinkedIn connector against its sandbox over real HTTP: contract, end state, faults, tokens, dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import requests
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
    InvalidIdentifier,
    Member,
    PlatformHttp,
    RateLimitedError,
    RetryPolicy,
    SandboxServer,
)
from crm_activation.connectors import linkedin
from crm_activation.connectors.linkedin import LinkedInAccount, LinkedInConnector, LinkedInCredentials, LinkedInSandbox
from crm_activation.connectors.linkedin.connector import _batch_result
from crm_activation.normalization import sha256_hex
from crm_activation.sdk.connector import validate_connector_class
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.redaction import Redactor

from ..sandbox_http import sandbox_http

TOKEN = "AQXsandboxACCESStoken0123456789abcdef"
REFRESH = "AQWsandboxREFRESHtoken9876543210fedcba"
CLIENT_SECRET = "client-secret-0123456789"
CREDS = LinkedInCredentials(
    access_token=SecretStr(TOKEN),
    refresh_token=SecretStr(REFRESH),
    client_id="86client",
    client_secret=SecretStr(CLIENT_SECRET),
)
ACCOUNT = LinkedInAccount(ad_account_id="urn:li:sponsoredAccount:507404993", source_platform="CRM_ACTIVATION")
MAID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
SPEC = AudienceSpec(key="spring-sale/awareness", name="Spring sale - awareness", description="CRM push")
LIFETIME = 3600.0
NOW = [1_800_000_000.0]  # the sandbox's clock: tests move it to expire tokens


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[LinkedInSandbox, SandboxServer]]:
    app = LinkedInSandbox(CREDS, token_lifetime=LIFETIME, clock=lambda: NOW[0])
    with SandboxServer(app) as server:  # one server for the module: stopping one takes half a second
        yield app, server


@pytest.fixture
def sandbox(running: tuple[LinkedInSandbox, SandboxServer]) -> tuple[LinkedInSandbox, SandboxServer]:
    app, _ = running
    app.warmup_requests = 0
    app.reset()
    return running


def make_http(server: SandboxServer, **overrides) -> PlatformHttp:
    return sandbox_http(server, LinkedInConnector, read_timeout=10.0, **overrides)


def make_connector(
    server: SandboxServer, creds: LinkedInCredentials = CREDS, account: LinkedInAccount = ACCOUNT, **kw
) -> LinkedInConnector:
    return LinkedInConnector(LinkedInConnector.for_sandbox(account, server.url), creds, make_http(server, **kw))


def to_member(contact_id: str, raw: dict[IdentifierKind, str], country: str | None = "US") -> Member:
    """What the engine hands the connector: each value normalized by the connector's rule, hashed when declared."""
    fields = {}
    for kind, value in raw.items():
        rule = LinkedInConnector.rule_for(kind)
        assert rule is not None
        normalized = rule.normalize(value, country)
        fields[rule.key] = sha256_hex(normalized) if rule.hashed else normalized
    return Member(contact_id=contact_id, fields=fields, country=country)


def members(start: int, stop: int) -> list[Member]:
    return [to_member(f"c{i}", {IdentifierKind.EMAIL: f"User{i}@Example.com"}) for i in range(start, stop)]


def ids_of(app: LinkedInSandbox, audience: AudienceRef) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted(m.items())) for m in app.state()["audiences"][audience.remote_id]["members"]}


def ids_for(batch: list[Member], maid_type: str = "GOOGLE_AID") -> set[tuple[tuple[str, str], ...]]:
    names = {"SHA256_EMAIL": "SHA256_EMAIL", "MAID": maid_type}
    return {tuple(sorted((names[k], v) for k, v in m.fields.items() if k in names)) for m in batch}


def calls(app: LinkedInSandbox, method: str, suffix: str) -> list[dict]:
    return [r for r in app.requests if r["method"] == method and r["path"].endswith(suffix)]


# -- declarations ----------------------------------------------------------------------------------------------
def test_declarations_are_valid_and_the_hook_registers_the_connector() -> None:
    validate_connector_class(LinkedInConnector)
    manager = make_plugin_manager(extra_plugins=[linkedin], load_entry_points=False)
    assert collect_connectors(manager)["linkedin"] is LinkedInConnector
    described = LinkedInConnector.describe()
    assert described["max_batch_size"] == 5_000 and described["match_keys"] == ["email", "maid"]
    assert described["capabilities"] == ["remove"] and described["sandbox"]
    # Built as the engine builds it: credentials and a fault plan, which must survive construction.
    assert LinkedInSandbox(CREDS, FaultPlan(throttle_rate=1.0)).faults.throttle_rate == 1.0


def test_registers_through_the_entry_point() -> None:
    if "linkedin" not in {ep.name for ep in entry_points(group="crm_activation")}:
        pytest.skip("the `linkedin` entry point is not in pyproject.toml yet")
    assert collect_connectors(make_plugin_manager())["linkedin"] is LinkedInConnector


def test_account_and_credentials_are_validated() -> None:
    assert ACCOUNT.ad_account_id == "507404993" and ACCOUNT.account_urn == "urn:li:sponsoredAccount:507404993"
    for bad in ({"ad_account_id": "act_1"}, {"source_platform": "segment"}, {"api_version": "2026-08"},
                {"api_version": "202613"}, {"maid_id_type": "IDFA"}):
        with pytest.raises(ValidationError):
            LinkedInAccount(**({"ad_account_id": "1", "source_platform": "X"} | bad))
    with pytest.raises(ValidationError, match="source_platform"):
        LinkedInAccount(ad_account_id="1")  # LinkedIn assigns the enum: there is no default to fall back on
    with pytest.raises(ValidationError, match="client_id and client_secret"):
        LinkedInCredentials(access_token=SecretStr(TOKEN), refresh_token=SecretStr(REFRESH))
    assert CREDS.can_refresh and not LinkedInCredentials(access_token=SecretStr(TOKEN)).can_refresh


def test_identifier_rules_give_linkedin_values() -> None:
    member = to_member(
        "c1",
        {
            IdentifierKind.EMAIL: " Test@Example.com ",
            IdentifierKind.MAID: MAID.upper(),
            IdentifierKind.FIRST_NAME: "  José   María ",
            IdentifierKind.LAST_NAME: "O'Neil",
            IdentifierKind.COUNTRY: "gb",
        },
    )
    assert member.fields == {
        "SHA256_EMAIL": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
        "MAID": MAID,
        "firstName": "José María",
        "lastName": "O'Neil",
        "country": "GB",
    }
    rule = LinkedInConnector.rule_for(IdentifierKind.FIRST_NAME)
    assert rule is not None and not rule.hashed
    with pytest.raises(InvalidIdentifier, match="35"):
        rule.normalize("A" * 36, None)
    assert LinkedInConnector.rule_for(IdentifierKind.PHONE) is None  # LinkedIn has no phone idType
    assert all(rule.source for rule in LinkedInConnector.identifier_rules)


@pytest.mark.parametrize(
    ("status", "url", "expected"),
    [
        (404, "https://api.linkedin.com/rest/dmpSegments/1/users", Action.RETRY),
        (404, "https://api.linkedin.com/rest/dmpSegments/1", None),
        (426, "https://api.linkedin.com/rest/dmpSegments", Action.CONFIG_ERROR),
        (401, "https://www.linkedin.com/oauth/v2/accessToken", Action.CONFIG_ERROR),
        (400, "https://www.linkedin.com/oauth/v2/accessToken", Action.CONFIG_ERROR),
        (503, "https://www.linkedin.com/oauth/v2/accessToken", None),
        (401, "https://api.linkedin.com/rest/dmpSegments", None),
        (429, "https://api.linkedin.com/rest/dmpSegments/1/users", None),
        (200, "https://api.linkedin.com/rest/dmpSegments/1/users", None),
    ],
)
def test_classifier(status: int, url: str, expected: Action | None) -> None:
    assert LinkedInConnector.classify_response(HttpResponse(status, {}, b"{}", url)) is expected


def test_for_sandbox_points_every_endpoint_at_the_sandbox() -> None:
    moved = LinkedInConnector.for_sandbox(ACCOUNT, "http://127.0.0.1:9/")
    assert isinstance(moved, LinkedInAccount)
    assert moved.base_url == "http://127.0.0.1:9" and moved.token_url == "http://127.0.0.1:9/oauth/v2/accessToken"
    assert not [v for v in moved.model_dump().values() if isinstance(v, str) and "linkedin.com" in v]


# -- account, headers, versions ------------------------------------------------------------------------------
def test_check_accepts_the_token_and_refuses_an_account_the_member_cannot_manage(sandbox) -> None:
    app, server = sandbox
    make_connector(server).check()
    assert app.requests[-1]["query"]["account"] == ["urn:li:sponsoredAccount:507404993"]
    app.reset(ad_account_ids=["507404993"])
    make_connector(server).check()
    other = LinkedInAccount(ad_account_id="999", source_platform="CRM_ACTIVATION")
    with pytest.raises(ConfigError, match="ACCESS_DENIED"):
        make_connector(server, account=other).check()


def test_a_sunset_version_is_a_configuration_error(sandbox) -> None:
    _, server = sandbox
    old = LinkedInAccount(ad_account_id="1", source_platform="CRM_ACTIVATION", api_version="202405")
    with pytest.raises(ConfigError, match="Requested version 20240501 is not active"):
        make_connector(server, account=old).check()


def test_sandbox_refuses_requests_without_linkedin_headers(sandbox) -> None:
    app, server = sandbox
    http = make_connector(server).http
    params = {"q": "account", "account": ACCOUNT.account_urn}
    with pytest.raises(FatalError) as caught:
        http.request("GET", "/rest/dmpSegments", params=params)
    assert caught.value.response.json()["code"] == "VERSION_MISSING"
    with pytest.raises(FatalError, match="INVALID_VERSION"):
        http.request("GET", "/rest/dmpSegments", params=params, headers={"LinkedIn-Version": "2026-08"})
    with pytest.raises(FatalError, match="X-Restli-Protocol-Version"):
        http.request("GET", "/rest/dmpSegments", params=params, headers={"LinkedIn-Version": "202608"})
    anonymous = requests.get(server.url + "/rest/dmpSegments", params=params, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["message"] == "Empty oauth2_access_token"
    assert app.state()["audiences"] == {}


# -- segments ----------------------------------------------------------------------------------------------
def test_ensure_audience_is_idempotent_and_finds_its_segment_by_source_segment_id(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    first = connector.ensure_audience(SPEC, None)
    assert connector.ensure_audience(SPEC, first) == first
    assert connector.ensure_audience(SPEC, None) == first  # the state database was lost: found again
    assert list(app.state()["audiences"]) == [first.remote_id]
    created = calls(app, "POST", "/dmpSegments")
    assert len(created) == 1
    assert json.loads(created[0]["body"]) == {
        "name": SPEC.name,
        "description": SPEC.description,
        "account": "urn:li:sponsoredAccount:507404993",
        "sourcePlatform": "CRM_ACTIVATION",
        "sourceSegmentId": SPEC.marker,  # the campaign's marker: how a lost state finds the segment again
        "type": "USER",
        "destinations": [{"destination": "LINKEDIN"}],
    }
    assert all(r["headers"]["linkedin-version"] == "202608" for r in app.requests)
    assert all(r["headers"]["x-restli-protocol-version"] == "2.0.0" for r in app.requests)
    other = connector.ensure_audience(AudienceSpec(key="spring-sale/conversion", name="Conversion"), None)
    assert other.remote_id != first.remote_id


def test_segments_are_told_apart_by_the_campaigns_marker_never_by_name(sandbox) -> None:
    app, server = sandbox
    spring = SPEC.model_copy(update={"campaign": "spring-sale"})
    autumn = spring.model_copy(update={"campaign": "autumn-sale", "key": "autumn-sale/awareness"})
    connector = make_connector(server)
    first = connector.ensure_audience(spring, None)
    other = connector.ensure_audience(autumn, None)
    assert other.remote_id != first.remote_id and spring.name == autumn.name
    assert make_connector(server).ensure_audience(autumn, None) == other  # state lost: found by its marker
    assert make_connector(server).ensure_audience(spring, None) == first
    assert len(app.state()["audiences"]) == 2


def test_the_finder_pages_like_restli(sandbox) -> None:
    _, server = sandbox
    connector = make_connector(server)
    body = {"name": "dup", "account": ACCOUNT.account_urn, "sourcePlatform": "CRM_ACTIVATION",
            "sourceSegmentId": SPEC.marker, "type": "USER", "destinations": [{"destination": "LINKEDIN"}]}
    headers = {"LinkedIn-Version": "202608", "X-Restli-Protocol-Version": "2.0.0"}
    for _ in range(12):
        connector.http.request("POST", "/rest/dmpSegments", json_body=body, headers=headers)
    params = {"q": "account", "account": ACCOUNT.account_urn}
    first = connector.http.request("GET", "/rest/dmpSegments", params=params, headers=headers).json()
    assert len(first["elements"]) == 10 and first["paging"] == {"start": 0, "count": 10, "total": 12, "links": []}
    rest = connector.http.request("GET", "/rest/dmpSegments", params={**params, "start": 10}, headers=headers).json()
    assert len(rest["elements"]) == 2


def test_a_deleted_segment_is_recreated(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    first = connector.ensure_audience(SPEC, None)
    app.delete_audience(first.remote_id)
    again = connector.ensure_audience(SPEC, first)
    assert again.remote_id != first.remote_id and again.key == SPEC.key
    assert connector.ensure_audience(SPEC, again) == again


def test_duplicate_segments_converge_on_the_oldest(sandbox) -> None:
    _, server = sandbox
    connector = make_connector(server)
    body = {"name": "dup", "account": ACCOUNT.account_urn, "sourcePlatform": "CRM_ACTIVATION",
            "sourceSegmentId": SPEC.marker, "type": "USER", "destinations": [{"destination": "LINKEDIN"}]}
    headers = {"LinkedIn-Version": "202608", "X-Restli-Protocol-Version": "2.0.0"}
    ids = [connector.http.request("POST", "/rest/dmpSegments", json_body=body, headers=headers) for _ in range(2)]
    oldest = ids[0].headers["x-linkedin-id"]  # as a create retried after a timeout leaves behind
    assert connector.ensure_audience(SPEC, None).remote_id == oldest


def test_a_create_that_timed_out_is_found_not_repeated_and_twins_resolve_to_the_oldest(sandbox) -> None:
    app, server = sandbox
    # Requests: find (1), create (2: applied, then answered too late), find again, which sees the segment.
    app.set_faults(FaultPlan(timeout_requests=frozenset({2}), timeout_seconds=1.0))
    connector = make_connector(server, policy=RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=0.3))
    audience = connector.ensure_audience(SPEC, None)
    app.set_faults(FaultPlan())
    assert [r["fault"] for r in app.requests if r["method"] == "POST"] == ["timeout"]  # no second create
    assert list(app.state()["audiences"]) == [audience.remote_id]
    twin = make_connector(server)._create(SPEC)  # as an older version's blind retry left them
    assert int(twin) > int(audience.remote_id)
    assert connector.ensure_audience(SPEC, None) == audience


def test_a_new_segment_answers_404_for_a_while_and_the_batch_is_retried(sandbox) -> None:
    app, server = sandbox
    app.warmup_requests = 2
    connector = make_connector(server)
    audience = connector.ensure_audience(SPEC, None)
    assert connector.add_members(audience, members(0, 3)).received == 3
    assert [r["status"] for r in calls(app, "POST", "/users")] == [404, 404, 200]
    assert ids_of(app, audience) == ids_for(members(0, 3))


# -- membership ----------------------------------------------------------------------------------------------
def test_11000_members_in_batches_of_at_most_5000_then_remove(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    audience = connector.ensure_audience(SPEC, None)
    everyone = members(0, 11_000)
    size = LinkedInConnector.max_batch_size
    results = [connector.add_members(audience, everyone[i : i + size]) for i in range(0, len(everyone), size)]
    sent = [json.loads(c["body"])["elements"] for c in calls(app, "POST", "/users")]
    assert [len(elements) for elements in sent] == [5_000, 5_000, 1_000]
    assert all(r["headers"]["x-restli-method"] == "BATCH_CREATE" for r in calls(app, "POST", "/users"))
    assert sum(r.received for r in results) == 11_000 and all(r.invalid == 0 for r in results)
    connector.add_members(audience, everyone[:100])  # re-adding is idempotent: LinkedIn answers 201 again
    result = connector.remove_members(audience, everyone[:40])
    assert result.received == 40 and result.invalid == 0
    assert json.loads(calls(app, "POST", "/users")[-1]["body"])["elements"][0]["action"] == "REMOVE"
    assert ids_of(app, audience) == ids_for(everyone[40:])
    assert connector.add_members(audience, []).received == 0


def test_batches_over_the_limit_are_refused_by_connector_and_sandbox(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    audience = connector.ensure_audience(SPEC, None)
    too_many = members(0, 5_001)
    with pytest.raises(ValueError, match="5000"):
        connector.add_members(audience, too_many)
    elements = [connector.element("ADD", m) for m in too_many]
    headers = {"LinkedIn-Version": "202608", "X-Restli-Protocol-Version": "2.0.0", "X-RestLi-Method": "BATCH_CREATE"}
    with pytest.raises(FatalError, match="at most 5000 elements"):
        path = f"/rest/dmpSegments/{audience.remote_id}/users"
        connector.http.request("POST", path, json_body={"elements": elements}, headers=headers)
    assert app.state()["audiences"][audience.remote_id]["members"] == []


def test_elements_carry_typed_ids_and_clear_fields(sandbox) -> None:
    app, server = sandbox
    person = to_member(
        "p1",
        {IdentifierKind.EMAIL: "ann@example.com", IdentifierKind.MAID: MAID, IdentifierKind.FIRST_NAME: "Ann",
         IdentifierKind.LAST_NAME: "Lee", IdentifierKind.COUNTRY: "us"},
    )
    for maid_type in ("GOOGLE_AID", "APPLE_IDFA"):
        app.reset()
        account = ACCOUNT.model_copy(update={"maid_id_type": maid_type})
        connector = make_connector(server, account=account)
        audience = connector.ensure_audience(SPEC, None)
        connector.add_members(audience, [person])
        element = json.loads(calls(app, "POST", "/users")[0]["body"])["elements"][0]
        assert element == {
            "action": "ADD",
            "userIds": [
                {"idType": "SHA256_EMAIL", "idValue": sha256_hex("ann@example.com")},
                {"idType": maid_type, "idValue": MAID},
            ],
            "firstName": "Ann",
            "lastName": "Lee",
            "country": "US",
        }
        assert ids_of(app, audience) == ids_for([person], maid_type)


def test_refused_elements_are_reported_per_contact_and_not_added(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    audience = connector.ensure_audience(SPEC, None)
    good = members(0, 5)
    bad = [
        Member("raw-email", {"SHA256_EMAIL": "someone@example.com"}),
        Member("upper-hash", {"SHA256_EMAIL": sha256_hex("x@example.com").upper()}),
        Member("bad-maid", {"MAID": "not-a-maid"}),
        Member("names-only", {"firstName": "Ann"}),
    ]
    batch = [good[0], *bad[:2], *good[1:], *bad[2:]]
    result = connector.add_members(audience, batch)
    assert result.received == 9 and result.invalid == 4
    assert [r.contact_id for r in result.rejections] == ["raw-email", "upper-hash", "bad-maid", "names-only"]
    assert all(r.reason.startswith("HTTP 400: ERROR ::") for r in result.rejections)
    assert not any("someone@example.com" in r.reason or "Ann" in r.reason for r in result.rejections)
    assert ids_of(app, audience) == ids_for(good)


def test_reasons_never_repeat_an_element_value_even_when_linkedin_echoes_it() -> None:
    batch = [Member("a", {"SHA256_EMAIL": "a" * 64, "firstName": "Zoë"}), Member("b", {"MAID": MAID})]
    elements = [
        {"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": "a" * 64}], "firstName": "Zoë"},
        {"action": "ADD", "userIds": [{"idType": "GOOGLE_AID", "idValue": MAID}]},
    ]
    echoed = [
        {"status": 400, "message": f"bad {'a' * 64} for Zoë"},
        {"status": 422, "error": {"message": f"no {MAID}"}},
    ]
    body = {"elements": echoed}
    result = _batch_result(body, batch, elements)
    assert [r.reason for r in result.rejections] == ["HTTP 400: bad *** for ***", "HTTP 422: no ***"]
    with pytest.raises(FatalError, match="1 element statuses for 2 elements"):
        _batch_result({"elements": [{"status": 201}]}, batch, elements)


def test_partial_rejects_are_reported_and_not_added(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    audience = connector.ensure_audience(SPEC, None)
    app.set_faults(FaultPlan(partial_reject_rate=1.0, seed=1))
    batch = members(0, 300)
    result = connector.add_members(audience, batch)
    assert 10 < result.invalid < 60 and len(result.rejections) == result.invalid
    rejected = {r.contact_id for r in result.rejections}
    assert ids_of(app, audience) == ids_for([m for m in batch if m.contact_id not in rejected])


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "fault"),
    [
        (FaultPlan(throttle_rate=0.3, seed=3), "throttle"),
        (FaultPlan(server_error_rate=0.3, seed=7), "server_error"),
        (FaultPlan(timeout_rate=0.25, timeout_seconds=0.6, seed=2), "timeout"),
    ],
)
def test_faults_still_reach_the_exact_end_state(sandbox, plan: FaultPlan, fault: str) -> None:
    app, server = sandbox
    app.set_faults(plan)
    connector = make_connector(server, policy=RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=0.4))
    audience = connector.ensure_audience(SPEC, None)  # a timed-out create may leave a twin: the oldest is used
    everyone = members(0, 400)
    for i in range(0, 400, 100):
        connector.add_members(audience, everyone[i : i + 100])
    connector.remove_members(audience, everyone[:50])
    assert ids_of(app, audience) == ids_for(everyone[50:])
    assert connector.ensure_audience(SPEC, None) == audience
    faulted = [r for r in app.requests if r["fault"] == fault]
    assert faulted, "the plan injected no fault: the test would prove nothing"
    if fault == "throttle":
        assert all(r["status"] == 429 for r in faulted)


def test_throttle_has_linkedin_shape_and_no_retry_after(sandbox) -> None:
    app, server = sandbox
    app.set_faults(FaultPlan(throttle_rate=1.0))
    connector = make_connector(server, policy=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01))
    with pytest.raises(RateLimitedError) as caught:
        connector.check()
    response = caught.value.response
    assert response.status == 429 and "Retry-After" not in response.headers
    assert response.json()["code"] == "TOO_MANY_REQUESTS" and response.json()["serviceErrorCode"] == 101
    assert connector.http.requests_sent == 2


# -- tokens, redaction, dry run ------------------------------------------------------------------------------
def test_an_expired_token_is_refreshed_transparently(tmp_path: Path) -> None:
    clock = [1_900_000_000.0]
    app = LinkedInSandbox(CREDS, token_lifetime=LIFETIME, clock=lambda: clock[0])
    with SandboxServer(app, log_path=tmp_path / "linkedin.jsonl") as server:
        connector = make_connector(server)
        audience = connector.ensure_audience(SPEC, None)
        for round_ in range(2):  # the refreshed token expires too, and is refreshed again
            clock[0] += LIFETIME + 1
            connector.add_members(audience, members(round_ * 10, round_ * 10 + 10))
        assert ids_of(app, audience) == ids_for(members(0, 20))
        assert [r["status"] for r in app.requests if r["path"] != "/rest/dmpSegments"] == [
            401, 200, 200, 401, 200, 200
        ]
        assert len(app.oauth.issued) == 2 and connector.http.auth.token == app.oauth.issued[-1]
        assert connector.http.redactor.redact(app.oauth.issued[-1]) == "***"
    log = (tmp_path / "linkedin.jsonl").read_text()
    assert "grant_type=refresh_token" in log
    assert not [s for s in (TOKEN, REFRESH, CLIENT_SECRET, *app.oauth.issued) if s in log]


def test_a_refused_token_without_refresh_grant_is_a_configuration_error(sandbox) -> None:
    _, server = sandbox
    wrong = LinkedInCredentials(access_token=SecretStr("AQXwrongTOKEN99999999"))
    with pytest.raises(ConfigError) as caught:
        make_connector(server, creds=wrong).check()
    assert "INVALID_ACCESS_TOKEN" in str(caught.value) and "AQXwrongTOKEN99999999" not in str(caught.value)


def test_a_revoked_app_is_a_configuration_error_without_leaking_secrets(sandbox) -> None:
    app, server = sandbox
    connector = make_connector(server)
    connector.check()
    app.oauth.revoke()
    with pytest.raises(ConfigError, match="invalid_grant") as caught:
        connector.check()
    assert not [s for s in (TOKEN, REFRESH, CLIENT_SECRET) if s in str(caught.value)]
    assert [r["status"] for r in app.requests[1:]] == [401, 400]


def test_dry_run_records_requests_with_the_token_masked(sandbox, tmp_path: Path) -> None:
    app, server = sandbox
    connector = make_connector(server, outbox=Outbox(tmp_path, Redactor([TOKEN])))
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    assert audience.remote_id == connector.dry_run_audience(SPEC)["id"]
    assert connector.add_members(audience, members(0, 3)).received == 3
    connector.remove_members(audience, members(0, 1))
    assert app.requests == []  # nothing reached the platform
    text = (tmp_path / "linkedin.jsonl").read_text()
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["method"] for line in lines] == ["GET", "GET", "POST", "GET", "POST", "POST"]
    assert all(line["headers"]["Authorization"] == "***" for line in lines)
    assert all(line["headers"]["LinkedIn-Version"] == "202608" for line in lines)
    assert lines[4]["headers"]["X-RestLi-Method"] == "BATCH_CREATE"
    assert [e["action"] for e in lines[5]["body"]["elements"]] == ["REMOVE"]
