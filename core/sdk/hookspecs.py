"""Every hook a plugin may implement, grouped by when the engine calls it.

Connectors are *registered* through a hook and then used as plain objects (see `connector.Connector`); the
remaining hooks are for plugins that add to or watch a run. Implement them with `crm_activation.hookimpl`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .connector import Connector
    from .contact import Contact
    from .summary import RunSummary
    from .types import AudienceRef, BatchResult

PROJECT = "crm_activation"
hookspec = pluggy.HookspecMarker(PROJECT)


# -- registration (called once, when the engine loads plugins) --------------------------------------------
@hookspec
def register_connectors() -> list[type[Connector]]:  # type: ignore[empty-body]  # a hookspec never runs
    """Return the `Connector` subclasses this plugin provides.

    Called once per plugin manager after entry points load; results from all plugins are merged, and two
    classes claiming the same `platform` slug is an error naming both.
    """


# -- planning (called for each test-group contact) --------------------------------------------------------
@hookspec(firstresult=True)
def eligibility_veto(contact: Contact, platform: str) -> str | None:
    """Return a reason to keep `contact` off `platform`, or None to allow it.

    Called after the campaign's own country, segment, consent and suppression rules allowed the contact;
    firstresult: the first plugin that returns a reason wins. The reason is counted as "suppressed".
    """


# -- sync (called while pushing) --------------------------------------------------------------------------
@hookspec
def after_batch(platform: str, audience: AudienceRef, operation: str, size: int, result: BatchResult) -> None:
    """Observe one acknowledged batch (`operation` is "add", "remove" or "replace").

    Called after the state database recorded the batch, so an observer never sees work the ledger lost.
    """


@hookspec
def after_run(summary: RunSummary) -> None:
    """Observe the finished run's summary (also called for dry runs and failed runs)."""
