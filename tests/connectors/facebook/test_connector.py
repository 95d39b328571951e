"""The Meta connector against its sandbox over real HTTP: contract, end state, faults, redaction, dry run."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from pydantic import SecretStr, ValidationError

from crm_activation import (
    Action,
    AudienceRef,
    AudienceSpec,
    ConfigError,
    Contact,
    FatalError,
    FaultPlan,
    HttpResponse,
    IdentifierKind,
    Member,
    PlatformHttp,
    QueryToken,
    RateLimitedError,
    RetryPolicy,
    SandboxServer,
)
from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials, FacebookSandbox
from crm_activation.connectors.facebook.settings import audience_gone
from crm_activation.normalization import sha256_hex
from crm_activation.pipeline.payload import NormalizationCache, PayloadBuilder
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.redaction import MASK, Redactor

from ..sandbox_http import FAULT_READ_TIMEOUT, sandbox_http

TOKEN = "EAAGsandboxTOKEN0123456789abcdef"
APP_SECRET = "app-secret-0123456789"
ACCOUNT = FacebookAccount(ad_account_id="act_1234567890")
MAID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
SPEC = AudienceSpec(key="spring-sale/facebook/awareness", name="Spring sale - awareness")


@pytest.fixture(scope="module")
def creds() -> FacebookCredentials:
    return FacebookCredentials(access_token=SecretStr(TOKEN))


@pytest.fixture(scope="module")
def running(creds: FacebookCredentials) -> Iterator[tuple[FacebookSandbox, SandboxServer]]:
    app = FacebookSandbox(creds)
    with SandboxServer(app) as server:  # one server for the module: stopping one takes half a second
        yield app, server


@pytest.fixture
def sandbox(running: tuple[FacebookSandbox, SandboxServer]) -> tuple[FacebookSandbox, SandboxServer]:
    running[0].reset()
    return running


def make_http(server: SandboxServer, creds: FacebookCredentials, **overrides) -> PlatformHttp:
    return sandbox_http(server, FacebookConnector, **overrides)


def make_connector(server: SandboxServer, creds: FacebookCredentials, account: FacebookAccount = ACCOUNT, **kw):
    return FacebookConnector(account, creds, make_http(server, creds, **kw))


def to_member(contact_id: str, raw: dict[IdentifierKind, str], country: str | None = "US") -> Member:
    """What the engine hands the connector: each value normalized by the connector's rule, hashed when declared."""
    fields = {}
    for kind, value in raw.items():
        rule = FacebookConnector.rule_for(kind)
        assert rule is not None
        normalized = rule.normalize(value, country)
        fields[rule.key] = sha256_hex(normalized) if rule.hashed else normalized
    return Member(contact_id=contact_id, fields=fields, country=country)


def members(start: int, stop: int) -> list[Member]:
    return [
        to_member(f"c{i}", {IdentifierKind.EMAIL: f"User{i}@Example.com", IdentifierKind.COUNTRY: "us"})
        for i in range(start, stop)
    ]


def rows_of(app: FacebookSandbox, audience: AudienceRef) -> set[tuple[tuple[str, str], ...]]:
    rows = app.state()["audiences"][audience.remote_id]["members"]
    return {tuple(sorted(row.items())) for row in rows}


def rows_for(batch: list[Member]) -> set[tuple[tuple[str, str], ...]]:
    return {tuple(sorted((k, v) for k, v in m.fields.items() if v)) for m in batch}


def user_calls(app: FacebookSandbox, method: str, edge: str = "users") -> list[dict]:
    return [r for r in app.requests if r["method"] == method and r["path"].endswith(f"/{edge}")]


# -- declarations ----------------------------------------------------------------------------------------------
def test_registers_through_the_entry_point() -> None:
    assert collect_connectors(make_plugin_manager())["facebook"] is FacebookConnector


def test_account_settings_are_validated() -> None:
    assert FacebookAccount(ad_account_id="act_42").ad_account_id == "42"
    assert FacebookAccount(ad_account_id=" 42 ").ad_account_id == "42"
    with pytest.raises(ValidationError):
        FacebookAccount(ad_account_id="act_abc")
    with pytest.raises(ValidationError):
        FacebookAccount(ad_account_id="42", api_version="25")
    with pytest.raises(ValidationError):
        FacebookAccount(ad_account_id="42", customer_file_source="SOMETHING")


def test_identifier_rules_give_meta_values() -> None:
    member = to_member(
        "c1",
        {
            IdentifierKind.EMAIL: " Test@Example.com ",
            IdentifierKind.PHONE: "+1 (415) 555-0123",
            IdentifierKind.FIRST_NAME: "Mary-Ann",
            IdentifierKind.STATE: "California",
            IdentifierKind.ZIP: "94103-1234",
            IdentifierKind.COUNTRY: "US",
            IdentifierKind.MAID: "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            IdentifierKind.EXTERNAL_ID: " crm-1 ",
        },
    )
    assert member.fields["EMAIL"] == "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    assert member.fields["PHONE"] == sha256_hex("14155550123")
    assert member.fields["FN"] == sha256_hex("maryann")
    assert member.fields["ST"] == sha256_hex("ca")
    assert member.fields["ZIP"] == sha256_hex("94103")
    assert member.fields["COUNTRY"] == sha256_hex("us")
    assert member.fields["MADID"] == "6d92078a-8246-4ba4-ae5b-76104861e7dc"
    assert member.fields["EXTERN_ID"] == "crm-1"
    assert all(rule.source for rule in FacebookConnector.identifier_rules)


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (400, {"code": 80003, "error_subcode": 2446079}, Action.RATE_LIMITED),
        (400, {"code": 17}, Action.RATE_LIMITED),
        (403, {"code": 4}, Action.RATE_LIMITED),
        (400, {"code": 613, "error_subcode": 1487742}, Action.RATE_LIMITED),
        (500, {"code": 2, "is_transient": True}, Action.RETRY),
        (400, {"code": 1}, Action.RETRY),
        (400, {"code": 12345, "is_transient": True}, Action.RETRY),
        (400, {"code": 190, "error_subcode": 463}, Action.CONFIG_ERROR),
        (403, {"code": 200}, Action.CONFIG_ERROR),
        (400, {"code": 2655}, Action.CONFIG_ERROR),
        (400, {"code": 1487301}, Action.CONFIG_ERROR),
        (400, {"code": 100, "error_subcode": 33}, None),
        (400, {"code": 1487366}, None),
    ],
)
def test_classifier_reads_meta_error_codes(status: int, error: dict, expected: Action | None) -> None:
    response = HttpResponse(status, {}, json.dumps({"error": error}).encode())
    assert FacebookConnector.classify_response(response) is expected


def test_classifier_leaves_non_meta_bodies_to_the_status_table() -> None:
    assert FacebookConnector.classify_response(HttpResponse(502, {}, b"<html>bad gateway</html>")) is None
    assert FacebookConnector.classify_response(HttpResponse(200, {}, b'{"error": {"code": 4}}')) is None


def test_only_missing_or_deleted_audience_answers_count_as_gone() -> None:
    assert audience_gone({"code": 100, "error_subcode": 33})
    assert audience_gone({"code": 1487366})
    assert not audience_gone({"code": 100, "message": "(#100) Tried accessing nonexisting field (x)"})
    assert not audience_gone({"code": 200})


# -- account and audiences -----------------------------------------------------------------------------------
def test_check_accepts_the_token_and_refuses_a_wrong_one(sandbox, creds) -> None:
    _, server = sandbox
    make_connector(server, creds).check()
    wrong = FacebookCredentials(access_token=SecretStr("EAAGwrongTOKEN999999999"))
    with pytest.raises(ConfigError) as caught:
        FacebookConnector(ACCOUNT, wrong, make_http(server, wrong)).check()
    assert "EAAGwrongTOKEN999999999" not in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_check_refuses_an_ad_account_the_token_cannot_see(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(ad_account_ids=["act_1234567890"])
    make_connector(server, creds).check()
    with pytest.raises(ConfigError, match="act_999"):
        make_connector(server, creds, FacebookAccount(ad_account_id="999")).check()
    with pytest.raises(FatalError):
        make_connector(server, creds, FacebookAccount(ad_account_id="999")).ensure_audience(SPEC, None)


def test_unsupported_api_version_is_a_configuration_error(sandbox, creds) -> None:
    _, server = sandbox
    with pytest.raises(ConfigError):
        make_connector(server, creds, FacebookAccount(ad_account_id="1", api_version="v2.0")).check()


def test_ensure_audience_is_idempotent_and_recreates_a_deleted_one(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    first = connector.ensure_audience(SPEC, None)
    assert connector.ensure_audience(SPEC, first) == first
    assert list(app.state()["audiences"]) == [first.remote_id]
    created = json.loads(user_calls(app, "POST", "customaudiences")[0]["body"])
    assert created["subtype"] == "CUSTOM" and created["customer_file_source"] == "USER_PROVIDED_ONLY"

    app.delete_audience(first.remote_id)
    again = connector.ensure_audience(SPEC, first)
    assert again.remote_id != first.remote_id
    assert again.key == SPEC.key
    assert connector.ensure_audience(SPEC, again) == again


def test_audiences_are_told_apart_by_the_campaigns_marker_never_by_name(sandbox, creds) -> None:
    app, server = sandbox
    spring = SPEC.model_copy(update={"campaign": "spring-sale", "description": "CRM push"})
    autumn = spring.model_copy(update={"campaign": "autumn-sale", "key": "autumn-sale/facebook/awareness"})
    connector = make_connector(server, creds)
    first = connector.ensure_audience(spring, None)
    created = json.loads(user_calls(app, "POST", "customaudiences")[0]["body"])
    assert created["name"] == spring.name and created["description"] == f"CRM push ({spring.marker})"
    other = connector.ensure_audience(autumn, None)  # same name, another campaign: never the first one
    assert other.remote_id != first.remote_id
    # state lost: each campaign finds its own audience by the marker in its description
    assert make_connector(server, creds).ensure_audience(autumn, None) == other
    assert make_connector(server, creds).ensure_audience(spring, None) == first
    assert len(app.state()["audiences"]) == 2


def test_the_marker_lookup_reads_every_page_and_only_this_account(sandbox, creds) -> None:
    app, server = sandbox
    app.max_page_size = 2
    mine = make_connector(server, creds)
    theirs = make_connector(server, creds, FacebookAccount(ad_account_id="777"))
    wanted = theirs.ensure_audience(SPEC, None)  # another ad account holds an audience with the same marker
    for n in range(5):
        mine.ensure_audience(AudienceSpec(key=f"other/{n}", name=SPEC.name), None)
    found = mine.ensure_audience(SPEC, None)
    assert found.remote_id != wanted.remote_id and len(app.state()["audiences"]) == 7
    lists = user_calls(app, "GET", "customaudiences")
    pages = [c for c in lists if c["query"].get("after")]
    assert len(pages) >= 2  # five audiences in pages of two were all read before creating
    assert mine.ensure_audience(SPEC, None) == found


def test_adding_to_a_deleted_audience_fails_for_good(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.delete_audience(audience.remote_id)
    with pytest.raises(FatalError):
        connector.add_members(audience, members(0, 3))


# -- membership ----------------------------------------------------------------------------------------------
def test_25000_members_in_three_requests_of_at_most_10000(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    everyone = members(0, 25_000)
    size = FacebookConnector.max_batch_size
    results = [connector.add_members(audience, everyone[i : i + size]) for i in range(0, len(everyone), size)]
    calls = user_calls(app, "POST")
    assert len(calls) == 3
    assert [len(json.loads(c["body"])["payload"]["data"]) for c in calls] == [10_000, 10_000, 5_000]
    assert sum(r.received for r in results) == 25_000 and all(r.invalid == 0 for r in results)
    assert rows_of(app, audience) == rows_for(everyone)


def test_batches_over_the_limit_are_refused_by_connector_and_sandbox(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    too_many = members(0, 10_001)
    with pytest.raises(ValueError, match="10000"):
        connector.add_members(audience, too_many)
    with pytest.raises(FatalError) as caught:
        path = f"/v25.0/{audience.remote_id}/users"
        connector.http.request("POST", path, json_body={"payload": connector.payload(too_many)})
    assert caught.value.response.json()["error"]["code"] == 100
    assert app.state()["audiences"][audience.remote_id]["members"] == []


def test_re_adding_is_idempotent_and_remove_uses_the_same_payload(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = members(0, 100)
    connector.add_members(audience, batch)
    connector.add_members(audience, batch)
    assert rows_of(app, audience) == rows_for(batch)
    result = connector.remove_members(audience, batch[:40])
    assert result.received == 40
    assert rows_of(app, audience) == rows_for(batch[40:])
    assert len(user_calls(app, "DELETE")) == 1


def test_multi_key_payload_has_a_fixed_schema_and_blank_cells(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = [
        to_member("a", {IdentifierKind.EMAIL: "a@example.com", IdentifierKind.COUNTRY: "US"}),
        to_member("b", {IdentifierKind.PHONE: "(415) 555-0123", IdentifierKind.MAID: MAID}),
        to_member("c", {IdentifierKind.EXTERNAL_ID: "crm-3"}),
    ]
    connector.add_members(audience, batch)
    payload = json.loads(user_calls(app, "POST")[0]["body"])["payload"]
    assert payload["schema"] == ["EMAIL", "PHONE", "COUNTRY", "MADID", "EXTERN_ID"]
    assert payload["data"][2] == ["", "", "", "", "crm-3"]
    assert rows_of(app, audience) == rows_for(batch)


def test_sandbox_takes_meta_form_encoded_payloads_too(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = members(0, 5)
    form = {"payload": json.dumps(connector.payload(batch))}
    response = connector.http.request("POST", f"/v25.0/{audience.remote_id}/users", data=form)
    assert response.json()["num_received"] == 5
    assert rows_of(app, audience) == rows_for(batch)


def test_sandbox_enforces_replace_session_order(sandbox, creds) -> None:
    _, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    path = f"/v25.0/{audience.remote_id}/usersreplace"
    payload = connector.payload(members(0, 3))

    def send(seq: int, last: bool) -> None:
        session = {"session_id": 7, "batch_seq": seq, "last_batch_flag": last}
        connector.http.request("POST", path, json_body={"payload": payload, "session": session})

    with pytest.raises(FatalError, match="batch_seq"):
        send(2, False)
    send(1, False)
    send(2, True)
    send(2, True)  # a retried last batch is answered again, not applied twice
    with pytest.raises(FatalError, match="finished"):
        send(3, True)


def test_replace_swaps_membership_in_one_session(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, members(0, 50))
    new = members(30, 90)
    result = connector.replace_members(audience, [new[0:20], new[20:40], new[40:60]])
    assert rows_of(app, audience) == rows_for(new)
    assert result.received == 60 and result.job_id
    sessions = [json.loads(c["body"])["session"] for c in user_calls(app, "POST", "usersreplace")]
    assert [s["batch_seq"] for s in sessions] == [1, 2, 3]
    assert [s["last_batch_flag"] for s in sessions] == [False, False, True]
    assert {s["session_id"] for s in sessions} == {int(result.job_id)}
    assert all(s["estimated_num_total"] == 60 for s in sessions)


def test_replace_from_a_generator_and_nothing_swaps_before_the_last_batch(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    old, new = members(0, 10), members(100, 130)
    connector.add_members(audience, old)

    def batches():
        yield new[:15]
        assert rows_of(app, audience) == rows_for(old)  # first batch sent, membership unchanged
        yield new[15:]

    connector.replace_members(audience, batches())
    assert rows_of(app, audience) == rows_for(new)
    assert "estimated_num_total" not in json.loads(user_calls(app, "POST", "usersreplace")[0]["body"])["session"]
    with pytest.raises(FatalError):
        connector.replace_members(audience, [])


def test_invalid_entries_are_counted_and_attributed_without_their_values(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    good = members(0, 5)
    bad = [
        Member("raw-email", {"EMAIL": "someone@example.com"}),
        Member("upper-hash", {"EMAIL": sha256_hex("x@example.com").upper()}),
        Member("bad-maid", {"MADID": "6D92078A-8246-4BA4-AE5B-76104861E7DC"}),
    ]
    result = connector.add_members(audience, good + bad)
    assert result.received == 8 and result.invalid == 3
    assert {r.contact_id for r in result.rejections} == {"raw-email", "upper-hash", "bad-maid"}
    assert all("someone@example.com" not in r.reason for r in result.rejections)
    assert rows_of(app, audience) == rows_for(good)


def test_partial_rejects_are_reported_and_not_added(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.set_faults(FaultPlan(partial_reject_rate=1.0, seed=1))
    batch = members(0, 300)
    result = connector.add_members(audience, batch)
    assert 10 < result.invalid < 60
    assert len(app.state()["audiences"][audience.remote_id]["members"]) == 300 - result.invalid
    assert 0 < len(result.rejections) <= FacebookSandbox.max_samples
    rejected = {r.contact_id for r in result.rejections}
    assert not rows_for([m for m in batch if m.contact_id in rejected]) & rows_of(app, audience)


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "fault"),
    [
        (FaultPlan(throttle_rate=0.3, seed=11), "throttle"),
        (FaultPlan(server_error_rate=0.3, seed=5), "server_error"),
        (FaultPlan(timeout_rate=0.25, timeout_seconds=1.0, seed=2), "timeout"),
    ],
)
def test_faults_still_reach_the_exact_end_state(sandbox, creds, plan: FaultPlan, fault: str) -> None:
    app, server = sandbox
    connector = make_connector(server, creds, read_timeout=FAULT_READ_TIMEOUT)
    audience = connector.ensure_audience(SPEC, None)  # creation is not idempotent on Meta: done before faults
    app.set_faults(plan)
    everyone = members(0, 400)
    for i in range(0, 400, 100):
        connector.add_members(audience, everyone[i : i + 100])
    connector.remove_members(audience, everyone[:50])
    assert rows_of(app, audience) == rows_for(everyone[50:])
    final = members(350, 500)
    connector.replace_members(audience, [final[:50], final[50:100], final[100:]])
    assert rows_of(app, audience) == rows_for(final)
    faulted = [r for r in app.requests if r["fault"] == fault]
    assert faulted, "the plan injected no fault: the test would prove nothing"
    if fault == "throttle":
        assert all(r["status"] == 400 for r in faulted)


def test_throttle_has_meta_shape_and_no_retry_after(sandbox, creds) -> None:
    app, server = sandbox
    app.set_faults(FaultPlan(throttle_rate=1.0))
    http = make_http(server, creds, policy=RetryPolicy(max_attempts=2, initial_wait=0.001, max_wait=0.01))
    with pytest.raises(RateLimitedError) as caught:
        FacebookConnector(ACCOUNT, creds, http).check()
    response = caught.value.response
    assert response.status == 400 and "Retry-After" not in response.headers
    assert response.json()["error"]["code"] == 80003
    assert http.requests_sent == 2


# -- credentials, redaction, dry run ---------------------------------------------------------------------------
def test_appsecret_proof_is_sent_and_verified() -> None:
    creds = FacebookCredentials(access_token=SecretStr(TOKEN), app_secret=SecretStr(APP_SECRET))
    app = FacebookSandbox(creds)
    with SandboxServer(app) as server:
        make_connector(server, creds).check()
        assert app.requests[-1]["status"] == 200 and app.requests[-1]["query"]["appsecret_proof"] == [MASK]
        without_proof = make_connector(server, creds)
        without_proof.http.auth = QueryToken(TOKEN)  # a client that forgets the proof
        with pytest.raises(ConfigError):
            without_proof.check()
        other = FacebookCredentials(access_token=SecretStr(TOKEN), app_secret=SecretStr("another-secret-xyz"))
        with pytest.raises(ConfigError):
            make_connector(server, other).check()
    assert creds.appsecret_proof() in app.secrets()


def test_dry_run_records_requests_with_the_token_masked(sandbox, creds, tmp_path) -> None:
    app, server = sandbox
    outbox = Outbox(tmp_path, Redactor([TOKEN]))
    connector = make_connector(server, creds, outbox=outbox)
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    assert audience.remote_id == connector.dry_run_audience(SPEC)["id"]
    result = connector.add_members(audience, members(0, 3))
    assert result.received == 3
    connector.replace_members(audience, [members(0, 2)])
    assert app.requests == []  # nothing reached the platform
    text = (tmp_path / "facebook.jsonl").read_text()
    assert TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]
    # check, the lookup by marker (nothing in a dry run), create, add, replace
    assert [line["method"] for line in lines] == ["GET", "GET", "POST", "POST", "POST"]
    assert all("access_token=***" in line["url"] for line in lines)
    assert lines[3]["body"]["payload"]["schema"] == ["EMAIL", "COUNTRY"]


def test_another_platforms_account_is_refused_at_construction(sandbox, creds):
    from crm_activation.connectors.dv360.settings import Dv360Account

    with pytest.raises(TypeError, match="FacebookConnector needs a FacebookAccount and a FacebookCredentials"):
        FacebookConnector(Dv360Account(advertiser_id="4412345"), creds, make_http(sandbox[1], creds))


# -- GEN, DOB*, FI --------------------------------------------------------------------------------------------------
def test_gender_birth_date_and_first_initial_reach_the_sandbox_hashed(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    builder = PayloadBuilder("facebook", FacebookConnector.identifier_rules, FacebookConnector.match_keys)
    raw = {"email": "ann@example.com", "gender": "Woman", "date_of_birth": "14/07/1985", "first_name": "Élodie"}
    built = builder.build(
        Contact(contact_id="c1", identifiers={IdentifierKind(k): v for k, v in raw.items()}), NormalizationCache()
    )
    assert built.member is not None and not built.problems
    connector.add_members(audience, [built.member])
    payload = json.loads(user_calls(app, "POST")[0]["body"])["payload"]
    assert payload["schema"] == ["EMAIL", "GEN", "DOBY", "DOBM", "DOBD", "FN", "FI"]
    expected = ["ann@example.com", "f", "1985", "07", "14", "élodie", "é"]
    assert payload["data"] == [[sha256_hex(value) for value in expected]]
    assert rows_of(app, audience) == rows_for([built.member])


@pytest.mark.parametrize("key", ["GEN", "DOBY", "DOBM", "DOBD", "FI"])
def test_sandbox_counts_clear_gen_dob_and_fi_values_as_invalid_entries(sandbox, creds, key: str) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    clear = Member("c1", {"EMAIL": sha256_hex("ann@example.com"), key: "07"})
    result = connector.add_members(audience, [clear])
    assert result.invalid == 1 and rows_of(app, audience) == set()
