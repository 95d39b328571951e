"""Xandr (Microsoft, ex-AppNexus) Batch Segment Service connector, registered through the `crm_activation` group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import XandrConnector
from .sandbox import XandrSandbox
from .settings import XandrAccount, XandrCredentials

__all__ = ["XandrAccount", "XandrConnector", "XandrCredentials", "XandrSandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [XandrConnector]
