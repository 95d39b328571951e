"""LinkedIn Matched Audiences (DMP segments) connector, registered through the `crm_activation` entry-point group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import LinkedInConnector
from .sandbox import LinkedInSandbox
from .settings import LinkedInAccount, LinkedInCredentials

__all__ = ["LinkedInAccount", "LinkedInConnector", "LinkedInCredentials", "LinkedInSandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [LinkedInConnector]
