"""Meta account settings, credentials and the contract constants the connector and its sandbox share.

The constants are the facts of Meta's Marketing API (custom-audience `users`/`usersreplace` edges and the
error reference) in one place, so the connector and the sandbox cannot drift apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from enum import StrEnum

from pydantic import SecretStr, field_validator

from crm_activation import AccountConfig, Credentials

#: "You can add an unlimited number of records for an audience, but only a maximum of 10000 at a time."
#: (developers.facebook.com/docs/marketing-api/reference/custom-audience/users)
MAX_ROWS_PER_REQUEST = 10_000

#: Multi-key schema fields Meta accepts on `/users` and `/usersreplace` (custom-audience users reference).
SCHEMA_KEYS = frozenset(
    {"EXTERN_ID", "EMAIL", "PHONE", "GEN", "DOBY", "DOBM", "DOBD", "LN", "FN", "FI", "CT", "ST", "ZIP", "MADID",
     "COUNTRY", "LOOKALIKE_VALUE"}
)

#: Page size asked of `GET /act_{id}/customaudiences` (ad-account customaudiences reference: `fields`, `limit`,
#: cursor paging with `paging.cursors.after` and a `paging.next` link while more remain). Meta's default page is
#: 25; the edge's maximum is not documented (**UNCONFIRMED**), so the sandbox caps pages here and the connector
#: follows the cursors whatever page size it gets.
AUDIENCE_PAGE_SIZE = 100
#: Fields read when listing audiences: the marker lives in `description` (custom-audience create parameter).
AUDIENCE_LIST_FIELDS = "id,name,description,subtype"

# Meta error codes (Marketing API error reference; rate-limiting guide).
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, 80003, 80004})
TRANSIENT_CODES = frozenset({1, 2, 99, 21009})
TOKEN_INVALID_CODES = frozenset({190, 102, 104})  # 190 invalid/expired token, 104 token missing
PERMISSION_CODES = frozenset({10, 200, 294, 2635, 2655, 1487301})  # 2635: API version no longer served
#: Answers meaning the audience is gone: code 100 subcode 33 ("object does not exist, cannot be loaded") and
#: 1487366 ("custom audience deleted"). Other code-100 answers (a bad field name) are not, and are not retried.
AUDIENCE_GONE_SUBCODES: dict[int, frozenset[int] | None] = {100: frozenset({33}), 1487366: None}


def audience_gone(error: dict[str, object]) -> bool:
    """Whether a Graph API `error` object says the audience no longer exists (None: any subcode)."""
    code = error.get("code")
    if not isinstance(code, int) or code not in AUDIENCE_GONE_SUBCODES:
        return False
    subcodes = AUDIENCE_GONE_SUBCODES[code]
    return subcodes is None or error.get("error_subcode") in subcodes

_VERSION = re.compile(r"^v\d+\.\d+$")


class CustomerFileSource(StrEnum):
    """Where the audience's customer data came from; Meta requires one when creating a customer-file audience."""

    USER_PROVIDED_ONLY = "USER_PROVIDED_ONLY"
    PARTNER_PROVIDED_ONLY = "PARTNER_PROVIDED_ONLY"
    BOTH_USER_AND_PARTNER_PROVIDED = "BOTH_USER_AND_PARTNER_PROVIDED"


class FacebookAccount(AccountConfig):
    """The ad account that owns the audiences.

    Attributes:
        ad_account_id: the numeric id; "act_123" (as Ads Manager shows it) is accepted and stored as "123".
        api_version: the Graph API version in every path; Meta retires versions about two years after release.
        customer_file_source: declared on every audience the connector creates.
    """

    ad_account_id: str
    api_version: str = "v25.0"
    customer_file_source: CustomerFileSource = CustomerFileSource.USER_PROVIDED_ONLY

    @field_validator("ad_account_id", mode="before")
    @classmethod
    def _digits(cls, value: object) -> str:
        text = str(value).strip()
        text = text.removeprefix("act_")
        if not text.isdigit():
            raise ValueError("ad_account_id must be digits, optionally prefixed with 'act_'")
        return text

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not _VERSION.match(value):
            raise ValueError("api_version must look like 'v25.0'")
        return value


class FacebookCredentials(Credentials):
    """A system-user access token and, when the app requires it, the app secret for `appsecret_proof`."""

    access_token: SecretStr
    app_secret: SecretStr | None = None

    def appsecret_proof(self) -> str | None:
        """HMAC-SHA256 of the access token keyed with the app secret (hex), or None without an app secret."""
        if self.app_secret is None:
            return None
        return appsecret_proof(self.app_secret.get_secret_value(), self.access_token.get_secret_value())


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """Meta's `appsecret_proof`: hex HMAC-SHA256 with key = app secret and message = access token."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()
