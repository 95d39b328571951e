"""The connector contract kit: the standard tests every connector runs against its own sandbox.

Subclass `ConnectorContract` in a plugin's tests (see its docstring and docs/contract-kit.md). Needs pytest, so it
is imported only by tests; names are loaded on first use so that the pytest plugin, which pytest loads in every
run, stays cheap and the kit's modules are imported after pytest can rewrite their asserts.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contacts import DEFAULT_VECTORS, restrict, sample_contact, sample_identifiers
    from .contract import ConnectorContract
    from .harness import SandboxHarness, SleepRecorder, loads_body
    from .scenarios import (
        BASIC_MEMBERSHIP,
        DEFAULT_FAULT_SCENARIOS,
        FAULTED_MEMBERSHIP,
        FaultScenario,
        IdentifierVector,
        MembershipScenario,
        MembershipStep,
    )

_EXPORTS = {
    "ConnectorContract": "contract",
    "SandboxHarness": "harness",
    "SleepRecorder": "harness",
    "loads_body": "harness",
    "DEFAULT_VECTORS": "contacts",
    "restrict": "contacts",
    "sample_contact": "contacts",
    "sample_identifiers": "contacts",
    "BASIC_MEMBERSHIP": "scenarios",
    "DEFAULT_FAULT_SCENARIOS": "scenarios",
    "FAULTED_MEMBERSHIP": "scenarios",
    "FaultScenario": "scenarios",
    "IdentifierVector": "scenarios",
    "MembershipScenario": "scenarios",
    "MembershipStep": "scenarios",
}

__all__ = [
    "BASIC_MEMBERSHIP",
    "DEFAULT_FAULT_SCENARIOS",
    "DEFAULT_VECTORS",
    "FAULTED_MEMBERSHIP",
    "ConnectorContract",
    "FaultScenario",
    "IdentifierVector",
    "MembershipScenario",
    "MembershipStep",
    "SandboxHarness",
    "SleepRecorder",
    "loads_body",
    "restrict",
    "sample_contact",
    "sample_identifiers",
]


def __getattr__(name: str) -> Any:
    """Import an exported name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
