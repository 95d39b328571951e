"""The contract kit's pytest plugin (entry point `pytest11: crm_activation_contract`), loaded in every pytest run.

It only registers: the kit's modules for assertion rewriting (so a failed check shows its values), the
`connector_contract` marker, and that marker on tests inherited from `ConnectorContract`, so `-m
connector_contract` selects (or deselects) them. It imports nothing of the kit, adds no fixture, option or
autouse behaviour, and leaves projects without contract tests untouched. Disable it with
`-p no:crm_activation_contract`.
"""

from __future__ import annotations

import pytest

_KIT_MODULES = (
    "crm_activation.testing.contract",
    "crm_activation.testing.sync_checks",
    "crm_activation.testing.safety_checks",
    "crm_activation.testing.engine_checks",
    "crm_activation.testing.ownership_checks",
    "crm_activation.testing.harness",
)
MARKER = "connector_contract"

pytest.register_assert_rewrite(*_KIT_MODULES)


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (so `--strict-markers` accepts it)."""
    config.addinivalue_line("markers", f"{MARKER}: a standard test inherited from crm_activation's ConnectorContract")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of `ConnectorContract` subclasses (found by a class attribute, without importing the kit)."""
    for item in items:
        cls = getattr(item, "cls", None)
        if cls is not None and getattr(cls, "__crm_activation_contract__", False):
            item.add_marker(MARKER)
