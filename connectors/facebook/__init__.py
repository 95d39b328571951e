"""Meta (Facebook) Custom Audiences connector, registered through the `crm_activation` entry-point group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .config import FacebookAccount, FacebookCredentials
from .connector import FacebookConnector
from .sandbox import FacebookSandbox

__all__ = ["FacebookAccount", "FacebookConnector", "FacebookCredentials", "FacebookSandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [FacebookConnector]
