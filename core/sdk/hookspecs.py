"""Every hook a plugin may implement, grouped by when the engine calls it.

Connectors are *registered* through a hook and then used as plain objects (see `connector.Connector`); the
remaining hooks are for plugins that add to or watch a run. Implement them with `crm_activation.hookimpl`;
docs/writing-a-connector.md ("Hooks") lists each with an example, and a test keeps that list complete.
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


# -- planning (called for each contact offered a platform) -----------------------------------------------
@hookspec(firstresult=True)
def eligibility_veto(contact: Contact, platform: str) -> str | None:
    """Return a reason to keep `contact` off `platform`, or None to allow it.

    Called once per platform the contact's country and segment are offered, after the campaign's own consent,
    unsubscribe and suppression-list rules allowed it there; firstresult: the first plugin that returns a
    reason wins. The reason is counted as "suppressed" on that platform, and on the row when no platform is
    left. Control contacts are asked too, though nothing of theirs is ever pushed: the holdout ledger records
    where they would have been reachable, and measurement compares them with test contacts on equal terms.
    """


# -- sync (called while pushing) --------------------------------------------------------------------------
@hookspec
def after_batch(platform: str, audience: AudienceRef, operation: str, size: int, result: BatchResult) -> None:
    """Observe one acknowledged batch sent to an ad platform (`operation` is "add", "remove" or "replace").

    Called after the state database recorded the batch (its ledger row and membership change), so an observer
    never sees work the ledger lost. `size` counts members sent; a "replace" is one call per audience with
    its whole membership. In a dry run it is called for each batch written to the outbox instead, and
    nothing is recorded. For an add or remove, `result.rejections` holds one rejection per member the
    engine found refused, also those the platform counted without naming; a batch whose refusals were not all
    named is followed by batches re-sending its unnamed part, each with a call of its own.
    """


@hookspec
def after_run(summary: RunSummary) -> None:
    """Observe the finished run's summary (also called for dry runs and failed runs).

    Called last, after the run ledger stored the summary (a dry run is not stored), also when the run stops
    with an error: then `summary.status` is "failed", `summary.error` says why, and the error propagates
    after the hook.
    """
