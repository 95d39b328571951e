"""`ConnectorContract`: subclass it in a plugin's tests, declare a few things, inherit every standard test.

A minimal subclass::

    class TestAcmeContract(ConnectorContract):
        connector = AcmeConnector
        account = AcmeAccount(advertiser_id="42")
        credentials = AcmeCredentials(api_key=SecretStr("sandbox-key-0123"))
        entry_point = "acme"

        def member_keys(self, member):
            return {member.fields["email_sha256"]}

        def records_in_request(self, entry):
            body = loads_body(entry)
            return len(body["emails"]) if entry["path"].endswith("/members") else None

`member_keys` says how the sandbox spells one member (an id, or `member_key({...})` of an object of
identifiers) and `records_in_request` counts the records of one logged request: only the author knows either.
Everything else has defaults: `sandbox_audiences` and `sandbox_members` read the standard `SandboxApp.state()`
shape; see docs/contract-kit.md for each flag and hook.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import pytest

from ..sdk.sandbox import FaultPlan
from . import engine_checks, ownership_checks, safety_checks, sync_checks
from .declaration import ContractDeclaration
from .harness import SandboxHarness
from .scenarios import FaultScenario, MembershipScenario


class ConnectorContract(ContractDeclaration):
    """The standard tests every connector must pass against its own sandbox.

    Declarations and hooks are `ContractDeclaration`'s (its docstring lists each); this class adds the tests.
    """

    __crm_activation_contract__: ClassVar[bool] = True  # lets the pytest plugin mark the kit's tests

    @contextmanager
    def harness(self, faults: FaultPlan | None = None, log_path: Path | None = None) -> Iterator[SandboxHarness]:
        """A fresh sandbox of the connector on a free port (logging to `log_path` too), stopped afterwards."""
        with SandboxHarness(self, faults, log_path) as running:
            yield running

    # -- parametrization ----------------------------------------------------------------------------------
    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Run the scenario tests once per scenario of this subclass's data."""
        for argument, scenarios in (
            ("membership_scenario", self.membership_scenarios),
            ("fault_scenario", self.fault_scenarios),
        ):
            if argument in metafunc.fixturenames:
                metafunc.parametrize(argument, scenarios, ids=[s.name for s in scenarios])

    # -- the standard tests -------------------------------------------------------------------------------
    def test_declarations_are_valid(self) -> None:
        """validate_connector_class, sandbox built like the engine builds it, every endpoint moved by for_sandbox."""
        safety_checks.check_declarations(self)

    def test_discoverable_through_the_entry_point(self) -> None:
        """The `crm_activation` entry point named `entry_point` registers this very class."""
        if self.entry_point is None:
            pytest.skip("no `entry_point` declared: the connector is not expected to be installed")
        safety_checks.check_entry_point(self)

    def test_identifier_vectors(self) -> None:
        """Hashed fields are 64 lower-case hex, clear ones are not hashes, vectors hold, pre-hashed passes through."""
        safety_checks.check_identifiers(self)

    def test_personal_identifiers_travel_hashed(self) -> None:
        """No personal value the platform wants hashed appears in clear in any request the sandbox received."""
        safety_checks.check_wire_hashing(self)

    def test_ensure_audience_is_idempotent(self) -> None:
        """A known ref comes back unchanged and the sandbox holds one audience per spec."""
        sync_checks.check_ensure_audience(self)

    def test_a_lost_answer_never_leaves_a_second_audience(self) -> None:
        """Losing the answer to any request of `ensure_audience`, the create included, leaves one audience."""
        if not self.finds_audience_without_ref:
            pytest.skip("the platform cannot look audiences up: a lost create answer can leave an orphan")
        sync_checks.check_lost_answers_leave_one_audience(self)

    def test_membership_reaches_the_expected_end_state(self, membership_scenario: MembershipScenario) -> None:
        """Add, re-add, remove and add back: after each step the sandbox holds exactly the expected members."""
        sync_checks.check_membership(self, membership_scenario)

    def test_batches_never_exceed_max_batch_size(self) -> None:
        """A batch of exactly `max_batch_size` goes through and no request carries more records than that."""
        sync_checks.check_batch_limit(self)

    def test_faults_are_retried_to_the_exact_end_state(self, fault_scenario: FaultScenario) -> None:
        """Throttling, 5xx and timeouts are retried (through the injected sleep) to the exact end state."""
        sync_checks.check_faults(self, fault_scenario)

    def test_partial_rejects_are_reported_per_record(self) -> None:
        """Refused records are reported with their contact ids, without their values, and are not added."""
        sync_checks.check_partial_rejects(self)

    def test_wrong_credentials_are_a_config_error_without_leaks(self) -> None:
        """ConfigError after a bounded number of requests; no secret in the error, the logs or the sandbox log."""
        safety_checks.check_wrong_credentials(self)

    def test_dry_run_records_masked_requests_and_sends_nothing(self, tmp_path: Path) -> None:
        """A dry run writes every request to the outbox with each secret masked, and the sandbox sees nothing."""
        safety_checks.check_dry_run(self, tmp_path)

    def test_holdout_invariant_through_the_engine(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """The real engine pushes the test group only; no control identifier reaches the sandbox; a rerun is idle."""
        engine_checks.check_holdout_invariant(self, tmp_path, monkeypatch)

    def test_campaigns_sharing_audience_names_never_share_audiences(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Two campaigns, same audience names: own audiences and members; a lost state finds its own, not another's."""
        ownership_checks.check_audience_ownership(self, tmp_path, monkeypatch)
