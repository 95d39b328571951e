"""Account settings, credentials and the contract constants the connector and its sandbox share.

The constants are facts of Google's Data Manager API v1 (`IngestionService`, `UserListService`), kept in one
place so the connector and the sandbox cannot drift apart. Sources, all under developers.google.com/data-manager/api:
`reference/rest/v1/audienceMembers/ingest` and `.../remove`, `reference/rest/v1/accountTypes.accounts.userLists`,
`limits`, `get-started/formatting`, `devguides/audiences/.../customer-match/create-audience` and `upload-data`,
and the API's protos (googleapis/googleapis `google/ads/datamanager/v1/*.proto`).
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, SecretStr, field_validator, model_validator

from crm_activation import AccountConfig, Credentials

API_VERSION = "v1"
DEFAULT_BASE_URL = "https://datamanager.googleapis.com"
INGEST_PATH = "/v1/audienceMembers:ingest"
REMOVE_PATH = "/v1/audienceMembers:remove"
REQUEST_STATUS_PATH = "/v1/requestStatus:retrieve"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
#: Where the sandbox serves the token endpoint; `for_sandbox` points `token_url` here.
SANDBOX_TOKEN_PATH = "/token"
SCOPE = "https://www.googleapis.com/auth/datamanager"

#: `IngestAudienceMembersRequest.audience_members`: "At most 10000 AudienceMember resources can be sent in a single
#: request" (ErrorReason TOO_MANY_AUDIENCE_MEMBERS). A contact is one AudienceMember, so this is `max_batch_size`.
MAX_MEMBERS_PER_REQUEST = 10_000
#: "At most 10 `userIdentifiers` can be provided in a single AudienceMember" (TOO_MANY_USER_IDENTIFIERS).
MAX_IDENTIFIERS_PER_MEMBER = 10
#: "Maximum number of destinations allowed per request is 10" (TOO_MANY_DESTINATIONS).
MAX_DESTINATIONS = 10
#: Per Google Cloud project: 300 requests a minute and 100,000 a day for IngestionService; over that, 429
#: RESOURCE_EXHAUSTED. 4 a second (240 a minute) leaves room for the token and user-list calls.
REQUESTS_PER_SECOND = 4.0

#: `Encoding`: the connector sends lowercase hex SHA-256 digests (the engine's hashing) and says so.
ENCODING = "HEX"
#: `TermsOfServiceStatus` for `customerMatchTermsOfServiceStatus`: "must be accepted for all uploads to Customer
#: Match userlists".
TERMS_ACCEPTED = "ACCEPTED"
TERMS_URL = "https://support.google.com/adspolicy/answer/6299717"

#: `UserList.membershipDuration` is a protobuf Duration: whole days as seconds with an `s`, e.g. "7776000s".
SECONDS_PER_DAY = 86_400
#: Google: "If not set, defaults to the maximum". 540 days is Customer Match's documented maximum in Google Ads
#: and DV360 (`membershipDurationDays` <= 540); the Data Manager reference states no number, so the sandbox
#: enforces the same conservative bound.
MAX_MEMBERSHIP_DAYS = 540
DURATION_SHAPE = re.compile(r"^(\d+)s$")

UPLOAD_KEY_CONTACT_ID = "CONTACT_ID"
FIRST_PARTY = "DATA_SOURCE_TYPE_FIRST_PARTY"
MEMBERSHIP_OPEN = "OPEN"

#: `accountTypes.accounts.userLists.list`: "If unspecified, at most 50 user lists will be returned. The maximum
#: value is 1000; values above 1000 will be coerced to 1000", then `nextPageToken`. Its `filter` puts fields on
#: the left of each condition (`display_name = "list 1"`), joined by AND, on fields including `display_name`,
#: `description`, `membership_status` and `integration_code` ("An ID from external system"), which holds the
#: campaign's audience marker.
DEFAULT_LIST_PAGE_SIZE = 50
MAX_LIST_PAGE_SIZE = 1000

# UserIdentifier / AddressInfo JSON names; these are also the connector's payload keys (`Member.fields`).
EMAIL = "emailAddress"
PHONE = "phoneNumber"
GIVEN_NAME = "givenName"
FAMILY_NAME = "familyName"
REGION_CODE = "regionCode"
POSTAL_CODE = "postalCode"
#: "The known components of a user's address ... matched all at once": all four are required in AddressInfo.
ADDRESS_FIELDS = (GIVEN_NAME, FAMILY_NAME, REGION_CODE, POSTAL_CODE)
HASHED_FIELDS = frozenset({EMAIL, PHONE, GIVEN_NAME, FAMILY_NAME})

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
HEX = re.compile(r"^[0-9a-fA-F]*$")
REGION_SHAPE = re.compile(r"^[A-Z]{2}$")
DIGITS = re.compile(r"^\d+$")

# google.rpc.Code names carried in `error.status` of Google's JSON error `{"error": {code, message, status, details}}`.
RATE_LIMITED_STATUSES = frozenset({"RESOURCE_EXHAUSTED"})
TRANSIENT_STATUSES = frozenset({"UNAVAILABLE", "INTERNAL", "DEADLINE_EXCEEDED"})
FATAL_STATUSES = frozenset({"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE", "ALREADY_EXISTS"})
#: OAuth 2.0 token endpoint error codes (RFC 6749 §5.2) that mean the client or the refresh token is wrong.
OAUTH_CONFIG_ERRORS = frozenset(
    {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope", "invalid_request", "access_denied"}
)


class AccountType(StrEnum):
    """`ProductAccount.AccountType` values that can own a Customer Match list (DATA_PARTNER only logs in)."""

    GOOGLE_ADS = "GOOGLE_ADS"
    DISPLAY_VIDEO_ADVERTISER = "DISPLAY_VIDEO_ADVERTISER"
    DISPLAY_VIDEO_PARTNER = "DISPLAY_VIDEO_PARTNER"


class LoginAccountType(StrEnum):
    """`ProductAccount.AccountType` values a login account may have (a manager account or a data partner)."""

    GOOGLE_ADS = "GOOGLE_ADS"
    DISPLAY_VIDEO_ADVERTISER = "DISPLAY_VIDEO_ADVERTISER"
    DISPLAY_VIDEO_PARTNER = "DISPLAY_VIDEO_PARTNER"
    DATA_PARTNER = "DATA_PARTNER"


class ConsentStatus(StrEnum):
    """Data Manager's `ConsentStatus` (note: not DV360's `CONSENT_STATUS_GRANTED` spelling)."""

    UNSPECIFIED = "CONSENT_STATUS_UNSPECIFIED"
    GRANTED = "CONSENT_GRANTED"
    DENIED = "CONSENT_DENIED"


def account_digits(value: object, what: str) -> str:
    """An account id as Google wants it: digits only (Google Ads shows customer ids as 123-456-7890)."""
    text = str(value).strip().replace("-", "")
    if not DIGITS.match(text):
        raise ValueError(f"{what} must be a numeric account id (dashes allowed)")
    return text


def membership_duration(days: int) -> str:
    """`UserList.membershipDuration` for a number of days, or ValueError naming the allowed range."""
    if not 1 <= days <= MAX_MEMBERSHIP_DAYS:
        raise ValueError(f"membership_duration_days must be 1..{MAX_MEMBERSHIP_DAYS}")
    return f"{days * SECONDS_PER_DAY}s"


class GoogleDataManagerAccount(AccountConfig):
    """The Google Ads or Display & Video 360 account that owns the Customer Match lists.

    Attributes:
        account_type: the operating account's product (GOOGLE_ADS, DISPLAY_VIDEO_ADVERTISER, DISPLAY_VIDEO_PARTNER).
        account_id: the operating account's id (a Google Ads customer id may keep its dashes).
        login_account_type: the account the OAuth user signs in through, when it is not the operating account
            (a Google Ads manager account, or a data partner); requires `login_account_id`.
        login_account_id: that account's id.
        customer_match_terms_accepted: must be true: every upload states that the Customer Match terms of service
            were accepted in the operating account, and that statement is the advertiser's to make, not ours.
        membership_duration_days: how long a member stays in a list the connector creates (1..540); unset means
            Google's maximum. An audience's `settings: {membership_duration_days: N}` overrides it.
        token_url: Google's OAuth 2.0 token endpoint; `for_sandbox` moves it with the API base URL.
    """

    account_type: AccountType = AccountType.GOOGLE_ADS
    account_id: str
    login_account_type: LoginAccountType | None = None
    login_account_id: str | None = None
    customer_match_terms_accepted: bool = False
    membership_duration_days: int | None = Field(None, ge=1, le=MAX_MEMBERSHIP_DAYS)
    token_url: str = DEFAULT_TOKEN_URL

    @field_validator("account_id", "login_account_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> object:
        return None if value is None else account_digits(value, "account_id / login_account_id")

    @model_validator(mode="after")
    def _consistent(self) -> GoogleDataManagerAccount:
        if (self.login_account_type is None) != (self.login_account_id is None):
            raise ValueError("login_account_type and login_account_id go together")
        if not self.customer_match_terms_accepted:
            raise ValueError(
                "customer_match_terms_accepted must be true: Google requires every Customer Match upload to state "
                f"that the operating account accepted the Customer Match terms ({TERMS_URL})"
            )
        return self

    @property
    def parent(self) -> str:
        """The operating account's resource name, `accountTypes/{type}/accounts/{id}`."""
        return f"accountTypes/{self.account_type.value}/accounts/{self.account_id}"


class GoogleDataManagerCredentials(Credentials):
    """An OAuth 2.0 client and a refresh token granted the `https://www.googleapis.com/auth/datamanager` scope.

    The connector exchanges the refresh token for short-lived access tokens itself, so no access token is
    configured. From the environment: `CRM_ACTIVATION_GOOGLE_DATA_MANAGER_CLIENT_ID`, `..._CLIENT_SECRET`,
    `..._REFRESH_TOKEN`.
    """

    client_id: SecretStr
    client_secret: SecretStr
    refresh_token: SecretStr
