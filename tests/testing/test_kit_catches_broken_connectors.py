"""The kit tests itself: each deliberately broken connector must fail the standard test aimed at its defect.

Every dummy is a built-in connector with one realistic mistake. Its contract subclass reuses the built-in's
declarations unchanged, so a failure can only come from the mistake. Each case also names the message the kit
must give, so a broken connector failing for an unrelated reason (a crash in the kit) does not count.
The same tests pass for the unbroken connectors in the sibling modules.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from crm_activation import (
    AccountConfig,
    Action,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    ConfigError,
    HttpResponse,
    IdentifierKind,
    IdentifierRule,
    InvalidIdentifier,
    Member,
)
from crm_activation import normalization as norm
from crm_activation.connectors.amazon_dsp import AmazonDspConnector
from crm_activation.connectors.dv360 import Dv360Connector
from crm_activation.connectors.facebook import FacebookConnector
from crm_activation.connectors.linkedin import LinkedInConnector
from crm_activation.connectors.linkedin.connector import _batch_result
from crm_activation.connectors.xandr import XandrConnector
from crm_activation.pipeline.payload import NormalizationCache
from crm_activation.testing import (
    BASIC_MEMBERSHIP,
    DEFAULT_FAULT_SCENARIOS,
    ConnectorContract,
    FaultScenario,
    sample_contact,
)

from ..connectors.amazon_dsp.test_contract import AmazonDspContract
from ..connectors.dv360.test_contract import Dv360Contract
from ..connectors.facebook.test_contract import FacebookContract
from ..connectors.linkedin.test_contract import LinkedInContract
from ..connectors.xandr.test_contract import XandrContract

pytest_plugins = ["pytester"]

FAULTS = {scenario.name: scenario for scenario in DEFAULT_FAULT_SCENARIOS}


def with_rule(cls: type, kind: IdentifierKind, **changes: Any) -> tuple[IdentifierRule, ...]:
    """The class's identifier rules with one rule changed."""
    return tuple(
        IdentifierRule(
            r.kind,
            r.key,
            changes.get("normalize", r.normalize),
            hashed=changes.get("hashed", r.hashed),
            source=r.source,
        )
        if r.kind == kind
        else r
        for r in cls.identifier_rules
    )


# -- identifiers ---------------------------------------------------------------------------------------------
class ClearEmailFacebook(FacebookConnector):
    """Declares e-mail unhashed: Meta wants SHA-256, so every address would travel in clear."""

    identifier_rules = with_rule(FacebookConnector, IdentifierKind.EMAIL, hashed=False)


def _no_lowercase(value: str, country: str | None) -> str:
    return value.strip()


class CaseKeepingFacebook(FacebookConnector):
    """Hashes e-mails without lower-casing first: the hash then matches no Meta user."""

    identifier_rules = with_rule(FacebookConnector, IdentifierKind.EMAIL, normalize=_no_lowercase)


def _echoing_maid(value: str, country: str | None) -> str:
    try:
        return norm.maid_lower(value, country)
    except InvalidIdentifier:
        raise InvalidIdentifier(f"bad mobile advertising id {value!r}") from None


class EchoingXandr(XandrConnector):
    """Puts the refused value in its reason, which lands in the rejects file and logs."""

    identifier_rules = with_rule(XandrConnector, IdentifierKind.MAID, normalize=_echoing_maid)


# -- declarations ---------------------------------------------------------------------------------------------
class TokenUrlLeftBehindDv360(Dv360Connector):
    """Moves the API to the sandbox but leaves the OAuth endpoint on Google: `run --sandbox` would call Google."""

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        return account.model_copy(update={"base_url": url, "requests_per_second": 200.0})


class UnregisteredFacebook(FacebookConnector):
    """A subclass whose contract claims the `facebook` entry point, which registers the original class."""


# -- audiences and membership ----------------------------------------------------------------------------------
class ForgetfulFacebook(FacebookConnector):
    """Ignores the known audience, looks nothing up, and creates a new one on every call."""

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        return super().ensure_audience(spec, None)

    def _find(self, spec: AudienceSpec) -> str | None:
        return None


class NameAdoptingFacebook(FacebookConnector):
    """Finds its audience by display name, as if names were unique: takes another campaign's audience of that name."""

    def _find(self, spec: AudienceSpec) -> str | None:
        params = {"fields": "id,name", "limit": 100}
        body = self.http.request("GET", self._path(self._act, "customaudiences"), params=params).json()
        return next((str(a["id"]) for a in body.get("data") or () if a.get("name") == spec.name), None)


class BlindRetryFacebook(FacebookConnector):
    """Sends its create as an ordinary request: a create whose answer was lost is retried and makes a twin."""

    def _create(self, spec: AudienceSpec) -> AudienceRef:
        body = {"name": spec.name, "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY",
                "description": spec.described_with_marker()}
        response = self.http.request("POST", self._path(self._act, "customaudiences"), json_body=body)
        return AudienceRef(key=spec.key, remote_id=str(response.json()["id"]))


class RemoveDoesNothingFacebook(FacebookConnector):
    """Acknowledges removals without sending them."""

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        return BatchResult(received=len(members))


class RowPerIdentifierFacebook(FacebookConnector):
    """Sends one payload row per identifier, so a batch of `max_batch_size` members is twice that many rows."""

    max_batch_size = 40

    def payload(self, members: Sequence[Member]) -> dict[str, Any]:
        schema = [key for key in self.schema_order if any(m.fields.get(key) for m in members)]
        rows = [[value if column == key else "" for column in schema]
                for m in members for key, value in m.fields.items() if value and key in schema]
        return {"schema": schema, "data": rows}


class MisalignedLinkedIn(LinkedInConnector):
    """Pairs LinkedIn's per-element statuses with the wrong elements (off by one)."""

    def _send(self, action: str, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        elements = [self.element(action, m) for m in members]
        response = self._request("POST", f"/dmpSegments/{audience.remote_id}/users", json_body={"elements": elements},
                                 headers={"X-RestLi-Method": "BATCH_CREATE"})
        shifted = [*members[1:], members[0]]
        return _batch_result(response.json(), shifted, elements)


class SilentAboutRejectsAmazon(AmazonDspConnector):
    """Reports every record as accepted, whatever the upload job said."""

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        result = super().add_members(audience, members)
        return BatchResult(received=result.received, job_id=result.job_id)


# -- faults -----------------------------------------------------------------------------------------------------
class IgnoresThrottlingFacebook(FacebookConnector):
    """Does not know Meta throttles with code 80003 inside a 400: gives up on the first throttle."""

    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        action = super().classify_response(response)
        return None if action is Action.RATE_LIMITED else action


class ThrottleAsPlainErrorAmazon(AmazonDspConnector):
    """Retries 429 like a 5xx: it gets there, but with jittered waits that ignore Amazon's Retry-After."""

    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        return Action.RETRY if response.status == 429 else super().classify_response(response)


class GivesUpOn5xxXandr(XandrConnector):
    """Treats a 503 as final."""

    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        return Action.FAIL if response.status >= 500 else super().classify_response(response)


# -- credentials and secrets --------------------------------------------------------------------------------------
class RetriesRefusedTokenFacebook(FacebookConnector):
    """Reads Meta's invalid-token answer (code 190) as transient and retries it until attempts run out."""

    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        action = super().classify_response(response)
        return Action.RETRY if action is Action.CONFIG_ERROR else action


class LeakyFacebook(FacebookConnector):
    """Adds the token to its configuration error 'to help debugging'."""

    def check(self) -> None:
        try:
            super().check()
        except ConfigError as error:
            token = self.credentials.access_token.get_secret_value()
            raise ConfigError(f"{error} (token used: {token})") from None


class SendsDuringDryRunFacebook(FacebookConnector):
    """Checks the account with a plain `requests` call, bypassing `PlatformHttp` and so the dry run."""

    def check(self) -> None:
        requests.get(self.http.url(f"/{self.account.api_version}/act_{self.account.ad_account_id}"), timeout=5)
        super().check()


# -- the holdout --------------------------------------------------------------------------------------------------
class SeedingFacebook(FacebookConnector):
    """Seeds each new audience with a fixed customer list (the first 40 CRM contacts), holdout or not."""

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        ref = super().ensure_audience(spec, known)
        if known is None:
            kinds = [rule.kind for rule in self.identifier_rules]
            builder = FacebookContract().builder()
            seed = [builder.build(sample_contact(i, kinds), NormalizationCache()).member for i in range(40)]
            super().add_members(ref, [m for m in seed if m is not None])
        return ref


@dataclass(frozen=True)
class Broken:
    """A broken connector, the contract it is run under, the standard test it must fail and the message."""

    name: str
    base: type[ConnectorContract]
    connector: type
    test: str
    match: str
    fault: FaultScenario | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def contract(self) -> ConnectorContract:
        return type(f"Broken{self.name}", (self.base,), {"connector": self.connector, **self.extra})()


FB, LI, DV, AMZ, XD = FacebookContract, LinkedInContract, Dv360Contract, AmazonDspContract, XandrContract
VECTORS, WIRE = "test_identifier_vectors", "test_personal_identifiers_travel_hashed"
ENSURE, MEMBERSHIP = "test_ensure_audience_is_idempotent", "test_membership_reaches_the_expected_end_state"
BATCHES, FAULTED = "test_batches_never_exceed_max_batch_size", "test_faults_are_retried_to_the_exact_end_state"
PARTIAL, CREDENTIALS = (
    "test_partial_rejects_are_reported_per_record",
    "test_wrong_credentials_are_a_config_error_without_leaks",
)
DRY_RUN, HOLDOUT = "test_dry_run_records_masked_requests_and_sends_nothing", "test_holdout_invariant_through_the_engine"
OWNERSHIP = "test_campaigns_sharing_audience_names_never_share_audiences"
LOST_ANSWER = "test_a_lost_answer_never_leaves_a_second_audience"

CASES = (
    Broken("clear-email", FB, ClearEmailFacebook, VECTORS, "personal data sent in clear"),
    Broken("clear-email-on-the-wire", FB, ClearEmailFacebook, WIRE, "its email is on the wire in clear"),
    Broken("email-not-lowercased", FB, CaseKeepingFacebook, VECTORS, r"Jane.Doe@Example.COM.* gave '[0-9a-f]{64}'"),
    Broken("reason-repeats-value", XD, EchoingXandr, VECTORS, "the refusal reason repeats the value"),
    Broken("token-url-not-moved", DV, TokenUrlLeftBehindDv360, "test_declarations_are_valid",
           r"leaves these endpoints on the real platform: \['token_url'\]"),
    Broken("entry-point-registers-another-class", FB, UnregisteredFacebook, "test_discoverable_through_the_entry_point",
           "registers <class .*FacebookConnector'> for 'facebook'", extra={"entry_point": "facebook"}),
    Broken("ensure-creates-every-time", FB, ForgetfulFacebook, ENSURE, "with the known ref returned"),
    Broken("rerun-recreates-audiences", FB, ForgetfulFacebook, HOLDOUT, "a rerun with nothing changed pushed"),
    Broken("remove-is-a-no-op", FB, RemoveDoesNothingFacebook, MEMBERSHIP, r"step 3 \(remove .*5 unexpected"),
    Broken("batch-larger-than-declared", FB, RowPerIdentifierFacebook, BATCHES, "carried 80 records, more than .* 40"),
    Broken("rejections-misaligned", LI, MisalignedLinkedIn, PARTIAL, "records reported as refused are in the audience"),
    Broken("rejections-swallowed", AMZ, SilentAboutRejectsAmazon, PARTIAL, "no record was reported refused"),
    Broken("throttle-not-retried", FB, IgnoresThrottlingFacebook, FAULTED, "raised FatalError", FAULTS["throttle"]),
    Broken("retry-after-ignored", AMZ, ThrottleAsPlainErrorAmazon, FAULTED, "read only 0 answers as throttling",
           FAULTS["throttle"]),
    Broken("5xx-not-retried", XD, GivesUpOn5xxXandr, FAULTED, "raised FatalError", FAULTS["server_error"]),
    Broken("401-retried-forever", FB, RetriesRefusedTokenFacebook, CREDENTIALS, "raised RetryableError, not Config"),
    Broken("token-in-error-message", FB, LeakyFacebook, CREDENTIALS, r"the ConfigError \(and its chain\) contains"),
    Broken("dry-run-sends", FB, SendsDuringDryRunFacebook, DRY_RUN, "a dry run reached the sandbox"),
    Broken("control-group-seeded", FB, SeedingFacebook, HOLDOUT, "control-group contacts reached the sandbox"),
    Broken("audience-adopted-by-name", FB, NameAdoptingFacebook, OWNERSHIP, "share remote audiences"),
    Broken("lost-state-makes-new-audiences", FB, ForgetfulFacebook, OWNERSHIP, "did not find its own audiences"),
    Broken("lost-create-answer-retried-blindly", FB, BlindRetryFacebook, LOST_ANSWER,
           r"losing the answer to request 2 left \[.*, .*\] in the sandbox"),
)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_kit_fails_a_broken_connector(case: Broken, tmp_path, monkeypatch) -> None:
    contract = case.contract()
    method = getattr(contract, case.test)
    wanted = method.__code__.co_varnames[1 : method.__code__.co_argcount]
    available = {"tmp_path": tmp_path, "monkeypatch": monkeypatch, "fault_scenario": case.fault,
                 "membership_scenario": BASIC_MEMBERSHIP}
    try:
        with pytest.raises(AssertionError, match=case.match):
            method(**{name: available[name] for name in wanted})
    except pytest.skip.Exception as skipped:  # a skipped check proves nothing: that is a failure here
        pytest.fail(f"{case.test} skipped instead of failing: {skipped}")


def test_every_standard_test_is_proven_to_fail_on_some_broken_connector() -> None:
    standard = {name for name in dir(ConnectorContract) if name.startswith("test_")}
    covered = {case.test for case in CASES}
    assert standard == covered, f"standard tests no broken connector exercises: {sorted(standard - covered)}"


GENERATED = """
from typing import Any

from pydantic import SecretStr

from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials
from crm_activation.testing import ConnectorContract, loads_body


class ForgetfulFacebook(FacebookConnector):
    def ensure_audience(self, spec, known):
        return super().ensure_audience(spec, None)

    def _find(self, spec):
        return None


class TestForgetfulFacebook(ConnectorContract):
    connector = ForgetfulFacebook
    account = FacebookAccount(ad_account_id="42")
    credentials = FacebookCredentials(access_token=SecretStr("EAAGpytesterTOKEN0123456789"))
    rejections_are_sampled = True

    def member_keys(self, member):
        return {tuple(sorted((k, v) for k, v in member.fields.items() if v))}

    def records_in_request(self, entry: dict[str, Any]):
        return len(loads_body(entry)["payload"]["data"]) if entry["path"].endswith("/users") else None
"""


def test_a_plugin_authors_subclass_inherits_the_tests_through_pytest(pytester: pytest.Pytester) -> None:
    """As a plugin author runs it: pytest collects the inherited tests, marks them, and reports the breakage."""
    pytester.makepyfile(test_acme_contract=GENERATED)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-m", "connector_contract", "-k", "ensure_audience or membership or entry_point"
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    result.stdout.fnmatch_lines(["*test_ensure_audience_is_idempotent*", "*with the known ref returned*"])
    listed = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert json.dumps(listed.outlines).count("test_faults_are_retried_to_the_exact_end_state[") == len(FAULTS)
