"""How many batches of a platform are in flight: the account's `requests_in_flight`, else the connector's default."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials
from crm_activation.sdk.connector import ConnectorDeclarationError, validate_connector_class
from crm_activation.sdk.http import PlatformHttp
from crm_activation.sdk.types import MAX_REQUESTS_IN_FLIGHT

CREDS = FacebookCredentials(access_token=SecretStr("EAAGsandboxTOKEN0123456789abcdef"))


def connector(**account: object) -> FacebookConnector:
    http = PlatformHttp(platform="facebook", base_url="https://graph.example")
    return FacebookConnector(FacebookAccount(ad_account_id="1234567890", **account), CREDS, http)


def test_the_account_setting_wins_over_the_connectors_default() -> None:
    assert connector().requests_in_flight == FacebookConnector.default_requests_in_flight == 4
    assert connector(requests_in_flight=1).requests_in_flight == 1


@pytest.mark.parametrize("value", [0, MAX_REQUESTS_IN_FLIGHT + 1])
def test_an_account_setting_outside_what_the_http_client_holds_is_refused(value: int) -> None:
    with pytest.raises(ValidationError, match="requests_in_flight"):
        FacebookAccount(ad_account_id="1", requests_in_flight=value)


def test_a_connector_declaring_an_impossible_default_is_refused_at_registration() -> None:
    broken = type("Broken", (FacebookConnector,), {"default_requests_in_flight": 0})
    with pytest.raises(ConnectorDeclarationError, match="default_requests_in_flight"):
        validate_connector_class(broken)
    validate_connector_class(type("Fine", (FacebookConnector,), {"default_requests_in_flight": 4}))
