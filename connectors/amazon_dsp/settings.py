"""Amazon DSP account settings, credentials and the contract constants the connector and its sandbox share.

The constants are the facts of the Amazon Ads "Advertiser audiences" API (AMC Audiences: `/amc/audiences/metadata`
and `/amc/audiences/records`) and of Login with Amazon, in one place so the connector and the sandbox cannot drift
apart. Sources, as mirrored from advertising.amazon.com/API/docs/en-us:
`guides/amazon-marketing-cloud/audiences/audience-management-service` (endpoints, job status values, limits),
the "Advertiseraudiences_prod_3p" OpenAPI model (record, consent and job-status shapes),
`guides/amazon-marketing-cloud/amc_consent_management` (Amazon Consent Signal),
`guides/get-started/retrieve-access-token` (LwA token URLs and response), `reference/concepts/errors` and
`reference/concepts/rate-limiting` (error body `{code, details}`, 429 with Retry-After).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum
from typing import Any

from pydantic import SecretStr, field_validator, model_validator

from crm_activation import AccountConfig, Credentials, InvalidIdentifier
from crm_activation.normalization import country_upper

#: Every request and response body of the audiences API uses this vendor media type; anything else gets 415.
MEDIA_TYPE = "application/vnd.amcaudiences.v1+json"

#: "Audience records: Guidance of 6000 per request (max dependent on number of PII fields submitted)" (audience
#: management guide, "Audience API limits"). No hard maximum is published; 6,000 is the documented guidance and
#: lower than the 10,000 open-source connectors use, so it is the declared limit and the sandbox enforces it.
MAX_RECORDS_PER_REQUEST = 6_000
#: "Hashed PII values per audience member: 100" (same section).
MAX_PII_VALUES_PER_RECORD = 100

#: `externalUserId` must match this (OpenAPI `PayloadObj.externalUserId`; Segment `amazon-amc` validation).
EXTERNAL_USER_ID = re.compile(r"^[0-9a-zA-Z\-_]{1,128}$")
#: Keys of a `hashedPII` object; each value is a lowercase SHA-256 hex digest (OpenAPI `HashedPIIObj`).
HASHED_PII_KEYS = ("email", "phone", "firstname", "lastname", "address", "postal", "city", "state")
RECORD_ACTIONS = frozenset({"CREATE", "DELETE"})
#: Audience name "must be an alphanumeric string between 10 to 128 characters"; description 0 to 1,000.
NAME_LENGTH = (10, 128)
MAX_DESCRIPTION_LENGTH = 1_000
#: `metadata.ttl` in seconds: "Our default and maximum ttl is 34300800 (13 months)".
MAX_TTL_SECONDS = 34_300_800

#: Upload job states (`GET /amc/audiences/records/{jobRequestId}` `jobState`); all but PENDING are final.
JOB_FAILED = "FAILED"
JOB_FINAL_STATES = frozenset({"SUCCEEDED", "PARTIALLYSUCCEEDED", "COMPLETED", JOB_FAILED})

#: Amazon Consent Signal values (OpenAPI `ConsentEnums`); the connector only ever sends GRANTED.
CONSENT_GRANTED = "GRANTED"
CONSENT_DENIED = "DENIED"
CONSENT_VALUES = frozenset({CONSENT_GRANTED, CONSENT_DENIED, "NOT_APPLICABLE", "UNKNOWN"})

#: "Advertisers that transmit their United Kingdom (UK) and European Economic Area (EEA) customers' personal data
#: to Amazon Ads must use one of the following formats to communicate ... consent" (AMC consent management).
#: The 27 EU members, the three other EEA states (IS, LI, NO) and the UK (GB; "UK" as CRMs often write it).
UK_EEA = frozenset(
    {"AT", "BE", "BG", "HR", "CY", "CZ", "DK", "EE", "FI", "FR", "DE", "GR", "HU", "IE", "IT", "LV", "LT", "LU", "MT",
     "NL", "PL", "PT", "RO", "SK", "SI", "ES", "SE", "IS", "LI", "NO", "GB", "UK"}
)

#: Login with Amazon errors that a retry cannot fix (RFC 6749 §5.2 codes LwA returns).
OAUTH_CONFIG_ERRORS = frozenset(
    {"invalid_grant", "invalid_client", "unauthorized_client", "invalid_scope", "unsupported_grant_type",
     "invalid_request"}
)


# -- the record contract as the sandbox checks it (the connector builds records on its own) -----------------
def is_sha256_lower(value: str) -> bool:
    """Whether a hashed PII value is what Amazon wants: 64 lowercase hex digits."""
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def valid_country(value: Any) -> bool:
    """An ISO 3166-1 alpha-2 code in upper case, or Amazon's "UNKNOWN" ("UK" is not a code: GB is)."""
    if value == "UNKNOWN":
        return True
    try:
        return isinstance(value, str) and country_upper(value, None) == value
    except InvalidIdentifier:
        return False


def schema_problem(record: Any) -> str | None:
    """What makes a record malformed per Amazon's OpenAPI `PayloadObj` (refused with 400), or None."""
    if not isinstance(record, dict):
        return "must be an object"
    external = record.get("externalUserId")
    if not isinstance(external, str) or not EXTERNAL_USER_ID.match(external):
        return "externalUserId must match [0-9a-zA-Z-_]{1,128}"
    if record.get("action") not in RECORD_ACTIONS:
        return "action must be CREATE or DELETE"
    pii = record.get("hashedPII")
    if not isinstance(pii, list) or not all(isinstance(item, dict) for item in pii):
        return "hashedPII must be a list of objects"
    keys = [key for item in pii for key in item]
    if any(key not in HASHED_PII_KEYS for key in keys) or not all(isinstance(v, str) for i in pii for v in i.values()):
        return f"hashedPII keys must be among {', '.join(HASHED_PII_KEYS)} with string values"
    if len(keys) > MAX_PII_VALUES_PER_RECORD:
        return f"at most {MAX_PII_VALUES_PER_RECORD} hashed PII values per record"
    if "countryCode" in record and not valid_country(record["countryCode"]):
        return "countryCode must be an ISO 3166-1 alpha-2 code"
    if "userConsent" in record:
        user_consent = record["userConsent"]
        consent = user_consent.get("consent", {}) if isinstance(user_consent, dict) else None
        amzn = consent.get("amzn", {}) if isinstance(consent, dict) else None
        if not isinstance(amzn, dict):
            return "userConsent must be an object whose consent holds amzn, tcf or gpp"
        if any(value not in CONSENT_VALUES for value in amzn.values()):
            return "userConsent.consent.amzn values must be GRANTED, DENIED, NOT_APPLICABLE or UNKNOWN"
    return None


def consent_problem(record: dict[str, Any], audience_country: str | None) -> str | None:
    """Why a UK/EEA CREATE may not be used: no consent signal, or consent denied (Amazon rejects those)."""
    country = record.get("countryCode") or audience_country
    if country not in UK_EEA:
        return None
    consent = (record.get("userConsent") or {}).get("consent") or {}
    if consent.get("tcf") or consent.get("gpp"):
        return None  # a TCF or GPP string: the sandbox takes its presence, it does not decode it
    user_data = (consent.get("amzn") or {}).get("amznUserData")
    if user_data == CONSENT_GRANTED:
        return None
    if user_data == CONSENT_DENIED:
        return "consent denied (amznUserData DENIED)"
    return "UK/EEA record without a consent signal"


class Region(StrEnum):
    """Amazon Ads API regions; an advertiser exists in exactly one, and its token endpoint is regional too."""

    NA = "NA"
    EU = "EU"
    FE = "FE"


API_URLS = {
    Region.NA: "https://advertising-api.amazon.com",
    Region.EU: "https://advertising-api-eu.amazon.com",
    Region.FE: "https://advertising-api-fe.amazon.com",
}
TOKEN_URLS = {
    Region.NA: "https://api.amazon.com/auth/o2/token",
    Region.EU: "https://api.amazon.co.uk/auth/o2/token",
    Region.FE: "https://api.amazon.co.jp/auth/o2/token",
}
TOKEN_PATH = "/auth/o2/token"


def needs_consent(country: str | None, region: Region) -> bool:
    """Whether Amazon requires a consent signal for a record from `country` uploaded in `region`.

    A record without any country takes the audience's (or the advertiser marketplace's) country on Amazon's
    side; in the EU region that is usually a UK/EEA marketplace, so an unknown country counts as UK/EEA there.
    """
    if country is None:
        return region is Region.EU
    return country.upper() in UK_EEA


def external_user_id(advertiser_id: str, contact_id: str) -> str:
    """The record's `externalUserId`: hex HMAC-SHA256 of the CRM contact id, keyed by advertiser.

    Never the raw contact id, which may be an e-mail address or a customer number. Keyed rather than a plain
    SHA-256 so it is not the hashed e-mail Amazon matches on when the CRM uses e-mails as ids, and so the same
    contact cannot be linked across advertisers. Stable for a given advertiser, so DELETE finds what CREATE added;
    64 hex characters always fit Amazon's `[0-9a-zA-Z-_]{1,128}`.
    """
    key = f"crm-activation/amazon_dsp/{advertiser_id}".encode()
    return hmac.new(key, contact_id.encode("utf-8"), hashlib.sha256).hexdigest()


class AmazonDspAccount(AccountConfig):
    """The Amazon DSP advertiser the audiences belong to.

    Attributes:
        advertiser_id: the DSP advertiser id (digits); audiences target it (`targetResource.advertiserId`).
        region: NA, EU or FE; picks the API host and the Login with Amazon host unless they are given.
        token_url: the Login with Amazon token endpoint (moved to the sandbox by `for_sandbox`).
        country_code: the audience-level `countryCode` (ISO 3166-1 alpha-2); records with their own country
            override it. Unset: Amazon uses the advertiser's marketplace.
        ttl_seconds: `metadata.ttl` of new audiences (0 to 34,300,800); unset: Amazon's default (13 months).
        job_wait_seconds: how long each batch waits for its upload job to finish before moving on (see
            `AmazonDspConnector`); 0 checks the status once.
    """

    advertiser_id: str
    region: Region = Region.NA
    token_url: str | None = None
    country_code: str | None = None
    ttl_seconds: int | None = None
    job_wait_seconds: float = 10.0

    @model_validator(mode="before")
    @classmethod
    def _regional_endpoints(cls, data: Any) -> Any:
        """Fill the API and token URLs from the region, so a campaign only names its region."""
        if not isinstance(data, dict):
            return data
        region = Region(str(data.get("region") or Region.NA).upper())
        data = {**data, "region": region}
        if not data.get("base_url"):
            data["base_url"] = API_URLS[region]
        if not data.get("token_url"):
            data["token_url"] = TOKEN_URLS[region]
        return data

    @field_validator("advertiser_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value).strip()
        if not text.isdigit():
            raise ValueError("advertiser_id must be the numeric Amazon DSP advertiser id")
        return text

    @field_validator("country_code")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        return country_upper(value, None) if value else None

    @field_validator("ttl_seconds")
    @classmethod
    def _ttl(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_TTL_SECONDS:
            raise ValueError(f"ttl_seconds must be between 0 and {MAX_TTL_SECONDS}")
        return value

    @field_validator("job_wait_seconds")
    @classmethod
    def _wait(cls, value: float) -> float:
        if value < 0:
            raise ValueError("job_wait_seconds cannot be negative")
        return value


class AmazonDspCredentials(Credentials):
    """A Login with Amazon app (client id and secret) and the refresh token an advertiser user granted it."""

    client_id: SecretStr
    client_secret: SecretStr
    refresh_token: SecretStr
