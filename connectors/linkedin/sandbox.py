"""A local emulator of LinkedIn's DMP segment endpoints and OAuth refresh, enforcing the connector's contract.

Served: `GET /rest/dmpSegments?q=account` (finder), `POST /rest/dmpSegments`, `GET`/`DELETE
/rest/dmpSegments/{id}`, `POST /rest/dmpSegments/{id}/users` (BATCH_CREATE, or one element without it) and
`POST /oauth/v2/accessToken` (`grant_type=refresh_token`). Every `/rest` call needs a live bearer token, a
`LinkedIn-Version` inside the active window and `X-Restli-Protocol-Version: 2.0.0`.

Error shapes are LinkedIn's: `{"status", "serviceErrorCode"?, "code"?, "message"}` for the API, RFC 6749
`{"error", "error_description"}` for OAuth. Confirmed in public traces: 401 INVALID/REVOKED/EXPIRED_ACCESS_TOKEN
(65600/65601/65602), 426 NONEXISTENT_VERSION, 429 TOO_MANY_REQUESTS (serviceErrorCode 101, no Retry-After),
403 ACCESS_DENIED, Rest.li validation messages ("ERROR :: /path :: ..."). Chosen here, UNCONFIRMED: the codes
for a missing or malformed version (400 VERSION_MISSING / INVALID_VERSION), the refusal of a missing protocol
header and of a batch over 5,000 elements, and the 404 and 5xx bodies.

Membership is a set per segment keyed by an element's `userIds` as `{idType: idValue}` (or its names when it has
none). LinkedIn matches elements to members instead, but keys make the properties tests need exact: re-adding is
idempotent (still 201), a REMOVE with the same ids removes, and the end state compares id for id. The OAuth
endpoint is core's `RefreshTokenEndpoint`; the access token configured in the credentials is live from the start.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable
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
)

from .schema import Key, create_problem, element_problem
from .settings import (
    ACCESS_TOKEN_SECONDS,
    ACCOUNT_URN_PREFIX,
    EXPIRED_TOKEN_CODE,
    FINDER_DEFAULT_COUNT,
    INVALID_TOKEN_CODE,
    MAX_ELEMENTS_PER_REQUEST,
    REFRESH_TOKEN_SECONDS,
    RESTLI_PROTOCOL_VERSION,
    REVOKED_TOKEN_CODE,
    TOKEN_PATH,
    VERSION_PATTERN,
    LinkedInCredentials,
)

_SEGMENT_PATH = re.compile(r"^/rest/dmpSegments/([^/]+)(/users)?$")
_ACCOUNT_URN = re.compile(r"^urn:li:sponsoredAccount:(\d+)$")
#: Versions served: the twelve months up to the compilation date of platform-apis.md (2026-11).
ACTIVE_VERSIONS = ("202512", "202611")
#: `RefreshTokenEndpoint.problem` -> LinkedIn's answer (message, code, serviceErrorCode).
_TOKEN_PROBLEMS = {
    "unknown": ("Invalid access token", "INVALID_ACCESS_TOKEN", INVALID_TOKEN_CODE),
    "revoked": ("The token used in the request has been revoked by the user", "REVOKED_ACCESS_TOKEN",
                REVOKED_TOKEN_CODE),
    "expired": ("The token used in the request has expired", "EXPIRED_ACCESS_TOKEN", EXPIRED_TOKEN_CODE),
}


@dataclass
class _Segment(SandboxAudience):
    account: str
    source_platform: str
    source_segment_id: str | None
    type: str
    created: int
    warmup_left: int = 0


class LinkedInSandbox(SandboxApp[_Segment]):
    """LinkedIn's Matched Audiences surface and OAuth refresh, in memory.

    Args:
        credentials: the access token the sandbox accepts at start and the refresh grant it honours.
        faults: throttling, 5xx, timeouts and partial rejects to inject.
        ad_account_ids: the sponsored accounts the member may manage; None allows any numeric id.
        source_platforms: the `sourcePlatform` enums LinkedIn assigned to this app; None allows any enum.
        token_lifetime: seconds an access token lives (LinkedIn: 60 days), from start or from its refresh.
        warmup_requests: `/users` calls answered 404 after a segment is created, as LinkedIn does for a while.
        active_versions: the oldest and newest `LinkedIn-Version` (YYYYMM) served; others get 426.
        clock: seconds since the epoch; tests pass their own to expire tokens without waiting.
    """

    platform = "linkedin"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "access_token": "sandbox-linkedin-token-81c2d0",
    }
    first_id = 100001
    oauth: RefreshTokenEndpoint

    def __init__(
        self,
        credentials: Credentials,
        faults: FaultPlan | None = None,
        *,
        ad_account_ids: Iterable[str] | None = None,
        source_platforms: Iterable[str] | None = None,
        token_lifetime: float = ACCESS_TOKEN_SECONDS,
        warmup_requests: int = 0,
        active_versions: tuple[str, str] = ACTIVE_VERSIONS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(credentials, LinkedInCredentials):
            raise TypeError("LinkedInSandbox needs LinkedInCredentials")
        super().__init__(credentials, faults)
        self.source_platforms = set(source_platforms) if source_platforms is not None else None
        self.warmup_requests = warmup_requests
        self.active_versions = active_versions
        self.clock = clock
        self.configured_token = credentials.access_token.get_secret_value()
        refresh = credentials.refresh_token.get_secret_value() if credentials.refresh_token else None
        answer = {"refresh_token": refresh, "refresh_token_expires_in": REFRESH_TOKEN_SECONDS}
        self.oauth = RefreshTokenEndpoint.for_credentials(
            TOKEN_PATH, credentials, lifetime=token_lifetime, token_prefix="AQV", clock=clock, answer=answer
        )
        self._start(ad_account_ids)  # keeps the fault plan given here

    # -- LinkedIn's error shapes ----------------------------------------------------------------------------
    def error(
        self, status: int, message: str, code: str | None = None, service_code: int | None = None
    ) -> SandboxError:
        """A LinkedIn API error, ready to raise."""
        body: dict[str, Any] = {"status": status}
        if service_code is not None:
            body["serviceErrorCode"] = service_code
        if code is not None:
            body["code"] = code
        body["message"] = message
        return SandboxError(status, body)

    def invalid(self, path: str, problem: str) -> SandboxError:
        """A Rest.li validation failure, worded as LinkedIn's (`ERROR :: /name :: field is required ...`)."""
        return self.error(400, f"ERROR :: {path} :: {problem}\n")

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """LinkedIn's per-member throttle: 429 with serviceErrorCode 101 and no Retry-After (none is documented)."""
        message = "Resource level throttle APPLICATION_AND_MEMBER MINUTE limit for calls to this resource is reached."
        return self.error(429, message, "TOO_MANY_REQUESTS", 101).response

    def server_error_response(self) -> SandboxResponse:
        """A transient LinkedIn failure."""
        return self.error(500, "Internal Server Error").response

    # -- test helpers (tokens: `oauth.expire()`, `oauth.revoke()`) -----------------------------------------
    def reset(self, ad_account_ids: Iterable[str] | None = None) -> None:
        """Forget segments, issued tokens, logged requests and faults; the configured token is live again."""
        with self.lock:
            super().reset()
            self._start(ad_account_ids)

    def _start(self, ad_account_ids: Iterable[str] | None) -> None:
        accounts = None if ad_account_ids is None else {a.removeprefix(ACCOUNT_URN_PREFIX) for a in ad_account_ids}
        self.ad_accounts = accounts
        self.oauth.accept(self.configured_token)

    # -- dispatch ------------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Check token and headers and route the Rest.li resource (the base serves the OAuth endpoint)."""
        if not request.path.startswith("/rest/"):
            raise self.error(404, f"No resource found at {request.path}")
        self._authenticate(request)
        self._check_headers(request)
        if request.path == "/rest/dmpSegments":
            if request.method == "GET":
                return self._finder(request)
            if request.method == "POST":
                return self._create(request)
        match = _SEGMENT_PATH.match(request.path)
        if match:
            segment_id, users = match.groups()
            segment = self._segment(segment_id)
            if users and request.method == "POST":
                return self._users(segment, request)
            if not users and request.method == "GET":
                return SandboxResponse(200, self._view(segment_id, segment))
            if not users and request.method == "DELETE":
                self.delete_audience(segment_id)
                return SandboxResponse(204, raw=b"")
        raise self.error(405, f"{request.method} is not supported on {request.path}")

    def _authenticate(self, request: SandboxRequest) -> None:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        if not scheme:
            raise self.error(401, "Empty oauth2_access_token", service_code=401)
        if scheme != "Bearer" or not token:
            raise self.error(401, "Unknown authentication scheme", service_code=401)
        problem = self.oauth.problem(token)
        if problem is not None:
            message, code, service_code = _TOKEN_PROBLEMS[problem]
            raise self.error(401, message, code, service_code)

    def _check_headers(self, request: SandboxRequest) -> None:
        version = request.header("linkedin-version")
        if not version:
            message = "A version must be present. Please specify a version by adding the LinkedIn-Version header."
            raise self.error(400, message, "VERSION_MISSING")
        if not VERSION_PATTERN.match(version):
            raise self.error(400, f"Invalid version format {version}; expected YYYYMM", "INVALID_VERSION")
        month = version[:6]
        if not self.active_versions[0] <= month <= self.active_versions[1]:
            raise self.error(426, f"Requested version {month}01 is not active", "NONEXISTENT_VERSION")
        if request.header("x-restli-protocol-version") != RESTLI_PROTOCOL_VERSION:
            raise self.error(400, f"This resource requires X-Restli-Protocol-Version: {RESTLI_PROTOCOL_VERSION}")

    def _account(self, urn: Any, path: str) -> str:
        match = _ACCOUNT_URN.match(urn) if isinstance(urn, str) else None
        if match is None:
            raise self.invalid(path, "must be a urn:li:sponsoredAccount URN")
        if self.ad_accounts is not None and match.group(1) not in self.ad_accounts:
            raise self.error(403, f"Not enough permissions to access: dmpSegments for {urn}", "ACCESS_DENIED", 100)
        return urn

    def _segment(self, segment_id: str) -> _Segment:
        segment = self.audiences.get(segment_id)
        if segment is None:
            raise self.error(404, f"DMP segment {segment_id} does not exist")
        return segment

    def _view(self, segment_id: str, s: _Segment) -> dict[str, Any]:
        view: dict[str, Any] = {"id": int(segment_id), "name": s.name, "account": s.account, "type": s.type,
                                "sourcePlatform": s.source_platform, "status": "READY", "created": s.created,
                                "destinations": [{"destination": "LINKEDIN", "status": "READY"}],
                                "inputCount": len(s.members)}
        if s.source_segment_id is not None:
            view["sourceSegmentId"] = s.source_segment_id
        return view

    # -- segments ------------------------------------------------------------------------------------------
    def _finder(self, request: SandboxRequest) -> SandboxResponse:
        if request.param("q") != "account":
            raise self.invalid("/q", "only the 'account' finder is supported")
        account = self._account(request.param("account"), "/account")
        source_id, platform = request.param("sourceSegmentId"), request.param("sourcePlatform")
        found = [
            self._view(segment_id, s)
            for segment_id, s in self.audiences.items()
            if s.account == account
            and source_id in (None, s.source_segment_id) and platform in (None, s.source_platform)
        ]
        start_text, count_text = request.param("start") or "0", request.param("count") or str(FINDER_DEFAULT_COUNT)
        if not (start_text.isdigit() and count_text.isdigit()):
            raise self.invalid("/start", "start and count must be non-negative integers")
        start, count = int(start_text), int(count_text)
        page = found[start : start + count]  # Rest.li paging: `count` defaults to 10, never "everything"
        paging = {"start": start, "count": count, "total": len(found), "links": []}
        return SandboxResponse(200, {"elements": page, "paging": paging})

    def _create(self, request: SandboxRequest) -> SandboxResponse:
        body = request.json()
        problem = create_problem(body)
        if problem is not None:
            raise self.error(400, problem)
        account = self._account(body["account"], "/account")
        platform, source_id = body["sourcePlatform"], body.get("sourceSegmentId")
        if self.source_platforms is not None and platform not in self.source_platforms:
            raise self.invalid("/sourcePlatform", f"{platform} is not a sourcePlatform assigned to this application")
        segment = _Segment(account, platform, source_id, body["type"], int(self.clock() * 1000), self.warmup_requests,
                           name=body["name"])
        segment_id = self.create_audience(segment)
        headers = {"x-restli-id": segment_id, "x-linkedin-id": segment_id, "Location": f"/dmpSegments/{segment_id}"}
        return SandboxResponse(201, headers=headers, raw=b"")

    # -- users -----------------------------------------------------------------------------------------------
    def _users(self, segment: _Segment, request: SandboxRequest) -> SandboxResponse:
        if segment.warmup_left > 0:  # LinkedIn answers 404 for a while after creating a segment
            segment.warmup_left -= 1
            raise self.error(404, "DMP segment is not available yet")
        if segment.type != "USER":
            raise self.error(400, "Users can only be added to a USER segment")
        body = request.json()
        if (request.header("x-restli-method") or "").upper() != "BATCH_CREATE":
            message, key = element_problem(body, "")  # a single CREATE of one element
            if message is not None:
                raise self.error(400, message)
            self._apply(segment, body["action"], key)
            return SandboxResponse(201, raw=b"")
        elements = body.get("elements") if isinstance(body, dict) else None
        if not isinstance(elements, list) or not elements:
            raise self.invalid("/elements", "field is required and must be a non-empty array")
        if len(elements) > MAX_ELEMENTS_PER_REQUEST:
            raise self.invalid("/elements", f"at most {MAX_ELEMENTS_PER_REQUEST} elements per request")
        reject = self.should_reject_partially()
        statuses: list[dict[str, Any]] = []
        for index, element in enumerate(elements):
            message, key = element_problem(element, f"/elements/{index}")
            if message is None and reject and element["action"] == "ADD" and _stable_bucket(key) == 0:
                message = "The member data could not be processed"
            if message is None:
                self._apply(segment, element["action"], key)
                statuses.append({"status": 201})
            else:
                statuses.append({"status": 400, "message": message})
        return SandboxResponse(200, {"elements": statuses})

    def _apply(self, segment: _Segment, action: str, key: Key) -> None:
        if action == "ADD":
            segment.add(key)
        else:
            segment.remove(key)  # removing a non-member is a 201 too: "by design"


def _stable_bucket(key: Key) -> int:
    """0..9 from an element's ids, so a retried batch refuses the same elements (about one in ten)."""
    return hashlib.sha256(repr(key).encode()).digest()[0] % 10


__all__ = ["ACTIVE_VERSIONS", "LinkedInSandbox"]
