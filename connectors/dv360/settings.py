"""DV360 account settings, credentials and the contract constants the connector and its sandbox share.

The constants are the facts of the Display & Video 360 API v4 (`firstPartyAndPartnerAudiences`, its
`editCustomerMatchMembers` method, `ContactInfoList`, `ContactInfo`, `Consent`) and of Google's OAuth 2.0 token
endpoint, kept in one place so the connector and the sandbox cannot drift apart. See
docs/platform-apis.md section 3 for the sources.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, SecretStr, field_validator

from crm_activation import AccountConfig, Credentials

#: The resource is `firstPartyAndPartnerAudiences` from v4 on (v3 called it `firstAndThirdPartyAudiences`), so
#: the version is fixed with the paths rather than being an account setting.
API_VERSION = "v4"
AUDIENCES = "firstPartyAndPartnerAudiences"
EDIT_MEMBERS = "editCustomerMatchMembers"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
#: Where the sandbox serves the token endpoint; `for_sandbox` points `token_url` here.
SANDBOX_TOKEN_PATH = "/token"
SCOPE = "https://www.googleapis.com/auth/display-video"

#: "The size of members after splitting the contact_infos mustn't be greater than 500,000" (`ContactInfoList`
#: reference). Each e-mail, phone number and address of a ContactInfo counts as one member. The sandbox enforces it.
MAX_MEMBERS_PER_REQUEST = 500_000
#: Contacts per request the connector sends (its `max_batch_size`), far below Google's limit on purpose: a
#: contact is up to three members and ~450 bytes of JSON, so 10,000 contacts make a ~4.5 MB request that a
#: timeout can retry cheaply, while 150 write requests a minute per advertiser (Google's quota) still move
#: 1.5 million contacts a minute. It is also the Data Manager API's per-request limit (`audienceMembers.ingest`:
#: "at most 10000"), so a later Data Manager connector can keep the same batches.
MAX_CONTACTS_PER_REQUEST = 10_000

#: `membershipDurationDays`: "must be greater than 0 and less than or equal to 540"; required for
#: CUSTOMER_MATCH_CONTACT_INFO. The former "10000 = no expiry" is refused since 2025-04-07.
MIN_MEMBERSHIP_DURATION_DAYS = 1
MAX_MEMBERSHIP_DURATION_DAYS = 540

AUDIENCE_TYPE = "CUSTOMER_MATCH_CONTACT_INFO"
FIRST_PARTY = "TYPE_FIRST_PARTY"

#: `firstPartyAndPartnerAudiences.list` (v4 reference): `pageSize` "must be between 1 and 5000" (default 5000),
#: `pageToken` / `nextPageToken`, `orderBy` `firstPartyAndPartnerAudienceId` (default) or `displayName` (+ " desc"),
#: and a `filter` of at most one restriction, on `displayName` only, with the HAS (`:`) operator, at most 500
#: characters. The audience marker lives in `description`, which cannot be filtered on: the connector reads pages.
MAX_LIST_PAGE_SIZE = 5000
MAX_LIST_FILTER_LENGTH = 500

# ContactInfo fields (DV360 API `ContactInfo`): names, e-mail and phone SHA-256 hex; zip and country in clear.
HASHED_EMAILS = "hashedEmails"
HASHED_PHONES = "hashedPhoneNumbers"
HASHED_FIRST_NAME = "hashedFirstName"
HASHED_LAST_NAME = "hashedLastName"
ZIP_CODES = "zipCodes"
COUNTRY_CODE = "countryCode"
LIST_FIELDS = frozenset({HASHED_EMAILS, HASHED_PHONES, ZIP_CODES})
HASHED_FIELDS = frozenset({HASHED_EMAILS, HASHED_PHONES, HASHED_FIRST_NAME, HASHED_LAST_NAME})
#: "Mailing address matching: values assigned to hashedFirstName, hashedLastName, zipCodes and countryCode" —
#: the four only match together, so they are sent all or not at all.
ADDRESS_FIELDS = (HASHED_FIRST_NAME, HASHED_LAST_NAME, ZIP_CODES, COUNTRY_CODE)
CONTACT_INFO_FIELDS = frozenset({*HASHED_FIELDS, ZIP_CODES, COUNTRY_CODE})

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
COUNTRY_CODE_SHAPE = re.compile(r"^[A-Z]{2}$")

# google.rpc.Code names carried in `error.status` (Google JSON error `{"error": {code, message, status, details}}`).
RATE_LIMITED_STATUSES = frozenset({"RESOURCE_EXHAUSTED"})
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
FATAL_STATUSES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE"})
#: The older per-error reasons some Google front ends still send with HTTP 403 for throttling.
RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
#: OAuth 2.0 token endpoint error codes (RFC 6749 §5.2) that mean the client or the refresh token is wrong.
OAUTH_CONFIG_ERRORS = frozenset(
    {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope", "invalid_request", "access_denied"}
)


class ConsentStatus(StrEnum):
    """`Consent.adUserData` / `Consent.adPersonalization`; DENIED makes Google refuse the whole request."""

    UNSPECIFIED = "CONSENT_STATUS_UNSPECIFIED"
    GRANTED = "CONSENT_STATUS_GRANTED"
    DENIED = "CONSENT_STATUS_DENIED"


def membership_duration(value: object) -> int:
    """A `membershipDurationDays` value as an int, or ValueError saying the allowed range."""
    try:
        days = int(str(value).strip())
    except ValueError:
        raise ValueError("membership_duration_days must be a whole number of days") from None
    if not MIN_MEMBERSHIP_DURATION_DAYS <= days <= MAX_MEMBERSHIP_DURATION_DAYS:
        raise ValueError(
            f"membership_duration_days must be {MIN_MEMBERSHIP_DURATION_DAYS}..{MAX_MEMBERSHIP_DURATION_DAYS}"
        )
    return days


class Dv360Account(AccountConfig):
    """The advertiser that owns the Customer Match audiences.

    Attributes:
        advertiser_id: the numeric DV360 advertiser id; audiences are advertiser-owned because Google drops EEA
            members from partner-owned lists.
        membership_duration_days: how long a member stays in an audience after it was added (1..540); an
            audience's `settings: {membership_duration_days: N}` in the campaign overrides it.
        token_url: Google's OAuth 2.0 token endpoint; `for_sandbox` moves it with the API base URL.
    """

    advertiser_id: str
    membership_duration_days: int = Field(
        MAX_MEMBERSHIP_DURATION_DAYS, ge=MIN_MEMBERSHIP_DURATION_DAYS, le=MAX_MEMBERSHIP_DURATION_DAYS
    )
    token_url: str = DEFAULT_TOKEN_URL

    @field_validator("advertiser_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value).strip()
        if not text.isdigit():
            raise ValueError("advertiser_id must be the numeric DV360 advertiser id")
        return text


class Dv360Credentials(Credentials):
    """An OAuth 2.0 client and a refresh token of a user with Admin or Standard role on the advertiser.

    The refresh token must carry the `https://www.googleapis.com/auth/display-video` scope. The connector
    exchanges it for short-lived access tokens itself, so no access token is configured.
    """

    client_id: SecretStr
    client_secret: SecretStr
    refresh_token: SecretStr
