"""Google Data Manager API connector for crm-activation, registered through the `crm_activation` entry-point group.

Installed as its own distribution (`crm-activation-google-data-manager`); it uses only crm-activation's public
API (`crm_activation` and `crm_activation.normalization`), exactly as a third party's connector would.
"""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import GoogleDataManagerConnector
from .sandbox import GoogleDataManagerSandbox
from .settings import GoogleDataManagerAccount, GoogleDataManagerCredentials

__all__ = [
    "GoogleDataManagerAccount",
    "GoogleDataManagerConnector",
    "GoogleDataManagerCredentials",
    "GoogleDataManagerSandbox",
    "register_connectors",
]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [GoogleDataManagerConnector]
