"""The Xandr connector against its sandbox over real HTTP: login, segments, upload jobs, faults, redaction."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from crm_activation import (
    Action,
    AudienceRef,
    AudienceSpec,
    ConfigError,
    FatalError,
    FaultPlan,
    HeaderToken,
    HttpResponse,
    IdentifierKind,
    Member,
    PlatformHttp,
    RateLimitedError,
    RetryableError,
    RetryPolicy,
    SandboxServer,
)
from crm_activation.connectors import xandr as xandr_plugin
from crm_activation.connectors.xandr import XandrAccount, XandrConnector, XandrCredentials, XandrSandbox
from crm_activation.connectors.xandr.segment_file import parse_line
from crm_activation.connectors.xandr.settings import MAX_CODE_LENGTH, BssFileFormat, DeviceDomain, SegField
from crm_activation.pipeline.payload import NormalizationCache, PayloadBuilder
from crm_activation.sdk.connector import validate_connector_class
from crm_activation.sdk.contact import Contact
from crm_activation.sdk.http import Outbox
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager
from crm_activation.sdk.redaction import Redactor

from ..sandbox_http import FAULT_READ_TIMEOUT, sandbox_http

USERNAME = "crm-api-user"
PASSWORD = "s3cret-Passw0rd-xyz"
MEMBER = 958
NO_WAITS = {"min_seconds_between_uploads": 0, "new_segment_wait_seconds": 0}
ACCOUNT = XandrAccount(member_id=MEMBER, poll_interval_seconds=5, **NO_WAITS)
SPEC = AudienceSpec(key="spring-sale/xandr/awareness", name="Spring sale - awareness")
IDFA = "6D92078A-8246-4BA4-AE5B-76104861E7DC"


class Clock:
    """The sandbox's time, moved by the tests (token expiry, upload URL lifetimes)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def creds() -> XandrCredentials:
    return XandrCredentials(username=SecretStr(USERNAME), password=SecretStr(PASSWORD))


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def log_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("xandr") / "requests.jsonl"


@pytest.fixture(scope="module")
def running(creds, clock, log_path) -> Iterator[tuple[XandrSandbox, SandboxServer]]:
    app = XandrSandbox(creds, clock=clock)
    with SandboxServer(app, log_path=log_path) as server:  # one server for the module: stopping one takes 0.5 s
        yield app, server


@pytest.fixture
def sandbox(running) -> tuple[XandrSandbox, SandboxServer]:
    running[0].reset()
    return running


def make_http(server: SandboxServer, **overrides) -> PlatformHttp:
    return sandbox_http(server, XandrConnector, **overrides)


def make_connector(server, creds, account: XandrAccount = ACCOUNT, **kw) -> XandrConnector:
    return XandrConnector(account, creds, make_http(server, **kw))


def uid(i: int) -> str:
    return str(5727816213491965430 + i)


def members(start: int, stop: int) -> list[Member]:
    return [Member(f"c{i}", {"UID": uid(i)}) for i in range(start, stop)]


def users_of(app: XandrSandbox, audience: AudienceRef) -> set[str]:
    return set(app.state()["audiences"][audience.remote_id]["members"])


def calls(app: XandrSandbox, method: str, prefix: str) -> list[dict]:
    return [r for r in app.requests if r["method"] == method and r["path"].startswith(prefix)]


# -- declarations ----------------------------------------------------------------------------------------------
def test_hook_registers_a_valid_connector() -> None:
    manager = make_plugin_manager(extra_plugins=[xandr_plugin], load_entry_points=False)
    assert collect_connectors(manager)["xandr"] is XandrConnector
    validate_connector_class(XandrConnector)
    described = XandrConnector.describe()
    assert described["match_keys"] == ["maid", "xandr_uid"] and described["capabilities"] == ["remove"]
    # Built as the engine builds it: credentials and a fault plan, which must survive construction.
    creds = XandrCredentials(username=SecretStr(USERNAME), password=SecretStr(PASSWORD))
    assert XandrSandbox(creds, FaultPlan(throttle_rate=1.0)).faults.throttle_rate == 1.0


@pytest.mark.skipif(
    "xandr" not in {ep.name for ep in entry_points(group="crm_activation")},
    reason="the xandr entry point is not in pyproject.toml yet",
)
def test_registers_through_the_entry_point() -> None:
    assert collect_connectors(make_plugin_manager())["xandr"] is XandrConnector


def test_account_settings_are_validated() -> None:
    assert XandrAccount.model_validate({"member_id": "958"}).member_id == 958
    assert XandrAccount(member_id=1).min_seconds_between_uploads == 60  # Xandr: at most one upload a minute
    for bad in (
        {"member_id": 0},
        {"member_id": 1, "expiration_minutes": 180 * 24 * 60 + 1},
        {"member_id": 1, "device_id_domains": ["sha1udid"]},
        {"member_id": 1, "file_format": {"separator_1": "|"}},
        {"member_id": 1, "file_format": {"separator_2": ","}},
        {"member_id": 1, "file_format": {"separator_3": "ab"}},
        {"member_id": 1, "file_format": {"segment_fields": ["SEG_ID", "SEG_CODE", "EXPIRATION"]}},
        {"member_id": 1, "file_format": {"segment_fields": ["SEG_ID"]}},  # no way to remove without separator_4
    ):
        with pytest.raises(ValidationError):
            XandrAccount.model_validate(bad)
    BssFileFormat(separator_1="\t", separator_3="\t", separator_2=",")  # 1 and 3 may be equal
    BssFileFormat(segment_fields=(SegField.SEG_CODE,), separator_4="\t")


def test_identifier_rules_give_xandr_values() -> None:
    uid_rule = XandrConnector.rule_for(IdentifierKind.XANDR_UID)
    maid_rule = XandrConnector.rule_for(IdentifierKind.MAID)
    assert uid_rule is not None and maid_rule is not None and not uid_rule.hashed and not maid_rule.hashed
    assert uid_rule.normalize(" 0057 ", None) == "57"
    assert uid_rule.normalize(str(2**64 - 1), None) == str(2**64 - 1)  # unsigned 64-bit, as the docs' example
    for bad in ("0", str(2**64), "-5", "12a", "1e9", "a" * 64, ""):
        with pytest.raises(ValueError):
            uid_rule.normalize(bad, None)
    assert maid_rule.normalize(IDFA, None) == IDFA.lower()
    for kind in (IdentifierKind.EMAIL, IdentifierKind.PHONE, IdentifierKind.UID2, IdentifierKind.RAMPID):
        assert XandrConnector.rule_for(kind) is None  # BSS takes no e-mail; UID2/RampID need the Avro format


def test_contacts_with_only_an_email_are_ineligible() -> None:
    builder = PayloadBuilder("xandr", XandrConnector.identifier_rules, XandrConnector.match_keys)
    only_email = Contact(contact_id="e", identifiers={IdentifierKind.EMAIL: "a@example.com"})
    outcome = builder.build(only_email, NormalizationCache())
    assert outcome.member is None and "xandr_uid" in (outcome.ineligible_reason or "")
    both = Contact(contact_id="b", identifiers={IdentifierKind.EMAIL: "a@example.com", IdentifierKind.MAID: IDFA})
    member = builder.build(both, NormalizationCache()).member
    assert member is not None and dict(member.fields) == {"DEVICE_ID": IDFA.lower()}


def test_the_campaigns_marker_fits_a_segment_code() -> None:
    long = AudienceSpec(key="x" * 64 + "/awareness", name="n", campaign="x" * 64)
    for spec in (SPEC, long):
        assert len(spec.marker) <= MAX_CODE_LENGTH and re.fullmatch(r"[a-z0-9-]+", spec.marker)
    assert SPEC.model_copy(update={"campaign": "a"}).marker != SPEC.model_copy(update={"campaign": "b"}).marker


@pytest.mark.parametrize(
    ("status", "headers", "body", "url", "expected"),
    [
        (429, {"Retry-After": "9"}, {}, "/segment", Action.RATE_LIMITED),
        (503, {"x-ratelimit-code": "503", "Retry-After": "2"}, {}, "/segment", Action.RATE_LIMITED),
        (503, {}, {"error_id": "SYSTEM"}, "/segment", Action.RETRY),
        (200, {}, {"error_code": "RATE_EXCEEDED"}, "/auth", Action.RATE_LIMITED),
        (401, {}, {"error_id": "NOAUTH"}, "/segment", Action.REFRESH_AUTH),
        (200, {}, {"error_id": "NOAUTH"}, "/batch-segment", Action.REFRESH_AUTH),
        (401, {}, {"error_id": "NOAUTH"}, "/auth", Action.CONFIG_ERROR),
        (403, {}, {"error_id": "UNAUTH"}, "/segment", Action.CONFIG_ERROR),
        (200, {}, {"error_id": "NOAUTH_DISABLED"}, "/auth", Action.CONFIG_ERROR),
        (200, {}, {"error_id": "SYNTAX", "error": "bad"}, "/segment", Action.FAIL),
        (400, {}, {"status": "ERROR", "error_code": "FILESIZE_LIMIT_EXCEEDED"}, "/segment-upload/x", Action.FAIL),
        (200, {}, {"status": "OK", "segment": {"id": 1}}, "/segment", None),
    ],
)
def test_classifier_reads_xandr_errors(status, headers, body, url, expected) -> None:
    response = HttpResponse(status, headers, json.dumps({"response": body}).encode(), "https://api.appnexus.com" + url)
    assert XandrConnector.classify_response(response) is expected


# -- login ------------------------------------------------------------------------------------------------------
def test_check_logs_in_once_and_a_wrong_password_is_a_config_error(sandbox, creds, log_path) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    connector.check()
    connector.check()
    assert len(calls(app, "POST", "/auth")) == 1  # a token is reused until the API says NOAUTH
    wrong = XandrCredentials(username=SecretStr(USERNAME), password=SecretStr("not-the-Passw0rd"))
    with pytest.raises(ConfigError) as caught:
        make_connector(server, wrong).check()
    assert "not-the-Passw0rd" not in str(caught.value) and "NOAUTH" in str(caught.value)
    assert len(calls(app, "POST", "/auth")) == 2  # refused once, not retried
    log = log_path.read_text()
    assert PASSWORD not in log and connector.http.auth.token not in log


def test_check_refuses_a_member_the_user_cannot_use(sandbox, creds) -> None:
    app, server = sandbox
    app.reset(member_ids=[MEMBER])
    make_connector(server, creds).check()
    with pytest.raises(ConfigError, match="member 42"):
        make_connector(server, creds, XandrAccount(member_id=42)).check()


def test_noauth_logs_in_again_and_retries(sandbox, creds, clock) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    first = connector.http.auth.token
    clock.now += 2 * 3600 + 1  # idle for longer than a token lives
    connector.add_members(audience, members(0, 5))
    second = connector.http.auth.token
    assert second != first and len(calls(app, "POST", "/auth")) == 2
    app.expire_tokens()  # the 24-hour hard expiry, mid-upload
    connector.remove_members(audience, members(0, 2))
    assert len(calls(app, "POST", "/auth")) == 3
    assert users_of(app, audience) == {uid(i) for i in range(2, 5)}
    assert [r["status"] for r in app.requests].count(401) == 2


def test_a_bearer_prefix_is_refused(sandbox, creds) -> None:
    _, server = sandbox
    connector = make_connector(server, creds)
    connector.check()
    connector.http.auth = HeaderToken(connector.http.auth.token)  # "Authorization: Bearer <token>"
    with pytest.raises(ConfigError):
        connector.check()


def test_logins_are_rationed_and_the_sandbox_enforces_xandrs_limit(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    with pytest.raises(ConfigError, match="login quota"):
        for _ in range(10):
            connector.check()
            app.expire_tokens()
    assert len(calls(app, "POST", "/auth")) == 5  # the connector stopped at half of Xandr's 10
    http = make_http(server, policy=RetryPolicy(max_attempts=1))
    body = {"auth": {"username": USERNAME, "password": PASSWORD}}
    for _ in range(5):
        http.request("POST", "/auth", json_body=body)
    with pytest.raises(RateLimitedError) as caught:
        http.request("POST", "/auth", json_body=body)
    assert caught.value.response.status == 429 and int(caught.value.response.headers["Retry-After"]) > 0


# -- segments ---------------------------------------------------------------------------------------------------
def test_ensure_audience_is_idempotent_finds_by_code_and_recreates_a_deleted_one(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    first = connector.ensure_audience(SPEC, None)
    assert connector.ensure_audience(SPEC, first) == first
    assert connector.ensure_audience(SPEC, None) == first  # state lost: found again by its code
    assert list(app.state()["audiences"]) == [first.remote_id]
    created = json.loads(calls(app, "POST", "/segment")[0]["body"])["segment"]
    assert created == {"code": SPEC.marker, "short_name": SPEC.name, "state": "active"}
    app.delete_audience(first.remote_id)
    again = connector.ensure_audience(SPEC, first)
    assert again.remote_id != first.remote_id and again.key == SPEC.key
    assert connector.ensure_audience(SPEC, again) == again


def test_segments_are_told_apart_by_the_campaigns_code_never_by_name(sandbox, creds) -> None:
    app, server = sandbox
    spring = SPEC.model_copy(update={"campaign": "spring-sale"})
    autumn = spring.model_copy(update={"campaign": "autumn-sale", "key": "autumn-sale/xandr/awareness"})
    connector = make_connector(server, creds)
    first = connector.ensure_audience(spring, None)
    other = connector.ensure_audience(autumn, None)
    assert other.remote_id != first.remote_id and spring.name == autumn.name
    assert make_connector(server, creds).ensure_audience(autumn, None) == other  # state lost: found by its code
    assert make_connector(server, creds).ensure_audience(spring, None) == first
    assert {s["code"] for s in app.state()["audiences"].values()} == {spring.marker, autumn.marker}


def test_ensure_audience_reactivates_a_paused_segment(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.audiences[audience.remote_id].state = "inactive"
    assert connector.ensure_audience(SPEC, audience) == audience
    assert app.state()["audiences"][audience.remote_id]["state"] == "active"


# -- uploads ----------------------------------------------------------------------------------------------------
def test_add_and_remove_run_the_job_flow_and_reach_the_end_state(sandbox, creds) -> None:
    app, server = sandbox
    slept: list[float] = []
    connector = make_connector(server, creds, sleep=slept.append)
    audience = connector.ensure_audience(SPEC, None)
    result = connector.add_members(audience, members(0, 300))
    assert result.received == 300 and result.invalid == 0 and result.job_id
    assert users_of(app, audience) == {uid(i) for i in range(300)}
    assert set(app.audiences[audience.remote_id].members.values()) == {0}  # the account's expiration: Xandr's maximum
    upload = calls(app, "POST", "/segment-upload/")[0]
    assert upload["headers"]["content-type"] == "application/octet-stream"
    assert upload["body"].splitlines()[0] == f"{uid(0)},{audience.remote_id}:0"
    polls = [r for r in calls(app, "GET", "/batch-segment") if "job_id" in r["query"]]
    assert len(polls) == 3 and slept == [5, 5]  # uploading -> validating -> processing -> completed

    removed = connector.remove_members(audience, members(0, 100))
    assert removed.received == 100 and removed.invalid == 0
    assert calls(app, "POST", "/segment-upload/")[1]["body"].splitlines()[0] == f"{uid(0)},{audience.remote_id}:-1"
    assert users_of(app, audience) == {uid(i) for i in range(100, 300)}
    connector.add_members(audience, members(150, 200))  # re-adding is a no-op
    assert len(users_of(app, audience)) == 200


def test_added_users_carry_the_configured_expiration(sandbox, creds) -> None:
    app, server = sandbox
    one_day = XandrAccount(member_id=MEMBER, expiration_minutes=1440, **NO_WAITS)
    connector = make_connector(server, creds, one_day)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, members(0, 2))
    assert app.audiences[audience.remote_id].members == {uid(0): 1440, uid(1): 1440}
    connector.remove_members(audience, members(0, 1))
    assert app.audiences[audience.remote_id].members == {uid(1): 1440}


def test_device_ids_go_out_under_each_configured_scheme(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    batch = [Member("d", {"DEVICE_ID": IDFA.lower(), "UID": uid(1)}), Member("d2", {"DEVICE_ID": IDFA.lower()})]
    result = connector.add_members(audience, batch)
    lines = calls(app, "POST", "/segment-upload/")[0]["body"].splitlines()
    seg = audience.remote_id
    assert lines == [f"{IDFA},{seg}:0^3", f"{IDFA.lower()},{seg}:0^8", f"{uid(1)},{seg}:0"]  # each OS's own case
    assert result.received == 2 and result.invalid == 0  # the shared device line is written once
    assert users_of(app, audience) == {f"idfa:{IDFA.lower()}", f"aaid:{IDFA.lower()}", uid(1)}
    ios_only = make_connector(server, creds, XandrAccount(member_id=MEMBER, device_id_domains=["idfa"], **NO_WAITS))
    ios_only.remove_members(audience, batch[1:])
    assert users_of(app, audience) == {f"aaid:{IDFA.lower()}", uid(1)}


def test_a_member_specific_format_with_codes_and_separator_4(sandbox, creds) -> None:
    app, server = sandbox
    fmt = BssFileFormat(
        separator_1=";",
        separator_2=",",
        separator_3=":",
        separator_4="\t",
        separator_5="~",
        segment_fields=(SegField.MEMBER_ID, SegField.SEG_CODE),
    )
    app.reset(file_format=fmt)
    account = XandrAccount(member_id=MEMBER, file_format=fmt, device_id_domains=[DeviceDomain.AAID], **NO_WAITS)
    connector = make_connector(server, creds, account)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, [*members(0, 3), Member("m", {"DEVICE_ID": IDFA.lower()})])
    connector.remove_members(audience, members(0, 1))
    bodies = [c["body"].splitlines() for c in calls(app, "POST", "/segment-upload/")]
    code = SPEC.marker
    assert bodies[0][0] == f"{uid(0)};{MEMBER}:{code}" and bodies[0][-1] == f"{IDFA.lower()};{MEMBER}:{code}~8"
    assert bodies[1] == [f"{uid(0)};\t{MEMBER}:{code}"]
    assert parse_line(bodies[1][0], fmt).removes == ({SegField.MEMBER_ID: str(MEMBER), SegField.SEG_CODE: code},)
    assert users_of(app, audience) == {uid(1), uid(2), f"aaid:{IDFA.lower()}"}
    # a connector that did not ensure the segment (the engine's dry run, another job) reads its code from Xandr
    make_connector(server, creds, account).add_members(audience, members(5, 6))
    assert uid(5) in users_of(app, audience)


def test_invalid_lines_are_counted_attributed_and_not_applied(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    good = members(0, 5)
    bad = [
        Member("too-big", {"UID": str(2**64)}),
        Member("zero", {"UID": "0"}),
        Member("bad-maid", {"DEVICE_ID": "not-a-uuid"}),
        Member("mixed", {"UID": "-1", "DEVICE_ID": IDFA.lower()}),  # the device lines still count
        Member("comma", {"UID": "1,2"}),  # would break the line: refused before sending
        Member("email-only", {"EMAIL": "a" * 64}),
    ]
    result = connector.add_members(audience, good + bad)
    assert result.received == 11
    assert result.invalid == 5  # lines: too-big, zero, bad-maid twice (two schemes), mixed's uid line
    reasons = {r.contact_id: r.reason for r in result.rejections}
    assert set(reasons) == {"too-big", "zero", "bad-maid", "comma", "email-only"}
    assert reasons["zero"] == "UID: num_invalid_user" and "1,2" not in reasons["comma"]
    assert users_of(app, audience) == {uid(i) for i in range(5)} | {f"idfa:{IDFA.lower()}", f"aaid:{IDFA.lower()}"}


def test_an_unknown_segment_counts_every_line(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    result = connector.add_members(AudienceRef(key="gone", remote_id="999"), members(0, 250))
    assert result.invalid == 250  # num_invalid_segment alone would say 1: it is deduplicated per segment
    # the member's error log lists 200 lines; the 50 it leaves out are refused too (every line was), so named
    assert len(result.rejections) == 250 and result.unnamed == 0
    assert sum("beyond the error log" in r.reason for r in result.rejections) == 50
    assert app.state()["audiences"] == {}


def test_partial_rejects_are_reported_and_not_added(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    app.set_faults(FaultPlan(partial_reject_rate=1.0, seed=1))
    batch = members(0, 300)
    result = connector.add_members(audience, batch)
    assert 10 < result.invalid < 60 and len(result.rejections) == result.invalid
    assert len(users_of(app, audience)) == 300 - result.invalid
    rejected = {r.contact_id for r in result.rejections}
    assert not {m.fields["UID"] for m in batch if m.contact_id in rejected} & users_of(app, audience)


def test_batches_over_the_limit_are_refused_by_connector_and_sandbox(sandbox, creds) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    with pytest.raises(ValueError, match="100000"):
        connector.add_members(audience, members(0, XandrConnector.max_batch_size + 1))
    app.max_file_bytes = 1_000
    try:
        with pytest.raises(FatalError, match="FILESIZE_LIMIT_EXCEEDED"):
            connector.add_members(audience, members(0, 100))
    finally:
        app.max_file_bytes = 500_000_000
    assert len(calls(app, "POST", "/batch-segment")) == 1  # a new job would not make the file smaller


def test_an_expired_upload_url_is_replaced_by_a_new_job(sandbox, creds, clock) -> None:
    app, server = sandbox
    connector = make_connector(server, creds)
    audience = connector.ensure_audience(SPEC, None)
    send = connector.http.request
    delays = [301.0]  # the client is slow once: longer than the URL's 5-minute lifetime

    def slow_after_new_job(method: str, path: str, **kwargs):
        response = send(method, path, **kwargs)
        if method == "POST" and path == "/batch-segment" and delays:
            clock.now += delays.pop()
        return response

    connector.http.request = slow_after_new_job  # type: ignore[method-assign]
    connector.add_members(audience, members(0, 10))
    uploads = calls(app, "POST", "/segment-upload/")
    assert [u["status"] for u in uploads] == [400, 200] and len(calls(app, "POST", "/batch-segment")) == 2
    assert users_of(app, audience) == {uid(i) for i in range(10)}


def test_a_job_still_running_at_the_timeout_is_applied_before_the_next(sandbox, creds) -> None:
    app, server = sandbox
    impatient = XandrAccount(member_id=MEMBER, poll_interval_seconds=1, poll_timeout_seconds=1, **NO_WAITS)
    connector = make_connector(server, creds, impatient)
    audience = connector.ensure_audience(SPEC, None)
    with pytest.raises(RetryableError, match="still 'processing'"):
        connector.add_members(audience, members(0, 10))
    assert users_of(app, audience) == set()
    patient = make_connector(server, creds)
    patient.remove_members(audience, members(0, 5))  # Xandr processes a member's jobs in order
    assert users_of(app, audience) == {uid(i) for i in range(5, 10)}


def test_new_segments_propagate_and_uploads_are_paced_with_the_injected_sleep(sandbox, creds) -> None:
    _, server = sandbox
    slept: list[float] = []
    paced = XandrAccount(member_id=MEMBER, poll_interval_seconds=5)  # Xandr's waits: 20 min, then 1 a minute
    connector = make_connector(server, creds, paced, sleep=slept.append)
    audience = connector.ensure_audience(SPEC, None)
    connector.add_members(audience, members(0, 3))
    connector.add_members(audience, members(3, 6))
    assert 1199 < slept[0] <= 1200 and slept[1:3] == [5, 5] and 59 < slept[3] <= 60 and slept[4:] == [5, 5]
    slept.clear()
    again = make_connector(server, creds, paced, sleep=slept.append)
    again.add_members(again.ensure_audience(SPEC, audience), members(6, 9))
    assert slept == [5, 5]  # an existing segment needs no propagation wait
    in_sandbox = XandrConnector.for_sandbox(paced, server.url)
    assert in_sandbox.min_seconds_between_uploads == in_sandbox.new_segment_wait_seconds == 0
    assert in_sandbox.poll_interval_seconds < 1


# -- faults ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "fault"),
    [
        (FaultPlan(throttle_rate=0.3, seed=11), "throttle"),
        (FaultPlan(server_error_rate=0.3, seed=5), "server_error"),
        (FaultPlan(timeout_rate=0.15, timeout_seconds=0.6, seed=3), "timeout"),
    ],
)
def test_faults_still_reach_the_exact_end_state(sandbox, creds, plan: FaultPlan, fault: str) -> None:
    app, server = sandbox
    connector = make_connector(server, creds, read_timeout=FAULT_READ_TIMEOUT)
    app.set_faults(plan)
    audience = connector.ensure_audience(SPEC, None)
    everyone = members(0, 200)
    connector.add_members(audience, everyone[:100])
    connector.add_members(audience, everyone[100:])
    connector.remove_members(audience, everyone[:50])
    assert users_of(app, audience) == {uid(i) for i in range(50, 200)}
    assert len(app.state()["audiences"]) == 1
    for _ in range(40):  # a timed-out request is logged when the sandbox finally answers it
        faulted = [r for r in app.requests if r["fault"] == fault]
        if faulted:
            break
        time.sleep(0.05)
    assert faulted, "the plan injected no fault: the test would prove nothing"
    if fault == "throttle":
        assert {r["status"] for r in faulted} == {429, 503}


def test_throttling_has_xandr_headers_and_waits_for_retry_after(sandbox, creds) -> None:
    app, server = sandbox
    waits: list[float] = []
    http = make_http(server, policy=RetryPolicy(max_attempts=2, max_wait=1), sleep=waits.append)
    connector = XandrConnector(ACCOUNT, creds, http)
    connector.check()  # logged in before the throttling starts
    app.set_faults(FaultPlan(throttle_rate=1.0, retry_after=0.02))
    with pytest.raises(RateLimitedError) as caught:
        connector.check()
    assert [r["status"] for r in app.requests[-2:]] == [429, 503]  # per-user limit, then the service-wide one
    response = caught.value.response
    assert response.headers["x-ratelimit-code"] == "503" and response.headers["Retry-After"] == "0.02"
    assert waits == [0.02] and http.requests_sent == 4


# -- dry run ---------------------------------------------------------------------------------------------------
def test_dry_run_records_requests_without_the_password_or_token(sandbox, creds, tmp_path) -> None:
    app, server = sandbox
    redactor = Redactor()  # the password is not registered: the connector must keep it out by itself
    connector = make_connector(server, creds, outbox=Outbox(tmp_path, redactor), redactor=redactor)
    connector.check()
    audience = connector.ensure_audience(SPEC, None)
    assert audience.remote_id == connector.dry_run_audience(SPEC)["response"]["id"]
    result = connector.add_members(audience, members(0, 3))
    assert result.received == 3 and result.invalid == 0
    assert app.requests == []  # nothing reached the platform
    text = (tmp_path / "xandr.jsonl").read_text()
    assert PASSWORD not in text and "dry-run-token" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(line["method"], line["url"].split("?")[0].rsplit("/", 1)[-1]) for line in lines] == [
        ("POST", "auth"), ("GET", "batch-segment"), ("GET", "segment"), ("POST", "segment"),
        ("POST", "batch-segment"), ("POST", "dry"), ("GET", "batch-segment"),
    ]
    assert lines[0]["body"] == {"auth": {"username": USERNAME, "password": "***"}}
    assert lines[5]["body"].splitlines() == [f"{uid(i)},{audience.remote_id}:0" for i in range(3)]
