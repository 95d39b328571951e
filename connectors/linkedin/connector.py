"""LinkedIn Matched Audiences: DMP segments of type USER, streamed to with batched add/remove elements.

Contract (see docs/platform-apis.md §2): every call goes to the versioned `/rest` API with
`LinkedIn-Version` and `X-Restli-Protocol-Version: 2.0.0`. A segment is created with `POST /rest/dmpSegments`
(201, id in `x-linkedin-id` / `x-restli-id`) and found again with the `q=account` finder filtered by
`sourceSegmentId` and `sourcePlatform`, which is what makes `ensure_audience` idempotent even without the
state database. Members are added and removed with `POST /rest/dmpSegments/{id}/users` and
`X-RestLi-Method: BATCH_CREATE`; LinkedIn answers 200 with one status per element, in request order, which
is the per-record rejection report. The shared `PlatformHttp` does the retrying; `classify_response` tells it
what LinkedIn's statuses mean.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import urlsplit

from crm_activation import (
    AccountConfig,
    Action,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Capability,
    ConfigError,
    Connector,
    FatalError,
    HttpResponse,
    IdentifierKind,
    IdentifierRule,
    Member,
    RecordRejection,
    RefreshTokenAuth,
    response_of,
)
from crm_activation import normalization as norm

from .api import error_summary, json_object
from .sandbox import LinkedInSandbox
from .settings import (
    FINDER_PAGE_SIZE,
    MAX_ELEMENTS_PER_REQUEST,
    RESTLI_PROTOCOL_VERSION,
    SEGMENT_URN_PREFIX,
    TOKEN_PATH,
    LinkedInAccount,
    LinkedInCredentials,
    name_in_clear,
)

_DOC = "LinkedIn DMP Segment Users (learn.microsoft.com/linkedin/marketing/matched-audiences); platform-apis.md §2"
#: Payload keys that become `userIds` entries; the others are element fields sent as they are.
_EMAIL_KEY, _MAID_KEY = "SHA256_EMAIL", "MAID"


class LinkedInConnector(Connector):
    """USER DMP segments in one sponsored ad account, fed by hashed e-mails and mobile advertising ids."""

    platform = "linkedin"
    display_name = "LinkedIn Matched Audiences (DMP segments)"
    account_model = LinkedInAccount
    credentials_model = LinkedInCredentials
    identifier_rules = (
        # LinkedIn: lowercase and no whitespace, then SHA-256 hex (RudderStack `linkedin_audience`; LinkedIn's page
        # only asks for 64 hex digits). The shared rule also trims, and refuses inner whitespace as bad data.
        IdentifierRule(
            IdentifierKind.EMAIL, _EMAIL_KEY, norm.email_trimmed_lower, hashed=True, source=_DOC + " (SHA256_EMAIL)"
        ),
        # Sent in clear as GOOGLE_AID or APPLE_IDFA per `LinkedInAccount.maid_id_type`, lowercased as partner
        # connectors send them (HCL Link: "only change all text to lowercase").
        IdentifierRule(
            IdentifierKind.MAID, _MAID_KEY, norm.maid_lower, hashed=False, source=_DOC + " (GOOGLE_AID/APPLE_IDFA)"
        ),
        IdentifierRule(
            IdentifierKind.FIRST_NAME, "firstName", name_in_clear, hashed=False, source=_DOC + " (firstName, clear)"
        ),
        IdentifierRule(
            IdentifierKind.LAST_NAME, "lastName", name_in_clear, hashed=False, source=_DOC + " (lastName, clear)"
        ),
        IdentifierRule(
            IdentifierKind.COUNTRY, "country", norm.country_upper, hashed=False, source=_DOC + " (ISO alpha-2)"
        ),
    )
    # Names and country only help LinkedIn match alongside an id; alone they are not a reliable match.
    match_keys = frozenset({IdentifierKind.EMAIL, IdentifierKind.MAID})
    max_batch_size = MAX_ELEMENTS_PER_REQUEST
    capabilities = frozenset({Capability.REMOVE})  # LinkedIn has no replace operation for DMP segments
    default_base_url = "https://api.linkedin.com"
    # LinkedIn allows 600 `/users` calls a minute per member (500 in older pages); 8/s stays under both.
    default_requests_per_second = 8.0
    sandbox = LinkedInSandbox

    #: Element fields sent in clear besides `userIds`, in a fixed order.
    element_fields: ClassVar[tuple[str, ...]] = ("firstName", "lastName", "country")

    account: LinkedInAccount
    credentials: LinkedInCredentials

    # -- HTTP hooks ---------------------------------------------------------------------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Read what LinkedIn's statuses mean where the shared table would be wrong.

        - 404 on `/users`: LinkedIn answers it for a minute or two after a segment is created (Segment's
          connector retries it; LinkedIn asks to wait 5 to 15 seconds), so it is retried.
        - 426: the `LinkedIn-Version` is sunset (`NONEXISTENT_VERSION`); only a new setting helps.
        - 400/401 from the OAuth endpoint: the refresh grant itself is bad; never refresh to fix a refresh.
        - 429 (no Retry-After: LinkedIn documents none), 401, 403 and 5xx follow the shared table.
        """
        if response.status < 400:
            return None
        path = urlsplit(response.url).path
        if path.endswith(TOKEN_PATH):
            return Action.CONFIG_ERROR if response.status in (400, 401) else None
        if response.status == 404 and path.endswith("/users"):
            return Action.RETRY
        if response.status == 426:
            return Action.CONFIG_ERROR
        return None

    def authenticator(self) -> RefreshTokenAuth:
        """The configured bearer token, refreshed through the account's token URL when a 401 says so.

        Without the refresh grant in the credentials a 401 is a configuration error: a person has to authorize
        the app again (the grant itself lasts a year, or until the member revokes the app).
        """
        return RefreshTokenAuth.for_credentials(
            self.http,
            self.account.token_url,
            self.credentials,
            platform=self.platform,
            hint="check that the refresh token was granted the rw_dmp_segments scope",
            token=self.credentials.access_token.get_secret_value(),
        )

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        """Point the API and the OAuth token endpoint at the sandbox, which serves both."""
        root = url.rstrip("/")
        return super().for_sandbox(account, root).model_copy(update={"token_url": root + TOKEN_PATH})

    # -- requests -----------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> HttpResponse:
        """A versioned Rest.li call: every one carries the version and protocol headers."""
        standard = {"LinkedIn-Version": self.account.api_version, "X-Restli-Protocol-Version": RESTLI_PROTOCOL_VERSION}
        return self.http.request(method, "/rest" + path, headers=standard | (headers or {}), **kw)

    def check(self) -> None:
        """List one DMP segment of the account: proves the token, the scope, the account role and the version."""
        try:
            self._request(
                "GET",
                "/dmpSegments",
                params={"q": "account", "account": self.account.account_urn, "start": 0, "count": 1},
                dry_run_result={"elements": [], "paging": {"start": 0, "count": 1, "links": []}},
            )
        except FatalError as error:
            raise ConfigError(
                f"linkedin: cannot list the DMP segments of ad account {self.account.ad_account_id} "
                f"({error_summary(response_of(error))})"
            ) from None

    # -- audiences ----------------------------------------------------------------------------------------
    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """The known segment while it still exists in this account; else the one marked for this campaign; else new.

        The campaign's marker (`AudienceSpec.marker`) is the segment's `sourceSegmentId`, so a lost state database
        finds its segments again, and a segment of the same name without it (another campaign's) is never used.
        A create whose answer was lost is not sent again before the finder says LinkedIn does not have it
        (`create_audience_once`); should twins exist anyway, every lookup takes the oldest.
        """
        if known is not None and self._still_ours(known.remote_id):
            return AudienceRef(key=spec.key, remote_id=known.remote_id)

        def find() -> AudienceRef | None:
            found = self._find(spec.marker)
            return AudienceRef(key=spec.key, remote_id=found) if found is not None else None

        def create() -> AudienceRef:
            created = self._create(spec)
            return AudienceRef(key=spec.key, remote_id=self._find(spec.marker) or created)

        return find() or self.create_audience_once(create, find)

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What a dry run pretends `POST /rest/dmpSegments` returned (LinkedIn puts the id in a header)."""
        return {"id": f"dry-run-{spec.key}"}

    def _still_ours(self, segment_id: str) -> bool:
        try:
            response = self._request(
                "GET",
                f"/dmpSegments/{segment_id}",
                dry_run_result={"id": segment_id, "account": self.account.account_urn},
            )
        except FatalError as error:
            if response_of(error).status == 404:  # deleted in Campaign Manager
                return False
            raise
        return json_object(response).get("account") == self.account.account_urn

    def _find(self, marker: str) -> str | None:
        """The oldest USER segment of this account carrying `marker` as its sourceSegmentId, if any.

        The finder pages with `start` and `count` (Rest.li); pages are read until one comes back short.
        """
        params: dict[str, Any] = {
            "q": "account",
            "account": self.account.account_urn,
            "sourceSegmentId": marker,
            "sourcePlatform": self.account.source_platform,
            "start": 0,
            "count": FINDER_PAGE_SIZE,
        }
        elements: list[Any] = []
        while True:
            response = self._request("GET", "/dmpSegments", params=params, dry_run_result={"elements": []})
            page = json_object(response).get("elements") or []
            elements += page
            if len(page) < FINDER_PAGE_SIZE:
                break
            params = {**params, "start": params["start"] + len(page)}
        matching = [
            e
            for e in elements
            if isinstance(e, dict) and e.get("type") == "USER" and e.get("sourceSegmentId") == marker and "id" in e
        ]
        if not matching:
            return None
        oldest = min(matching, key=lambda e: (_number(e.get("created")), _number(e["id"])))
        return _segment_id(oldest["id"])

    def _create(self, spec: AudienceSpec) -> str:
        body: dict[str, Any] = {
            "name": spec.name,
            "account": self.account.account_urn,
            "sourcePlatform": self.account.source_platform,
            "sourceSegmentId": spec.marker,
            "type": "USER",
            "destinations": [{"destination": "LINKEDIN"}],
        }
        if spec.description:
            body["description"] = spec.description
        response = self._request(
            "POST", "/dmpSegments", json_body=body, dry_run_result=self.dry_run_audience(spec), idempotent=False
        )
        headers = {name.lower(): value for name, value in response.headers.items()}
        raw = headers.get("x-linkedin-id") or headers.get("x-restli-id") or json_object(response).get("id")
        if not raw:
            raise FatalError("linkedin: POST /rest/dmpSegments answered without the new segment's id")
        return _segment_id(raw)

    # -- members ------------------------------------------------------------------------------------------
    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One BATCH_CREATE of ADD elements; LinkedIn answers 201 for members already in the segment."""
        return self._send("ADD", audience, members)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One BATCH_CREATE of REMOVE elements with the ids the members were added with."""
        return self._send("REMOVE", audience, members)

    def element(self, action: str, member: Member) -> dict[str, Any]:
        """One users element: `userIds` from the hashed e-mail and the typed MAID, then the clear fields."""
        user_ids = []
        if member.fields.get(_EMAIL_KEY):
            user_ids.append({"idType": _EMAIL_KEY, "idValue": member.fields[_EMAIL_KEY]})
        if member.fields.get(_MAID_KEY):
            user_ids.append({"idType": str(self.account.maid_id_type), "idValue": member.fields[_MAID_KEY]})
        element: dict[str, Any] = {"action": action, "userIds": user_ids}
        element.update({key: member.fields[key] for key in self.element_fields if member.fields.get(key)})
        return element

    def _send(self, action: str, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if not members:
            return BatchResult(received=0)
        if len(members) > self.max_batch_size:
            raise ValueError(f"linkedin: batch of {len(members)} exceeds the {self.max_batch_size}-element limit")
        elements = [self.element(action, member) for member in members]
        response = self._request(
            "POST",
            f"/dmpSegments/{audience.remote_id}/users",
            headers={"X-RestLi-Method": "BATCH_CREATE"},
            json_body={"elements": elements},
            dry_run_result={"elements": [{"status": 201}] * len(elements)},
        )
        return _batch_result(json_object(response), members, elements)


def _batch_result(body: dict[str, Any], members: Sequence[Member], elements: list[dict[str, Any]]) -> BatchResult:
    """Per-element statuses, index-aligned with the request, as rejections naming each refused contact.

    LinkedIn's message is kept (it names the field and rule) but any value of the element is masked in it,
    because reasons land in the rejects file and logs.
    """
    statuses = body.get("elements")
    if not isinstance(statuses, list) or len(statuses) != len(members):
        count = len(statuses) if isinstance(statuses, list) else 0
        raise FatalError(f"linkedin: answered {count} element statuses for {len(members)} elements")
    rejections = []
    for member, element, result in zip(members, elements, statuses, strict=True):
        status = _number(result.get("status")) if isinstance(result, dict) else 0
        if 200 <= status < 300:
            continue
        rejections.append(RecordRejection(contact_id=member.contact_id, reason=_reason(result, status, element)))
    return BatchResult(received=len(members), invalid=len(rejections), rejections=tuple(rejections))


def _reason(result: Any, status: int, element: dict[str, Any]) -> str:
    detail: dict[str, Any] = result if isinstance(result, dict) else {}
    nested = detail.get("error")
    nested_message = nested.get("message") if isinstance(nested, dict) else None  # Rest.li's nested error form
    message = str(detail.get("message") or nested_message or "refused")
    values = [i.get("idValue") for i in element.get("userIds", [])]
    values += [element.get(k) for k in ("firstName", "lastName")]
    for value in values:
        if isinstance(value, str) and value:
            message = message.replace(value, "***")
    return f"HTTP {status}: {message}"


def _segment_id(raw: Any) -> str:
    """A segment id as a plain string; LinkedIn may hand it back as a number or a `urn:li:dmpSegment:` URN."""
    return str(raw).removeprefix(SEGMENT_URN_PREFIX)


def _number(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
