"""Google Display & Video 360 Customer Match connector, registered through the `crm_activation` entry-point group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import Dv360Connector
from .sandbox import Dv360Sandbox
from .settings import Dv360Account, Dv360Credentials

__all__ = ["Dv360Account", "Dv360Connector", "Dv360Credentials", "Dv360Sandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [Dv360Connector]
