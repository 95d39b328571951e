"""Meta (Facebook) Custom Audiences connector, registered through the `crm_activation` entry-point group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import FacebookConnector
from .sandbox import FacebookSandbox
from .settings import FacebookAccount, FacebookCredentials

__all__ = ["FacebookAccount", "FacebookConnector", "FacebookCredentials", "FacebookSandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [FacebookConnector]
