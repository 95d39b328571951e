"""A local emulator of Google's OAuth token endpoint and the Data Manager API's Customer Match surface.

Served: `POST /token` (refresh-token grant, form-encoded), and under `/v1/`: `GET|POST
accountTypes/{type}/accounts/{id}/userLists` (list: `pageSize`, `pageToken`, a `filter` of `=`, `!=` or `:`
conditions joined by AND on `display_name`, `description`, `integration_code` or `membership_status`; create), `GET
.../userLists/{id}`, `POST audienceMembers:ingest`, `POST audienceMembers:remove`, `GET requestStatus:retrieve`.
Errors come in Google's shape (`{"error": {code, message, status, details: [ErrorInfo, BadRequest
{fieldViolations: [{field, description, reason}]}]}}`, reasons from Data Manager's `ErrorReason`), token errors in
OAuth's, throttling as 429 RESOURCE_EXHAUSTED without Retry-After (Google sends none), transient failures as 503
UNAVAILABLE. A duplicate list name is refused with 409 ALREADY_EXISTS (Google's exact code is not documented).

Stricter than Google where the connector's own rules are the contract: encoding must be HEX, hashes lowercase,
and every ingested member's consent must be stated. A member whose effective consent is DENIED is not added
and is counted in the request's diagnostics (PROCESSING_ERROR_REASON_DENIED_CONSENT), as Google reports it.
Partial-reject faults are not emulated: Google accepts or refuses a request as a whole and reports per-record
problems only as counts, later, so there is no per-record outcome to imitate.

Membership is a set of identities (a member's identifiers in a stable order, as `member_key` spells them) per user
list; Google matches people instead, but identities make re-adding idempotent, removal by the same payload exact,
and the end state comparable member for member. User lists live in crm-activation's standard audience store (each
with its operating account), and the token endpoint is its `RefreshTokenEndpoint`.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from crm_activation import (
    Credentials,
    FaultPlan,
    RefreshTokenEndpoint,
    SandboxApp,
    SandboxAudience,
    SandboxRequest,
    SandboxResponse,
)

from .sandbox_checks import bad, consent, google_error, member, obj
from .settings import (
    DEFAULT_LIST_PAGE_SIZE,
    DIGITS,
    DURATION_SHAPE,
    ENCODING,
    FIRST_PARTY,
    MAX_DESTINATIONS,
    MAX_LIST_PAGE_SIZE,
    MAX_MEMBERS_PER_REQUEST,
    MAX_MEMBERSHIP_DAYS,
    MEMBERSHIP_OPEN,
    SANDBOX_TOKEN_PATH,
    SCOPE,
    SECONDS_PER_DAY,
    TERMS_ACCEPTED,
    UPLOAD_KEY_CONTACT_ID,
    AccountType,
    GoogleDataManagerCredentials,
    LoginAccountType,
)

_INGEST_FIELDS = {"destinations", "audienceMembers", "consent", "validateOnly", "encoding", "encryptionInfo",
                  "termsOfService"}
_REMOVE_FIELDS = {"destinations", "audienceMembers", "validateOnly", "encoding", "encryptionInfo"}
_LIST_FIELDS = {"name", "displayName", "description", "membershipStatus", "integrationCode", "membershipDuration",
                "ingestedUserListInfo", "targetNetworkInfo"}
#: The filter fields the sandbox serves (Google's snake_case or camelCase names) and the user-list fields they read.
_FILTER_FIELDS = {"display_name": "name", "displayName": "name", "description": "description",
                  "integration_code": "integration_code", "integrationCode": "integration_code",
                  "membership_status": "status", "membershipStatus": "status"}
_CONDITION = re.compile(r'^\s*(\w+)\s*(=|!=|:)\s*"((?:[^"\\]|\\.)*)"\s*$')
#: How each served operator compares a list's field with the condition's value (`:` is "has": contains).
_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "=": lambda field, value: field == value,
    "!=": lambda field, value: field != value,
    ":": lambda field, value: value in field,
}
_DESTINATION_FIELDS = {"reference", "loginAccount", "linkedAccount", "operatingAccount", "productDestinationId"}


@dataclass
class _UserList(SandboxAudience):
    """A user list of one operating account ("TYPE/ID"); each member is kept with its consent when last ingested."""

    account: str
    description: str
    duration: str
    integration_code: str = ""  # "An ID from external system": crm-activation keeps its audience marker here

    def view(self) -> dict[str, Any]:
        """The standard view, plus how many members carry each consent label."""
        return super().view() | {"consent": dict(Counter(self.members.values()))}


class GoogleDataManagerSandbox(SandboxApp[_UserList]):
    """Google's token endpoint and Data Manager's user lists and audience-member ingestion, in memory.

    Args:
        credentials: the OAuth client and refresh token the token endpoint accepts; nothing else gets a token.
        faults: throttling, 5xx and timeouts to inject (partial rejects do not apply, see the module docstring).
        accounts: operating accounts the user may use, as "TYPE/ID"; None allows any.
        token_lifetime: `expires_in` of issued access tokens in seconds (Google: 3599).
        clock: monotonic seconds for token expiry; tests substitute one they can move.
    """

    platform = "google_data_manager"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "client_id": "sandbox-dm-client.apps.example",
        "client_secret": "sandbox-dm-secret-4b8e21",
        "refresh_token": "sandbox-dm-refresh-7c0d93",
    }
    first_id = 9_100_000_001
    oauth: RefreshTokenEndpoint

    def __init__(self, credentials: Credentials, faults: FaultPlan | None = None, accounts: Iterable[str] | None = None,
                 token_lifetime: int = 3599, clock: Callable[[], float] = time.monotonic) -> None:
        if not isinstance(credentials, GoogleDataManagerCredentials):
            raise TypeError("GoogleDataManagerSandbox needs GoogleDataManagerCredentials")
        super().__init__(credentials, faults)
        self.oauth = RefreshTokenEndpoint.for_credentials(
            SANDBOX_TOKEN_PATH, credentials, lifetime=token_lifetime, token_prefix="ya29.sandbox-", clock=clock,
            answer={"scope": SCOPE},
        )
        self.accounts = set(accounts) if accounts is not None else None
        self.max_members_per_request = MAX_MEMBERS_PER_REQUEST  # lower it in a test rather than send 10,001
        self.statuses: dict[str, list[dict[str, Any]]] = {}  # request id -> status per destination
        self._page_tokens: dict[tuple[str, str], int] = {}  # (token, filter and page size) -> next offset

    # -- dispatch (tokens: `oauth.expire()`; a deleted list answers 404 NOT_FOUND) --------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Check the bearer token and route an API call (the base serves the token endpoint)."""
        parts = request.path.strip("/").split("/")
        if parts[0] != "v1":
            raise google_error("NOT_FOUND", f"The requested URL {request.path} was not found on this server.")
        self._authenticate(request)
        route, method = parts[1:], request.method
        if route == ["audienceMembers:ingest"] and method == "POST":
            return self._members(request, ingest=True)
        if route == ["audienceMembers:remove"] and method == "POST":
            return self._members(request, ingest=False)
        if route == ["requestStatus:retrieve"] and method == "GET":
            return self._status(request.param("requestId") or "")
        if len(route) in (5, 6) and route[0] == "accountTypes" and route[2] == "accounts" and route[4] == "userLists":
            account = self._account(route[1], route[3], "parent")
            if len(route) == 5 and method == "GET":
                return self._list_lists(account, request)
            if len(route) == 5 and method == "POST":
                return self._create_list(account, request.json())
            if len(route) == 6 and method == "GET":
                return SandboxResponse(200, self._resource(account, route[5], self._user_list(account, route[5])))
        raise google_error("NOT_FOUND", f"The requested URL {request.path} was not found on this server.")

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """Google's quota answer: 429 RESOURCE_EXHAUSTED, no Retry-After header."""
        return google_error("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).").response

    def server_error_response(self) -> SandboxResponse:
        """Google's transient failure: 503 UNAVAILABLE."""
        return google_error("UNAVAILABLE", "The service is currently unavailable.").response

    # -- auth ------------------------------------------------------------------------------------------------
    def _authenticate(self, request: SandboxRequest) -> None:
        if self.token_problem(request) is not None:
            message = "Request had invalid authentication credentials. Expected OAuth 2 access token."
            raise google_error("UNAUTHENTICATED", message)

    def _account(self, account_type: Any, account_id: Any, where: str, login: bool = False) -> str:
        allowed = {t.value for t in (LoginAccountType if login else AccountType)}
        if account_type not in allowed:
            raise bad("INVALID_ENUM_VALUE", f"{where}.account_type", "Enum value cannot be used.")
        if not isinstance(account_id, str) or not DIGITS.match(account_id):
            raise bad("INVALID_FORMAT", f"{where}.account_id", "The account id must be numeric.")
        account = f"{account_type}/{account_id}"
        if not login and self.accounts is not None and account not in self.accounts:
            raise google_error("PERMISSION_DENIED", "The caller does not have permission", "PERMISSION_DENIED", where)
        return account

    # -- user lists ------------------------------------------------------------------------------------------
    def _user_list(self, account: str, list_id: str) -> _UserList:
        found = self._lists(account).get(list_id)
        if found is None:
            raise google_error("NOT_FOUND", "Requested entity was not found.")
        return found

    def _lists(self, account: str) -> dict[str, _UserList]:
        return {list_id: ul for list_id, ul in self.audiences.items() if ul.account == account}

    def _resource(self, account: str, list_id: str, ul: _UserList) -> dict[str, Any]:
        return {"name": f"accountTypes/{account.replace('/', '/accounts/')}/userLists/{list_id}", "id": list_id,
                "readOnly": False, "displayName": ul.name, "description": ul.description,
                "membershipStatus": MEMBERSHIP_OPEN, "membershipDuration": ul.duration, "accessReason": "OWNED",
                **({"integrationCode": ul.integration_code} if ul.integration_code else {}),
                "ingestedUserListInfo": {"uploadKeyTypes": [UPLOAD_KEY_CONTACT_ID],
                                         "contactIdInfo": {"dataSourceType": FIRST_PARTY}}}

    def _list_lists(self, account: str, request: SandboxRequest) -> SandboxResponse:
        """One page of the account's user lists, filtered and paged as `userLists.list` does.

        A page token is only good for the same filter and page size ("all other parameters ... must match the
        call that provided the page token"); other accounts' lists are never listed.
        """
        filter_text, size_text = request.param("filter") or "", request.param("pageSize") or "0"
        conditions = list_filter(filter_text)
        try:
            size = int(size_text)
        except ValueError:
            raise bad("INVALID_ARGUMENT", "page_size", "pageSize must be an integer.") from None
        if size < 0:
            raise bad("INVALID_ARGUMENT", "page_size", "pageSize must not be negative.")
        size = min(size or DEFAULT_LIST_PAGE_SIZE, MAX_LIST_PAGE_SIZE)
        live = [(i, ul) for i, ul in self._lists(account).items()
                if all(_OPERATORS[op](_field(ul, name), value) for name, op, value in conditions)]
        query = f"{filter_text}\n{size_text}"
        start = 0
        if request.param("pageToken"):
            start = self._page_tokens.get((request.param("pageToken") or "", query), -1)
            if start < 0:
                raise bad("INVALID_ARGUMENT", "page_token", "The page token is not valid for this request.")
        body: dict[str, Any] = {"userLists": [self._resource(account, i, ul) for i, ul in live[start : start + size]]}
        if start + size < len(live):
            token = secrets.token_urlsafe(12)
            self._page_tokens[(token, query)] = start + size
            body["nextPageToken"] = token
        return SandboxResponse(200, body)

    def _create_list(self, account: str, body: Any) -> SandboxResponse:
        body = obj(body, "user_list", _LIST_FIELDS)
        name = body.get("displayName")
        if not isinstance(name, str) or not name.strip():
            raise bad("REQUIRED_FIELD_MISSING", "user_list.display_name", "The display name is required.")
        where = "user_list.ingested_user_list_info"
        info = obj(body.get("ingestedUserListInfo"), where, {"uploadKeyTypes", "contactIdInfo"})
        if info.get("uploadKeyTypes") != [UPLOAD_KEY_CONTACT_ID]:
            message = "The sandbox serves contact-information Customer Match lists: [CONTACT_ID] only."
            raise bad("INVALID_USER_LIST_TYPE", f"{where}.upload_key_types", message)
        days = MAX_MEMBERSHIP_DAYS
        if "membershipDuration" in body:
            match = DURATION_SHAPE.match(str(body["membershipDuration"]))
            seconds = int(match.group(1)) if match else -1
            if seconds <= 0 or seconds % SECONDS_PER_DAY or seconds // SECONDS_PER_DAY > MAX_MEMBERSHIP_DAYS:
                raise bad(
                    "INVALID_ARGUMENT",
                    "user_list.membership_duration",
                    f"Must be whole days (multiples of 86400s), at most {MAX_MEMBERSHIP_DAYS} days.",
                )
            days = seconds // SECONDS_PER_DAY
        if any(ul.name == name for ul in self._lists(account).values()):
            raise google_error("ALREADY_EXISTS", "A user list with this name already exists.")
        user_list = _UserList(account, str(body.get("description") or ""), f"{days * SECONDS_PER_DAY}s",
                              str(body.get("integrationCode") or ""), name=name)
        return SandboxResponse(200, self._resource(account, self.create_audience(user_list), user_list))

    # -- audience members ------------------------------------------------------------------------------------
    def _members(self, request: SandboxRequest, ingest: bool) -> SandboxResponse:
        body = obj(request.json(), "request", _INGEST_FIELDS if ingest else _REMOVE_FIELDS)
        if body.get("encoding") != ENCODING:  # "Required for UserData uploads"; the connector sends HEX only
            reason = "REQUIRED_FIELD_MISSING" if "encoding" not in body else "INVALID_ENUM_VALUE"
            raise bad(reason, "encoding", "The sandbox takes hex-encoded SHA-256: encoding HEX.")
        if "encryptionInfo" in body:
            raise bad("INVALID_ARGUMENT", "encryption_info", "The sandbox does not emulate encryption.")
        terms = (body.get("termsOfService") or {}).get("customerMatchTermsOfServiceStatus")
        if ingest and terms != TERMS_ACCEPTED:
            raise bad("TERMS_AND_CONDITIONS_NOT_SIGNED", "terms_of_service", "Required terms are not accepted.")
        targets = self._destinations(body.get("destinations"))
        members = body.get("audienceMembers")
        if not isinstance(members, list) or not members:
            raise bad("REQUIRED_FIELD_MISSING", "audience_members", "At least one audience member is required.")
        if len(members) > self.max_members_per_request:
            raise bad(
                "TOO_MANY_AUDIENCE_MEMBERS",
                "audience_members",
                f"Maximum number of audience members allowed per request is {self.max_members_per_request}.",
            )
        default = consent(body.get("consent"), "consent") if ingest else {}
        checked = [member(m, f"audience_members.audience_members[{i}]", default, ingest)
                   for i, m in enumerate(members)]
        request_id = secrets.token_hex(16)
        if body.get("validateOnly") is True:
            return SandboxResponse(200, {"requestId": request_id})
        denied = sum(1 for _, label in checked if "DENIED" in label)
        for user_list in targets:
            for identity, label in checked:
                if not ingest:
                    user_list.remove(identity)
                elif "DENIED" not in label:
                    user_list.add(identity, label)
        count = sum(len(identity) for identity, _ in checked)
        status: dict[str, Any] = {
            "requestStatus": "PARTIAL_SUCCESS" if denied else "SUCCESS",
            ("audienceMembersIngestionStatus" if ingest else "audienceMembersRemovalStatus"): {
                ("userDataIngestionStatus" if ingest else "userDataRemovalStatus"): {
                    "recordCount": str(len(checked)),
                    "userIdentifierCount": str(count),
                }
            },
        }
        if denied:
            status["errorInfo"] = {
                "errorCounts": [{"recordCount": str(denied), "reason": "PROCESSING_ERROR_REASON_DENIED_CONSENT"}]
            }
        self.statuses[request_id] = [{"destination": d, **status} for d in body["destinations"]]
        return SandboxResponse(200, {"requestId": request_id})

    def _status(self, request_id: str) -> SandboxResponse:
        if request_id not in self.statuses:
            raise bad("INVALID_REQUEST_ID", "request_id", "The request ID used to retrieve the status is not valid.")
        return SandboxResponse(200, {"requestStatusPerDestination": self.statuses[request_id]})

    def _destinations(self, value: Any) -> list[_UserList]:
        if not isinstance(value, list) or not value:
            raise bad("REQUIRED_FIELD_MISSING", "destinations", "At least one destination is required.")
        if len(value) > MAX_DESTINATIONS:
            raise bad(
                "TOO_MANY_DESTINATIONS",
                "destinations",
                f"Maximum number of destinations allowed per request is {MAX_DESTINATIONS}.",
            )
        targets = []
        for index, item in enumerate(value):
            where = f"destinations[{index}]"
            item = obj(item, where, _DESTINATION_FIELDS)
            operating = obj(item.get("operatingAccount"), f"{where}.operating_account", {"accountType", "accountId"})
            account = self._account(operating.get("accountType"), operating.get("accountId"), where)
            if "loginAccount" in item:
                login = obj(item["loginAccount"], f"{where}.login_account", {"accountType", "accountId"})
                self._account(login.get("accountType"), login.get("accountId"), f"{where}.login_account", True)
            list_id = item.get("productDestinationId")
            found = self._lists(account).get(str(list_id))
            if not isinstance(list_id, str) or found is None:
                raise bad("INVALID_USER_LIST_ID", f"{where}.product_destination_id", "User list is not valid.")
            targets.append(found)
        return targets


def list_filter(text: str) -> list[tuple[str, str, str]]:
    """A `userLists.list` filter as (field, operator, value) conditions; 400 for what the sandbox does not serve.

    Google's filter puts the field on the left, joins conditions with AND, and refuses a mix of snake_case and
    camelCase names. The sandbox serves `=`, `!=` and `:` (has) on quoted strings for the text fields and the
    membership status; Google's comparisons (`<`, `>=`, ...) and its other fields (`id`, `access_reason`, upload
    key types) are refused as not served.
    """
    if not text.strip():
        return []
    conditions = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CONDITION.match(part)
        if match is None or match.group(1) not in _FILTER_FIELDS:
            fields = ", ".join(sorted(f for f in _FILTER_FIELDS if "_" in f))
            raise bad("INVALID_ARGUMENT", "filter", f'The sandbox serves field = "value" conditions on {fields}.')
        conditions.append((match.group(1), match.group(2), re.sub(r"\\(.)", r"\1", match.group(3))))
    names = [name for name, _, _ in conditions]
    if any("_" in n for n in names) and any(n != n.lower() for n in names):
        raise bad("INVALID_ARGUMENT", "filter", "Use all camel case or all snake case field names.")
    return conditions


def _field(user_list: _UserList, name: str) -> str:
    """The user list's value of a filter field (every sandbox list is OPEN)."""
    attribute = _FILTER_FIELDS[name]
    return MEMBERSHIP_OPEN if attribute == "status" else str(getattr(user_list, attribute))


__all__ = ["GoogleDataManagerSandbox"]
