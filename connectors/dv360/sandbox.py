"""A local emulator of Google's OAuth token endpoint and DV360's Customer Match endpoints.

Served endpoints: `POST /token` (refresh-token grant, form-encoded), and under `/v4/`: `GET /advertisers/{id}`,
`GET` (list: `pageSize`, `pageToken`, `orderBy`, a `displayName` HAS filter) and `POST
/firstPartyAndPartnerAudiences?advertiserId=`, `GET /firstPartyAndPartnerAudiences/{id}?advertiserId=`,
`POST /firstPartyAndPartnerAudiences/{id}:editCustomerMatchMembers`. API errors come in Google's shape
(`{"error": {"code", "message", "status", "details"}}`), token errors in OAuth's (`{"error", "error_description"}`),
throttling as 429 RESOURCE_EXHAUSTED without Retry-After (Google sends none) and transient failures as
503 UNAVAILABLE.

Stricter than Google where the connector's own rules are the contract: consent must be present on every
member list (Google reads a missing one as unspecified), hashes must be lowercase hex, and an address must
come with all four of first name, last name, zip and country.

Partial-reject faults are not emulated: DV360 accepts or refuses a request as a whole and reports nothing per
member, so there is no partial outcome to imitate. Turning the fault into a 400 for the request would only
repeat what the validation errors already test, and would make fault-injection runs fail by design.

Membership is a set of contact identities (the ContactInfo with its lists sorted, as `member_key` spells it);
Google matches people instead, but identities make re-adding idempotent, removal by the same payload exact, and
the end state comparable member for member. The token endpoint is core's `RefreshTokenEndpoint`.
"""

from __future__ import annotations

import base64
import re
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

from crm_activation import (
    Credentials,
    FaultPlan,
    RefreshTokenEndpoint,
    SandboxApp,
    SandboxAudience,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
    member_key,
)

from .settings import (
    ADDRESS_FIELDS,
    API_VERSION,
    AUDIENCE_TYPE,
    AUDIENCES,
    CONTACT_INFO_FIELDS,
    COUNTRY_CODE,
    COUNTRY_CODE_SHAPE,
    EDIT_MEMBERS,
    FIRST_PARTY,
    HASHED_FIELDS,
    LIST_FIELDS,
    MAX_LIST_FILTER_LENGTH,
    MAX_LIST_PAGE_SIZE,
    MAX_MEMBERS_PER_REQUEST,
    SANDBOX_TOKEN_PATH,
    SCOPE,
    SHA256_HEX,
    ZIP_CODES,
    ConsentStatus,
    Dv360Credentials,
    membership_duration,
)

# Device-id fields (mobileDeviceIdList, appId) are left out: the sandbox serves contact-info audiences only.
_CREATE_FIELDS = frozenset(
    {"displayName", "description", "audienceType", "firstPartyAndPartnerAudienceType", "membershipDurationDays",
     "contactInfoList"}
)
_MEMBER_LISTS = (
    "addedContactInfoList", "removedContactInfoList", "addedMobileDeviceIdList", "removedMobileDeviceIdList"
)
_ORDER_FIELDS = ("firstPartyAndPartnerAudienceId", "displayName")
_HAS_FILTER = re.compile(r'^\s*displayName\s*:\s*"((?:[^"\\]|\\.)*)"\s*$')
_HTTP_CODES = {"INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403, "NOT_FOUND": 404}


@dataclass
class _Audience(SandboxAudience):
    """A Customer Match audience; each member is kept with the consent it was last added with."""

    advertiser_id: str
    description: str
    duration: str

    def view(self) -> dict[str, Any]:
        """The standard view, plus how many members carry each consent label."""
        return super().view() | {"consent": dict(Counter(self.members.values()))}


class Dv360Sandbox(SandboxApp[_Audience]):
    """Google's token endpoint and DV360's Customer Match surface, in memory.

    Args:
        credentials: the OAuth client and refresh token the token endpoint accepts; nothing else gets a token.
        faults: throttling, 5xx and timeouts to inject (partial rejects do not apply, see the module docstring).
        advertiser_ids: the advertisers the user may access; None allows any numeric id.
        token_lifetime: `expires_in` of issued access tokens in seconds (Google: 3599); small values let tests
            see tokens expire.
        clock: monotonic seconds for token expiry; tests substitute one they can move.
    """

    platform = "dv360"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "client_id": "sandbox-dv360-client.apps.example",
        "client_secret": "sandbox-dv360-secret-5e1b7a",
        "refresh_token": "sandbox-dv360-refresh-2c9f44",
    }
    first_id = 4_100_000_001
    oauth: RefreshTokenEndpoint

    def __init__(
        self,
        credentials: Credentials,
        faults: FaultPlan | None = None,
        advertiser_ids: Iterable[str] | None = None,
        token_lifetime: int = 3599,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(credentials, Dv360Credentials):
            raise TypeError("Dv360Sandbox needs Dv360Credentials")
        super().__init__(credentials, faults)
        self.oauth = RefreshTokenEndpoint.for_credentials(
            SANDBOX_TOKEN_PATH, credentials, lifetime=token_lifetime, token_prefix="ya29.sandbox-", clock=clock,
            answer={"scope": SCOPE},
        )
        self.max_members_per_request = MAX_MEMBERS_PER_REQUEST  # lower it in a test rather than send 500,001
        self.advertisers = set(advertiser_ids) if advertiser_ids is not None else None

    # -- Google's error shapes -------------------------------------------------------------------------------
    def error(self, status: str, message: str, code: int | None = None) -> SandboxError:
        """A Google JSON error, ready to raise."""
        http = code or _HTTP_CODES.get(status, 400)
        return SandboxError(http, {"error": {"code": http, "message": message, "status": status, "details": []}})

    def bad(self, message: str) -> SandboxError:
        """400 INVALID_ARGUMENT, Google's answer to any malformed request."""
        return self.error("INVALID_ARGUMENT", message)

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """429 RESOURCE_EXHAUSTED and no Retry-After: Google only says to back off."""
        return self.error("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", 429).response

    def server_error_response(self) -> SandboxResponse:
        """503 UNAVAILABLE, Google's transient failure."""
        return self.error("UNAVAILABLE", "The service is currently unavailable.", 503).response

    # -- test helpers (tokens: `oauth.expire()`) --------------------------------------------------------------
    def reset(self, advertiser_ids: Iterable[str] | None = None, token_lifetime: int = 3599) -> None:
        """Forget audiences, tokens, logged requests and faults, so tests can share one running server."""
        with self.lock:
            super().reset()
            self.advertisers = set(advertiser_ids) if advertiser_ids is not None else None
            self.oauth.lifetime = token_lifetime
            self.max_members_per_request = MAX_MEMBERS_PER_REQUEST

    # -- dispatch --------------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Check the bearer token and route an API call (the base serves the token endpoint)."""
        parts = request.path.strip("/").split("/")
        if parts[0] != API_VERSION or len(parts) not in (2, 3):
            raise self.error("NOT_FOUND", f"The requested URL {request.path} was not found on this server.")
        self._authenticate(request)
        collection, name, method = parts[1], parts[2] if len(parts) == 3 else "", request.method
        if collection == "advertisers" and name and method == "GET":
            advertiser = self._advertiser(name)
            return SandboxResponse(200, {"name": f"advertisers/{advertiser}", "advertiserId": advertiser,
                                         "displayName": f"Sandbox advertiser {advertiser}"})
        if collection == AUDIENCES and not name and method == "POST":
            return self._create(self._advertiser(request.param("advertiserId")), request)
        if collection == AUDIENCES and not name and method == "GET":
            return self._list(self._advertiser(request.param("advertiserId")), request)
        if collection == AUDIENCES and name and method == "GET" and ":" not in name:
            return self._read(name, self._advertiser(request.param("advertiserId")))
        if collection == AUDIENCES and name.endswith(f":{EDIT_MEMBERS}") and method == "POST":
            return self._edit(name.removesuffix(f":{EDIT_MEMBERS}"), request)
        raise self.error("NOT_FOUND", f"The requested URL {request.path} was not found on this server.")

    def _authenticate(self, request: SandboxRequest) -> None:
        problem = self.token_problem(request)
        if problem == "missing":
            raise self.error("UNAUTHENTICATED", "Request is missing required authentication credential.")
        if problem is not None:
            raise self.error("UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 "
                             "access token, login cookie or other valid authentication credential.")

    def _advertiser(self, value: object) -> str:
        advertiser = str(value or "")
        if not advertiser.isdigit():
            raise self.bad("advertiserId is required and must be an int64")
        if self.advertisers is not None and advertiser not in self.advertisers:
            raise self.error("PERMISSION_DENIED", "The caller does not have permission")
        return advertiser

    def _audience(self, audience_id: str, advertiser: str) -> _Audience:
        audience = self.audiences.get(audience_id)
        if audience is None or audience.advertiser_id != advertiser:
            raise self.error("NOT_FOUND", "Requested entity was not found.")
        return audience

    # -- endpoints -------------------------------------------------------------------------------------------
    def _create(self, advertiser: str, request: SandboxRequest) -> SandboxResponse:
        body = self._object(request.json(), "FirstPartyAndPartnerAudience", _CREATE_FIELDS)
        if not str(body.get("displayName") or "").strip():
            raise self.bad("displayName is required")
        if body.get("audienceType") != AUDIENCE_TYPE:
            raise self.bad(f"audienceType must be {AUDIENCE_TYPE} (the sandbox serves contact-info Customer Match)")
        if body.get("firstPartyAndPartnerAudienceType", FIRST_PARTY) != FIRST_PARTY:
            raise self.bad(f"a Customer Match audience must be {FIRST_PARTY}")
        if "membershipDurationDays" not in body:
            raise self.bad("membershipDurationDays is required for CUSTOMER_MATCH_CONTACT_INFO")
        try:
            days = membership_duration(body["membershipDurationDays"])
        except ValueError:
            raise self.bad("membershipDurationDays must be greater than 0 and less than or equal to 540") from None
        audience = _Audience(advertiser, str(body.get("description") or ""), str(days), name=str(body["displayName"]))
        if "contactInfoList" in body:  # optional: "the initial audience members"
            identities, consent = self._contact_list(body["contactInfoList"], "contactInfoList", allow_empty=True)
            audience.members = dict.fromkeys(identities, consent)
        audience_id = self.create_audience(audience)
        return SandboxResponse(200, self._resource(audience_id, audience))

    def _list(self, advertiser: str, request: SandboxRequest) -> SandboxResponse:
        """One page of the advertiser's audiences, as `firstPartyAndPartnerAudiences.list` pages them.

        Without audience sizes (the list omits them), the list field absent when empty, `nextPageToken` only while
        more remain; a bad page size, page token, order or filter is INVALID_ARGUMENT. Another advertiser's
        audiences are never listed.
        """
        size_text = request.param("pageSize")
        size = int(size_text) if size_text and size_text.isdigit() else (MAX_LIST_PAGE_SIZE if not size_text else 0)
        if not 1 <= size <= MAX_LIST_PAGE_SIZE:
            raise self.bad(f"pageSize must be between 1 and {MAX_LIST_PAGE_SIZE}")
        found = [(i, a) for i, a in self.audiences.items() if a.advertiser_id == advertiser]
        wanted = _has_filter(request.param("filter") or "")
        if wanted is None:
            raise self.bad('filter must be at most one restriction displayName:"..." of at most '
                           f"{MAX_LIST_FILTER_LENGTH} characters")
        found = [(i, a) for i, a in found if wanted.lower() in a.name.lower()]
        order = (request.param("orderBy") or "firstPartyAndPartnerAudienceId").split() or [""]
        if order[0] not in _ORDER_FIELDS or order[1:] not in ([], ["desc"]):
            raise self.bad("orderBy must be firstPartyAndPartnerAudienceId or displayName, optionally desc")
        found.sort(key=lambda item: int(item[0]) if order[0] == "firstPartyAndPartnerAudienceId" else item[1].name,
                   reverse=order[1:] == ["desc"])
        start = _page_start(request.param("pageToken"))
        if start is None or start > len(found):
            raise self.bad("pageToken is not valid")
        page = found[start : start + size]
        body: dict[str, Any] = {}
        if page:
            body[AUDIENCES] = [self._resource(i, a) for i, a in page]
        if start + size < len(found):
            body["nextPageToken"] = _page_token(start + size)
        return SandboxResponse(200, body)

    def _read(self, audience_id: str, advertiser: str) -> SandboxResponse:
        audience = self._audience(audience_id, advertiser)
        resource = self._resource(audience_id, audience)
        # "If the size is less than 1000, the number will be hidden and 0 will be returned due to privacy reasons."
        size = len(audience.members)
        resource["displayAudienceSize"] = str(size if size >= 1000 else 0)
        return SandboxResponse(200, resource)

    def _edit(self, audience_id: str, request: SandboxRequest) -> SandboxResponse:
        body = self._object(request.json(), "EditCustomerMatchMembersRequest", {"advertiserId", *_MEMBER_LISTS})
        audience = self._audience(audience_id, self._advertiser(body.get("advertiserId")))
        given = [name for name in _MEMBER_LISTS if name in body]
        if len(given) != 1:
            raise self.bad(f"exactly one of {', '.join(_MEMBER_LISTS)} must be set, got {len(given)}")
        if "MobileDeviceId" in given[0]:
            raise self.bad("mobile device ids cannot edit a CUSTOMER_MATCH_CONTACT_INFO audience")
        identities, consent = self._contact_list(body[given[0]], given[0], allow_empty=False)
        for identity in identities:
            if given[0].startswith("added"):
                audience.add(identity, consent)
            else:
                audience.remove(identity)
        return SandboxResponse(200, {"firstPartyAndPartnerAudienceId": audience_id})

    def _resource(self, audience_id: str, audience: _Audience) -> dict[str, Any]:
        return {"name": f"{AUDIENCES}/{audience_id}", "firstPartyAndPartnerAudienceId": audience_id,
                "displayName": audience.name, "description": audience.description,
                "firstPartyAndPartnerAudienceType": FIRST_PARTY, "audienceType": AUDIENCE_TYPE,
                "audienceSource": "DISPLAY_VIDEO_360", "membershipDurationDays": audience.duration}

    # -- body checks -----------------------------------------------------------------------------------------
    def _object(self, value: Any, what: str, allowed: Iterable[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.bad(f"Invalid JSON payload received. {what} must be an object.")
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise self.bad(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'{what}\': '
                           "Cannot find field.")
        return value

    def _contact_list(self, value: Any, where: str, allow_empty: bool) -> tuple[list[Hashable], str]:
        """The identities in a ContactInfoList and its consent label; 400 for anything malformed."""
        body = self._object(value, where, {"contactInfos", "consent"})
        if "consent" not in body:  # Google would read "unspecified"; the connector promises to always say
            raise self.bad(f"{where}.consent is required: every member list states its users' consent")
        consent = self._object(body.get("consent"), f"{where}.consent", {"adUserData", "adPersonalization"})
        statuses = {s.value for s in ConsentStatus}
        labels = []
        for name in ("adUserData", "adPersonalization"):
            status = consent.get(name, ConsentStatus.UNSPECIFIED.value)
            if status not in statuses:
                raise self.bad(f"{where}.consent.{name}: invalid value")
            if status == ConsentStatus.DENIED:
                raise self.bad(f"{where}.consent.{name} is CONSENT_STATUS_DENIED: users without consent cannot "
                               "be uploaded")
            labels.append(status.removeprefix("CONSENT_STATUS_"))
        infos = body.get("contactInfos", [])
        if not isinstance(infos, list) or (not infos and not allow_empty):
            raise self.bad(f"{where}.contactInfos must be a non-empty list")
        checked = [self._contact_info(info, f"{where}.contactInfos[{index}]") for index, info in enumerate(infos)]
        members = sum(count for _, count in checked)
        if members > self.max_members_per_request:
            raise self.bad(f"{where}: the size of members after splitting the contact_infos ({members}) must not "
                           f"be greater than {self.max_members_per_request}")
        return [identity for identity, _ in checked], "/".join(labels)

    def _contact_info(self, value: Any, where: str) -> tuple[Hashable, int]:
        """A ContactInfo's identity (its `member_key`, lists sorted) and how many members it splits into."""
        info = self._object(value, where, CONTACT_INFO_FIELDS)
        canonical: dict[str, Any] = {}
        for name, item in info.items():
            values = item if name in LIST_FIELDS else [item]
            if name in LIST_FIELDS and (not isinstance(item, list) or not item):
                raise self.bad(f"{where}.{name} must be a non-empty list")
            for text in values:
                problem = _value_problem(name, text)
                if problem:
                    raise self.bad(f"{where}.{name}: {problem}")
            canonical[name] = sorted(values) if name in LIST_FIELDS else item
        address = [name for name in ADDRESS_FIELDS if name in canonical]
        if address and len(address) != len(ADDRESS_FIELDS):
            raise self.bad(f"{where}: address matching needs hashedFirstName, hashedLastName, zipCodes and "
                           "countryCode together")
        count = len(canonical.get("hashedEmails", [])) + len(canonical.get("hashedPhoneNumbers", []))
        count += len(canonical.get(ZIP_CODES, []))  # one address per zip code
        if count == 0:
            raise self.bad(f"{where}: needs an e-mail, a phone number or an address")
        return member_key(canonical), count


def _value_problem(name: str, value: Any) -> str | None:
    """Why Google would refuse one ContactInfo value (the sandbox can only check the shape of a hash)."""
    if not isinstance(value, str) or not value:
        return "must be a non-empty string"
    if name in HASHED_FIELDS:
        return None if SHA256_HEX.match(value) else "must be a SHA-256 hash (64 lowercase hex digits)"
    if name == COUNTRY_CODE:
        return None if COUNTRY_CODE_SHAPE.match(value) else "must be an ISO 3166-1 alpha-2 code in upper case"
    if SHA256_HEX.match(value.lower()):
        return "zip codes must not be hashed"
    return None


__all__ = ["Dv360Sandbox"]


def _has_filter(text: str) -> str | None:
    """The value of a `displayName:"..."` filter ("" for no filter), or None for a filter DV360 refuses."""
    if not text.strip():
        return ""
    match = _HAS_FILTER.match(text)
    if len(text) > MAX_LIST_FILTER_LENGTH or match is None:
        return None
    return re.sub(r"\\(.)", r"\1", match.group(1))


def _page_token(start: int) -> str:
    """An opaque page token (the next page's offset here; Google's are opaque too)."""
    return base64.urlsafe_b64encode(f"page:{start}".encode()).decode()


def _page_start(token: str | None) -> int | None:
    """The offset a page token stands for (0 without one), or None for a token this sandbox never issued."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    number = text.removeprefix("page:")
    return int(number) if text.startswith("page:") and number.isdigit() else None
