"""Amazon DSP (Amazon Ads AMC Audiences API) connector, registered through the `crm_activation` entry-point group."""

from __future__ import annotations

from crm_activation import Connector, hookimpl

from .connector import AmazonDspConnector
from .sandbox import AmazonDspSandbox
from .settings import AmazonDspAccount, AmazonDspCredentials

__all__ = ["AmazonDspAccount", "AmazonDspConnector", "AmazonDspCredentials", "AmazonDspSandbox", "register_connectors"]


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The one connector this plugin provides."""
    return [AmazonDspConnector]
