"""Acme Ads, the example connector of docs/writing-a-connector.md; this module is what its entry point loads."""

from crm_activation import Connector, hookimpl

from .connector import AcmeConnector


@hookimpl
def register_connectors() -> list[type[Connector]]:
    """The connector this plugin adds (an `acme = "acme"` entry point in group `crm_activation` finds it)."""
    return [AcmeConnector]
