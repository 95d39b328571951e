"""LinkedIn account settings, credentials and the contract constants the connector and its sandbox share.

The constants are the facts of LinkedIn's Matched Audiences API (DMP Segments and DMP Segment Users, versioned
`/rest` endpoints) in one place, so the connector and the sandbox cannot drift apart. Where a fact is not
confirmed by LinkedIn's own pages (see docs/platform-apis.md §2), the comment says so and the value is the
conservative reading.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum
from typing import Self

from pydantic import SecretStr, field_validator, model_validator

from crm_activation import AccountConfig, Credentials, InvalidIdentifier

#: Elements in one `BATCH_CREATE` on `/dmpSegments/{id}/users`. LinkedIn's page does not state a number;
#: 5,000 is what RudderStack's connector (`linkedin_audience/config.ts`, MAX_BATCH_SIZE) and others use.
#: UNCONFIRMED, so it is the conservative limit and the sandbox refuses anything larger.
MAX_ELEMENTS_PER_REQUEST = 5_000

#: Segments a page of the `q=account` finder holds. Rest.li pages with `start` and `count` and serves 10 when no
#: `count` is given; the finder's maximum `count` is not documented (**UNCONFIRMED**), so the connector asks for a
#: modest page and reads on while pages come back full.
FINDER_PAGE_SIZE = 50
FINDER_DEFAULT_COUNT = 10

#: User id types the users endpoint accepts (create-and-manage-segment-users, "IdTypes"). `BIZO_ID` appears in
#: old pages only and is not accepted.
ID_TYPES = frozenset({"SHA256_EMAIL", "SHA512_EMAIL", "GOOGLE_AID", "APPLE_IDFA"})

#: Name and company fields are sent in clear, with these maximum lengths (LinkedIn's users schema as mirrored
#: in HCL Link's "Data layout for uploading users"; LinkedIn's own page lists the fields without lengths).
NAME_MAX_LENGTH = 35
TITLE_MAX_LENGTH = 50

#: Every versioned call needs this header; LinkedIn's DMP pages: "All API requests are represented in protocol
#: 2.0.0 and require the header".
RESTLI_PROTOCOL_VERSION = "2.0.0"
#: LinkedIn Marketing versions are `YYYYMM` (optionally `.RR`) and are sunset about a year after release
#: (202508 sunsets 2026-08-17). 202608 is the newest version the docs show as of 2026-11 (docs view
#: li-lms-2026-08), so it is served until about 2027-08.
DEFAULT_API_VERSION = "202608"
VERSION_PATTERN = re.compile(r"^\d{4}(0[1-9]|1[0-2])(\.\d{2})?$")

#: LinkedIn's OAuth 2.0 token endpoint, used with `grant_type=refresh_token` (LinkedIn "Refresh Tokens with
#: OAuth 2.0"; Segment's `linkedin-audiences` refreshAccessToken posts the same form).
DEFAULT_TOKEN_URL = "https://www.linkedin.com/oauth/v2/accessToken"
TOKEN_PATH = "/oauth/v2/accessToken"
#: LinkedIn access tokens live 60 days and refresh tokens 365 days (LinkedIn OAuth docs).
ACCESS_TOKEN_SECONDS = 60 * 24 * 3600
REFRESH_TOKEN_SECONDS = 365 * 24 * 3600

ACCOUNT_URN_PREFIX = "urn:li:sponsoredAccount:"
SEGMENT_URN_PREFIX = "urn:li:dmpSegment:"

# `serviceErrorCode`s of LinkedIn's 401 answers, as seen in the wild (LinkedIn's error-handling page names the
# cases, not the numbers): 65600 INVALID_ACCESS_TOKEN, 65601 REVOKED_ACCESS_TOKEN, 65602 EXPIRED_ACCESS_TOKEN.
INVALID_TOKEN_CODE = 65600
REVOKED_TOKEN_CODE = 65601
EXPIRED_TOKEN_CODE = 65602

_SOURCE_PLATFORM = re.compile(r"^[A-Z][A-Z0-9_]*$")


class MaidIdType(StrEnum):
    """How the connector types a mobile advertising id; LinkedIn wants the id's OS and a CRM rarely has it."""

    GOOGLE_AID = "GOOGLE_AID"
    APPLE_IDFA = "APPLE_IDFA"


class LinkedInAccount(AccountConfig):
    """The ad account that owns the DMP segments, and how this connector talks to LinkedIn.

    Attributes:
        ad_account_id: the numeric sponsored account id; "urn:li:sponsoredAccount:123" is accepted as "123".
        source_platform: the `sourcePlatform` enum LinkedIn assigned to you when it granted Audience API access
            ("The sourcePlatform is an ENUM value that is provided by your LinkedIn contact", LinkedIn's Postman
            collection; Segment's is `SEGMENT`). There is no generic value for streaming segments, so this has
            no default: a wrong value is refused when the first segment is created.
        api_version: the `LinkedIn-Version` header; bump it yearly, LinkedIn answers 426 for sunset versions.
        maid_id_type: the idType for every mobile advertising id. IDFAs and AAIDs are both UUIDs and the
            contact carries no OS, so the campaign says which one its ids are. The default follows the
            partner connectors (Segment, Tealium, HCL Link send Android ids only). An id sent with the wrong
            type simply matches nobody.
        token_url: the OAuth token endpoint for refreshing the access token (moved by `for_sandbox`).
    """

    ad_account_id: str
    source_platform: str
    api_version: str = DEFAULT_API_VERSION
    maid_id_type: MaidIdType = MaidIdType.GOOGLE_AID
    token_url: str = DEFAULT_TOKEN_URL

    @field_validator("ad_account_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value).strip().removeprefix(ACCOUNT_URN_PREFIX)
        if not text.isdigit():
            raise ValueError("ad_account_id must be digits, optionally as urn:li:sponsoredAccount:<digits>")
        return text

    @field_validator("source_platform")
    @classmethod
    def _enum(cls, value: str) -> str:
        if not _SOURCE_PLATFORM.match(value):
            raise ValueError("source_platform must be the upper-case enum LinkedIn assigned, e.g. 'SEGMENT'")
        return value

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not VERSION_PATTERN.match(value):
            raise ValueError("api_version must look like '202608' (YYYYMM, optionally '.RR')")
        return value

    @property
    def account_urn(self) -> str:
        """The account as LinkedIn names it in request bodies and finder parameters."""
        return f"{ACCOUNT_URN_PREFIX}{self.ad_account_id}"


class LinkedInCredentials(Credentials):
    """A 3-legged OAuth access token (scope `rw_dmp_segments`) and, to renew it unattended, the refresh grant.

    Access tokens expire after 60 days; with `refresh_token`, `client_id` and `client_secret` the connector
    fetches a new one when LinkedIn answers 401, so a run never stops on an expired token.
    """

    access_token: SecretStr
    refresh_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None

    @model_validator(mode="after")
    def _complete_refresh_grant(self) -> Self:
        if self.refresh_token is not None and (not self.client_id or self.client_secret is None):
            raise ValueError("refresh_token needs client_id and client_secret as well")
        return self

    @property
    def can_refresh(self) -> bool:
        """Whether the refresh grant is complete."""
        return self.refresh_token is not None and bool(self.client_id) and self.client_secret is not None


def name_in_clear(value: str, country: str | None) -> str:
    """A first or last name as LinkedIn takes it in clear: NFC, trimmed, inner whitespace runs made one space.

    LinkedIn DMP Segment Users take `firstName`/`lastName` unhashed, at most 35 characters each (users schema;
    Segment's and Tealium's connectors send names as entered). Case, accents and punctuation are kept because
    they are how members spell their profile names and LinkedIn does the matching: "  José  O'Neil " ->
    "José O'Neil". A longer name is refused rather than cut, since a truncated name matches nobody.
    """
    text = " ".join(unicodedata.normalize("NFC", value).split())
    if not text:
        raise InvalidIdentifier("name is empty")
    if len(text) > NAME_MAX_LENGTH:
        raise InvalidIdentifier(f"name is longer than LinkedIn's {NAME_MAX_LENGTH} characters")
    return text
