"""Amazon's wire format: Login with Amazon tokens, the Ads API error shapes and the upload record.

Amazon Ads API calls carry a short-lived LwA access token (`Authorization: Bearer Atza|...`, about an hour) and the
LwA app's client id (`Amazon-Advertising-API-ClientId`). The token comes from the regional LwA endpoint in exchange
for the long-lived refresh token an advertiser user granted the app; `LoginWithAmazon` is core's `RefreshTokenAuth`
(lazy fetch, renewal shortly before expiry and on 401) configured for LwA, plus the client-id header.
`build_record` and `refusal` turn an engine `Member` into a `records[]` entry, or into the reason it must not
be sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crm_activation import HttpResponse, InvalidIdentifier, Member, RefreshTokenAuth
from crm_activation.normalization import country_upper

from .settings import CONSENT_GRANTED, HASHED_PII_KEYS, Region, external_user_id, needs_consent

CLIENT_ID_HEADER = "Amazon-Advertising-API-ClientId"


def error_body(response: HttpResponse) -> dict[str, Any]:
    """The JSON error object of a response, or {} when the body is not one.

    Amazon answers in three shapes: the Ads API gateway's `{"code", "details"}`, the audiences service's
    `{"message", "requestId"}` and Login with Amazon's OAuth `{"error", "error_description"}`.
    """
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_text(response: HttpResponse) -> str:
    """The human part of an Amazon error body, whichever shape it has."""
    body = error_body(response)
    for key in ("details", "message", "error_description", "error"):
        if isinstance(body.get(key), str):
            return str(body[key])
    return ""


@dataclass(eq=False)
class LoginWithAmazon(RefreshTokenAuth):
    """Core's `RefreshTokenAuth` for Login with Amazon: the app's client id also rides on every API call.

    Amazon may refuse a token it has just issued once (the grant reaches the Ads API a moment later), so one such
    refusal is retried with a new token and the next one is a configuration error. A dry run asks for no token:
    the exchange would only show secrets, so the outbox holds API calls alone (their headers masked).
    """

    platform: str = "amazon_dsp"
    hint: str = (
        "Amazon refuses newly issued access tokens when the LwA app has no Amazon Ads API access or the refresh "
        "token's user cannot manage this advertiser"
    )
    new_token_refusals: int = 1
    dry_run_exchange: bool = False

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set `Authorization` (fetching or renewing the token first when needed) and the client-id header."""
        super().apply(headers, params)
        headers[CLIENT_ID_HEADER] = self.client_id or ""


# -- records ------------------------------------------------------------------------------------------------
def build_record(member: Member, advertiser_id: str, action: str) -> dict[str, Any]:
    """One `records[]` entry: id, action, country, hashed PII and, when recorded, the consent signal.

    The consent signal is Amazon Consent Signal `amznUserData: GRANTED`, sent whenever the CRM recorded
    `consent_ad_user_data` = yes (required for UK/EEA records, harmless elsewhere). `amznAdStorage` is left
    out on purpose: Amazon reads a missing value as "the data collection did not include the usage of
    cookies", which is the truth for a CRM upload, and the CRM records no cookie consent to send.
    """
    pii = {key: value for key in HASHED_PII_KEYS if (value := member.fields.get(key))}
    record: dict[str, Any] = {
        "externalUserId": external_user_id(advertiser_id, member.contact_id),
        "action": action,
        "hashedPII": [pii],
    }
    country = record_country(member)
    if country:
        record["countryCode"] = country
    if member.consent.get("ad_user_data") is True:
        consent: dict[str, Any] = {"consent": {"amzn": {"amznUserData": CONSENT_GRANTED}}}
        if country:
            consent["geo"] = {"countryCode": country}
        record["userConsent"] = consent
    return record


def refusal(member: Member, account_country: str | None, region: Region) -> str | None:
    """Why a member must not be uploaded as CREATE, or None. Reasons name the consent field, never values.

    Denied ad_user_data consent is never sent, whatever the country. A UK/EEA record (by its own country, else
    the account's; a country-less record in the EU region counts too) needs a recorded yes.
    """
    user_data = member.consent.get("ad_user_data")
    if user_data is False:
        return "consent to use personal data for advertising is denied (consent_ad_user_data)"
    country = record_country(member) or account_country
    if needs_consent(country, region) and user_data is not True:
        where = country or f"no country, {region} region"
        return f"UK/EEA record ({where}) needs recorded consent (consent_ad_user_data) for Amazon; none recorded"
    if not any(member.fields.get(key) for key in HASHED_PII_KEYS):
        return "no hashed identifier for Amazon to match"
    return None


def record_country(member: Member) -> str | None:
    """The record's ISO country: the normalized `countryCode` field, else the contact's country if valid."""
    if member.fields.get("countryCode"):
        return member.fields["countryCode"]
    if member.country:
        try:
            return country_upper(member.country, None)
        except InvalidIdentifier:
            return None
    return None
