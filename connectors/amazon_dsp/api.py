"""Amazon's wire format: Login with Amazon tokens, the Ads API error shapes and the upload record.

Amazon Ads API calls carry a short-lived LwA access token (`Authorization: Bearer Atza|...`, about an hour) and the
LwA app's client id (`Amazon-Advertising-API-ClientId`). The token comes from the regional LwA endpoint in exchange
for the long-lived refresh token an advertiser user granted the app. `LoginWithAmazon` gets one lazily, renews it
shortly before it expires, and again when the API answers 401 (the shared `PlatformHttp` calls `refresh`).
`build_record` and `refusal` turn an engine `Member` into a `records[]` entry, or into the reason it must not
be sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm_activation import (
    Authenticator,
    ConfigError,
    FatalError,
    HttpResponse,
    InvalidIdentifier,
    Member,
    PlatformHttp,
    RetryableError,
    response_of,
)
from crm_activation.normalization import country_upper

from .settings import CONSENT_GRANTED, HASHED_PII_KEYS, Region, external_user_id, needs_consent

CLIENT_ID_HEADER = "Amazon-Advertising-API-ClientId"
#: What a dry run puts in the Authorization header: a dry run never exchanges the refresh token (see `apply`).
DRY_RUN_TOKEN = "dry-run-no-token-requested"
#: Renew this long before the announced expiry, at most; a tenth of the lifetime when that is shorter.
EXPIRY_MARGIN_SECONDS = 60.0


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
class LoginWithAmazon(Authenticator):
    """Bearer token plus client-id header, with the token obtained and renewed from Login with Amazon.

    Attributes:
        http: the platform's client; token calls go through it so they get the same retries, timeouts and
            redaction, and each issued token is registered with it as a secret.
        token_url: the regional LwA endpoint (or the sandbox's).
        clock: monotonic seconds; injectable so expiry can be tested without waiting.
    """

    http: PlatformHttp
    token_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    clock: Callable[[], float] = time.monotonic
    can_refresh = True

    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _uses: int = field(default=0, init=False, repr=False)
    _fresh_rejections: int = field(default=0, init=False, repr=False)
    _fetching: bool = field(default=False, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set `Authorization` and the client-id header, fetching or renewing the token first when needed.

        In a dry run no token is requested: the exchange would send the refresh token and client secret to
        Amazon for nothing, and the outbox would have to hold them. The outbox masks the Authorization and
        client-id headers either way, so a placeholder shows the request's shape just as well.
        """
        headers["Authorization"] = f"Bearer {self.access_token()}"
        headers[CLIENT_ID_HEADER] = self.client_id

    def access_token(self) -> str:
        """The current access token, obtained or renewed when missing or about to expire."""
        if self.http.dry_run:
            return DRY_RUN_TOKEN
        with self._lock:
            if self._token is None or self.clock() >= self._expires_at:
                self._fetch()
            self._uses += 1
            if self._uses > 1:
                self._fresh_rejections = 0  # this token worked at least once: the credentials are fine
            assert self._token is not None
            return self._token

    def refresh(self) -> None:
        """Get a new token after a 401; twice in a row for brand-new tokens means the setup is wrong.

        A token that Amazon refuses on its very first use was not expired: the app lacks API access, the client
        id does not belong to the token, or the user lost access to the advertiser. Refreshing forever would
        hide that, so the second such refusal is a configuration error.
        """
        with self._lock:
            if self._fetching:  # the token endpoint itself answered 401: nothing left to refresh with
                raise ConfigError("amazon_dsp: Login with Amazon refused the client credentials")
            if self._uses <= 1:
                self._fresh_rejections += 1
                if self._fresh_rejections >= 2:
                    raise ConfigError(
                        "amazon_dsp: Amazon refused two newly issued access tokens; check that the LwA app has "
                        "Amazon Ads API access and that the refresh token's user can manage this advertiser"
                    )
            self._fetch()

    def _fetch(self) -> None:
        """Exchange the refresh token (form-encoded, as LwA requires) for an access token."""
        self._fetching = True
        try:
            response = self.http.request(
                "POST",
                self.token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": self.refresh_token,
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                },
                authenticate=False,
            )
        except ConfigError as error:
            code = error_body(response_of(error)).get("error", "refused")
            raise ConfigError(
                f"amazon_dsp: Login with Amazon refused the credentials ({code}); "
                "a new refresh token or the right client id and secret are needed"
            ) from None
        except RetryableError as error:
            # Already retried under the policy; retrying again around it would multiply the attempts.
            raise FatalError(f"amazon_dsp: Login with Amazon token endpoint kept failing: {error}") from None
        finally:
            self._fetching = False
        body = error_body(response)
        token, lifetime = body.get("access_token"), body.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int | float):
            raise FatalError("amazon_dsp: Login with Amazon answered without access_token and expires_in")
        self.http.add_secrets(token)
        margin = min(EXPIRY_MARGIN_SECONDS, float(lifetime) / 10)
        self._token, self._expires_at, self._uses = token, self.clock() + float(lifetime) - margin, 0




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
