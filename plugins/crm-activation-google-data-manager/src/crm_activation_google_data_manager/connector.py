"""Customer Match audiences through Google's Data Manager API, where Google now steers new uploads.

Contract (developers.google.com/data-manager/api): members go in with `POST /v1/audienceMembers:ingest` and out
with `POST /v1/audienceMembers:remove`, each carrying `destinations` (operating account, optional login account,
`productDestinationId` = the user list id), up to 10,000 `audienceMembers` of hashed `userData`, and
`encoding: HEX`; ingests also state the Customer Match terms and each member's consent. Lists are managed with
`accountTypes/{type}/accounts/{id}/userLists` (UserListService, Data Manager v1.5, February 2026).
Authentication is an OAuth 2.0 bearer token from a refresh token with the `datamanager` scope.

Audiences: a funnel stage either names an existing list (`settings: {user_list_id: "..."}`, checked to exist
and take contact data), or the connector finds the list it created for this campaign, by the recorded id or by
the campaign's marker in the list's `integrationCode` (`AudienceSpec.marker`), and creates it when there is
none. Never by display name: two campaigns may name their audiences alike, and a list of that name may be a
person's. The marker makes `ensure_audience` idempotent even when the state database lost the id, or a create
timed out after Google applied it. Google requires display names unique per account, so when another list holds
the name, this campaign's list is created as "<name> (<campaign>)" (then "<name> (<marker>)").

Google accepts or refuses a request as a whole; per-record outcomes are counts in the asynchronous diagnostics
(`requestStatus:retrieve`), never per contact. So what can be refused per record is refused here, before
sending: a member whose consent is denied, and one whose values lack the shape Google requires. The request
id is returned as the batch's `job_id`, and `request_status` reads its diagnostics on demand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

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

from .api import classify_google, google_error
from .formatting import SOURCE
from .sandbox import GoogleDataManagerSandbox
from .settings import (
    ADDRESS_FIELDS,
    DEFAULT_BASE_URL,
    EMAIL,
    ENCODING,
    FAMILY_NAME,
    FIRST_PARTY,
    GIVEN_NAME,
    HASHED_FIELDS,
    INGEST_PATH,
    MAX_LIST_PAGE_SIZE,
    MAX_MEMBERS_PER_REQUEST,
    MEMBERSHIP_OPEN,
    PHONE,
    POSTAL_CODE,
    REGION_CODE,
    REGION_SHAPE,
    REMOVE_PATH,
    REQUEST_STATUS_PATH,
    REQUESTS_PER_SECOND,
    SANDBOX_TOKEN_PATH,
    SCOPE,
    SHA256_HEX,
    TERMS_ACCEPTED,
    UPLOAD_KEY_CONTACT_ID,
    ConsentStatus,
    GoogleDataManagerAccount,
    GoogleDataManagerCredentials,
    membership_duration,
)

_CLEAR = SOURCE + " (sent unhashed)"
#: The engine's consent keys on `Member.consent` and the `Consent` fields they become.
_CONSENT_FIELDS = (("ad_user_data", "adUserData"), ("ad_personalization", "adPersonalization"))


class GoogleDataManagerConnector(Connector):
    """Customer Match user lists (contact information, first party) of one Google Ads or DV360 account."""

    platform = "google_data_manager"
    display_name = "Google Data Manager API (Customer Match)"
    account_model = GoogleDataManagerAccount
    credentials_model = GoogleDataManagerCredentials
    identifier_rules = (
        IdentifierRule(IdentifierKind.EMAIL, EMAIL, norm.email_google, hashed=True, source=SOURCE),
        IdentifierRule(IdentifierKind.PHONE, PHONE, norm.phone_e164, hashed=True, source=SOURCE),
        IdentifierRule(IdentifierKind.FIRST_NAME, GIVEN_NAME, norm.name_trimmed_lower, hashed=True, source=SOURCE),
        IdentifierRule(IdentifierKind.LAST_NAME, FAMILY_NAME, norm.name_trimmed_lower, hashed=True, source=SOURCE),
        IdentifierRule(IdentifierKind.ZIP, POSTAL_CODE, norm.zip_clear, hashed=False, source=_CLEAR),
        IdentifierRule(IdentifierKind.COUNTRY, REGION_CODE, norm.country_upper, hashed=False, source=_CLEAR),
    )
    # An address identifies someone only with all four parts, which a set of single kinds cannot say, so
    # address-only contacts are ineligible (as for DV360); the address is sent alongside e-mail and phone.
    match_keys = frozenset({IdentifierKind.EMAIL, IdentifierKind.PHONE})
    max_batch_size = MAX_MEMBERS_PER_REQUEST
    capabilities = frozenset({Capability.REMOVE})  # no replace operation: a full sync sends the diff
    default_base_url = DEFAULT_BASE_URL
    default_requests_per_second = REQUESTS_PER_SECOND
    sandbox = GoogleDataManagerSandbox

    account: GoogleDataManagerAccount
    credentials: GoogleDataManagerCredentials

    # -- HTTP hooks ------------------------------------------------------------------------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Google's error status names decide (RESOURCE_EXHAUSTED, UNAUTHENTICATED, ...); see `classify_google`."""
        return classify_google(response)

    def authenticator(self) -> RefreshTokenAuth:
        """Bearer tokens from the refresh token, fetched through this connector's own HTTP client."""
        return RefreshTokenAuth.for_credentials(
            self.http,
            self.account.token_url,
            self.credentials,
            platform=self.platform,
            hint=f"check that the refresh token was granted the {SCOPE} scope",
        )

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        """Point the API and the OAuth token endpoint at the sandbox, which serves both."""
        token_url = url.rstrip("/") + SANDBOX_TOKEN_PATH
        return super().for_sandbox(account, url).model_copy(update={"token_url": token_url})

    # -- operations ------------------------------------------------------------------------------------------
    def check(self) -> None:
        """Get a token and list one user list of the operating account; a refusal names the account."""
        try:
            self.http.request(
                "GET", f"/v1/{self.account.parent}/userLists", params={"pageSize": 1}, headers=self._login_header(),
                dry_run_result={"userLists": []},
            )
        except FatalError as error:
            status = google_error(response_of(error)).get("status", "refused")
            raise ConfigError(f"{self.platform}: account {self.account.parent} could not be read ({status})") from None

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """The stage's pinned list, else the known list while it exists, else this campaign's marked list, else new.

        Looked up by marker before every create; a create refused because the display name is taken either
        timed out after Google applied it (the marked list is then found) or collides with a list that is not
        this campaign's, which is left alone while the next display name is tried.
        """
        pinned = spec.settings.get("user_list_id")
        if pinned is not None:
            found = self._get(str(pinned).strip())
            if found is None:
                raise ConfigError(f"{self.platform}: audience {spec.name!r}: user list {pinned} does not exist in "
                                  f"{self.account.parent}")
            return self._usable(spec, found)
        if known is not None:
            found = self._get(known.remote_id)
            if found is not None:
                return self._usable(spec, found)
        found = self._find(spec.marker)
        if found is not None:
            return self._usable(spec, found)
        for display_name in display_names(spec):
            try:
                created = self.http.request(
                    "POST", f"/v1/{self.account.parent}/userLists", json_body=self._new_list(spec, display_name),
                    headers=self._login_header(), dry_run_result=self.dry_run_audience(spec),
                ).json()
                return self._usable(spec, created)
            except FatalError as error:
                if google_error(response_of(error)).get("status") != "ALREADY_EXISTS":
                    raise
            # Refused as a duplicate name: a create that timed out after Google applied it was retried (the list
            # carries the marker), or the name is another list's (never adopted): then try the next name.
            found = self._find(spec.marker)
            if found is not None:
                return self._usable(spec, found)
        raise ConfigError(f"{self.platform}: audience {spec.name!r}: every display name tried is taken by a user "
                          f"list that is not this campaign's in {self.account.parent}; rename the audience")

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What the create call answers in a dry run: an id no user list can have (ids are numeric)."""
        return {"id": "dry-run-" + re.sub(r"[^A-Za-z0-9_-]", "-", spec.key), "displayName": spec.name,
                "ingestedUserListInfo": {"uploadKeyTypes": [UPLOAD_KEY_CONTACT_ID]}}

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One ingest request; each member carries its own consent; denied or malformed members are refused."""
        rejections: list[RecordRejection] = []
        sendable = []
        for member, body in self._audience_members(members, rejections):
            consent, problem = member_consent(member.consent)
            if problem:
                rejections.append(RecordRejection(contact_id=member.contact_id, reason=problem))
            else:
                sendable.append({**body, "consent": consent})
        request_id = None
        if sendable:
            request_id = self._send(INGEST_PATH, audience, sendable, {
                "termsOfService": {"customerMatchTermsOfServiceStatus": TERMS_ACCEPTED}})
        return BatchResult(received=len(sendable), rejections=tuple(rejections), job_id=request_id)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One remove request with the identifiers the members were added with (removals state no consent)."""
        rejections: list[RecordRejection] = []
        sendable = [body for _, body in self._audience_members(members, rejections)]
        request_id = self._send(REMOVE_PATH, audience, sendable, {}) if sendable else None
        return BatchResult(received=len(sendable), rejections=tuple(rejections), job_id=request_id)

    def request_status(self, request_id: str) -> list[dict[str, Any]]:
        """Google's diagnostics for an ingest or remove request: one status per destination (may be PROCESSING).

        Not called during a sync: statuses arrive asynchronously, report counts per reason rather than contacts,
        and polling every batch would double the requests against the 300-a-minute project quota.
        """
        response = self.http.request("GET", REQUEST_STATUS_PATH, params={"requestId": request_id},
                                     dry_run_result={"requestStatusPerDestination": []})
        return list(response.json().get("requestStatusPerDestination") or [])

    # -- payloads --------------------------------------------------------------------------------------------
    def destination(self, audience: AudienceRef) -> dict[str, Any]:
        """The `Destination` of an audience: operating account, login account when set, the user list id."""
        account = self.account
        destination: dict[str, Any] = {
            "operatingAccount": {"accountType": account.account_type.value, "accountId": account.account_id},
            "productDestinationId": audience.remote_id,
        }
        if account.login_account_type is not None:
            destination["loginAccount"] = {"accountType": account.login_account_type.value,
                                           "accountId": account.login_account_id}
        return destination

    def audience_member(self, member: Member) -> dict[str, Any]:
        """The member's `AudienceMember` without consent: e-mail, phone, and the address only when complete."""
        fields = member.fields
        identifiers: list[dict[str, Any]] = [{key: fields[key]} for key in (EMAIL, PHONE) if fields.get(key)]
        if all(fields.get(key) for key in ADDRESS_FIELDS):
            identifiers.append({"address": {key: fields[key] for key in ADDRESS_FIELDS}})
        return {"userData": {"userIdentifiers": identifiers}}

    def _audience_members(
        self, members: Sequence[Member], rejections: list[RecordRejection]
    ) -> list[tuple[Member, dict[str, Any]]]:
        """Each sendable member with its AudienceMember; the others go to `rejections` with the reason."""
        if len(members) > self.max_batch_size:
            raise ValueError(f"{self.platform}: batch of {len(members)} exceeds {self.max_batch_size} members")
        sendable = []
        for member in members:
            body = self.audience_member(member)
            problem = identifiers_problem(body["userData"]["userIdentifiers"])
            if problem:
                rejections.append(RecordRejection(contact_id=member.contact_id, reason=problem))
            else:
                sendable.append((member, body))
        return sendable

    def _send(self, path: str, audience: AudienceRef, members: list[dict[str, Any]], extra: dict[str, Any]) -> str:
        body = {"destinations": [self.destination(audience)], "audienceMembers": members, "encoding": ENCODING}
        response = self.http.request("POST", path, json_body={**body, **extra},
                                     dry_run_result={"requestId": "dry-run-request"})
        return str(response.json().get("requestId") or "")

    # -- user lists ------------------------------------------------------------------------------------------
    def _login_header(self) -> dict[str, str]:
        """UserListService's `login-account` header, when the OAuth user signs in through another account."""
        account = self.account
        if account.login_account_type is None:
            return {}
        return {"login-account": f"accountTypes/{account.login_account_type.value}/accounts/{account.login_account_id}"}

    def _get(self, list_id: str) -> dict[str, Any] | None:
        """The user list, or None when Google answers NOT_FOUND."""
        try:
            return self.http.request(
                "GET", f"/v1/{self.account.parent}/userLists/{list_id}", headers=self._login_header(),
                dry_run_result={"id": list_id, "ingestedUserListInfo": {"uploadKeyTypes": [UPLOAD_KEY_CONTACT_ID]}},
            ).json()
        except FatalError as error:
            if google_error(response_of(error)).get("status") == "NOT_FOUND":
                return None
            raise

    def _find(self, marker: str) -> dict[str, Any] | None:
        """The account's user list whose `integrationCode` is `marker` (the lowest id if twins exist), or None.

        Filtered by Google (`integration_code = "..."`); every page is read all the same.
        """
        quoted = marker.replace("\\", "\\\\").replace('"', '\\"')
        params: dict[str, Any] = {"filter": f'integration_code = "{quoted}"', "pageSize": MAX_LIST_PAGE_SIZE}
        lists: list[dict[str, Any]] = []
        while True:
            body = self.http.request(
                "GET", f"/v1/{self.account.parent}/userLists", params=params, headers=self._login_header(),
                dry_run_result={"userLists": []},
            ).json()
            lists += [item for item in body.get("userLists") or ()
                      if isinstance(item, dict) and item.get("integrationCode") == marker and item.get("id")]
            if not body.get("nextPageToken"):
                break
            params = {**params, "pageToken": body["nextPageToken"]}
        return min(lists, key=lambda item: (len(str(item["id"])), str(item["id"]))) if lists else None

    def _new_list(self, spec: AudienceSpec, display_name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "displayName": display_name,
            "description": spec.description,
            "integrationCode": spec.marker,
            "membershipStatus": MEMBERSHIP_OPEN,
            "ingestedUserListInfo": {
                "uploadKeyTypes": [UPLOAD_KEY_CONTACT_ID],
                "contactIdInfo": {"dataSourceType": FIRST_PARTY},
            },
        }
        days = spec.settings.get("membership_duration_days", self.account.membership_duration_days)
        if days is not None:
            try:
                body["membershipDuration"] = membership_duration(int(days))
            except ValueError as error:
                raise ConfigError(f"{self.platform}: audience {spec.name!r} settings: {error}") from None
        return body

    def _usable(self, spec: AudienceSpec, user_list: Mapping[str, Any]) -> AudienceRef:
        """The list as an AudienceRef, or a ConfigError when members cannot be uploaded to it."""
        info = user_list.get("ingestedUserListInfo") or {}
        name = f"{self.platform}: audience {spec.name!r}: user list {user_list.get('id')}"
        if UPLOAD_KEY_CONTACT_ID not in (info.get("uploadKeyTypes") or ()):
            raise ConfigError(f"{name} does not take contact information (upload key type {UPLOAD_KEY_CONTACT_ID})")
        if user_list.get("readOnly"):
            raise ConfigError(f"{name} is read-only for this account")
        if user_list.get("membershipStatus", MEMBERSHIP_OPEN) != MEMBERSHIP_OPEN:
            raise ConfigError(f"{name} is {user_list.get('membershipStatus')}: reopen it or pin another list")
        return AudienceRef(key=spec.key, remote_id=str(user_list["id"]))


def display_names(spec: AudienceSpec) -> list[str]:
    """The display names to create a campaign's list under, in order: Google wants them unique per account.

    The audience's own name first; when a list that is not this campaign's holds it, the name qualified by the
    campaign, then by the marker, which no other list can hold.
    """
    names = [spec.name]
    if spec.campaign:
        names.append(f"{spec.name} ({spec.campaign})")
    names.append(f"{spec.name} ({spec.marker})")
    return names


def member_consent(consent: Mapping[str, bool | None]) -> tuple[dict[str, str], str | None]:
    """The member's `Consent`, or a refusal reason when either consent is denied.

    True is GRANTED, unrecorded is UNSPECIFIED. False never becomes DENIED: Google would drop the record
    (PROCESSING_ERROR_REASON_DENIED_CONSENT) and report only a count, and the engine keeps such contacts off ad
    platforms already, so one arriving anyway is refused here, by contact.
    """
    body = {}
    for key, name in _CONSENT_FIELDS:
        value = consent.get(key)
        if value is False:
            return {}, f"consent: {name} is denied; Customer Match takes no users without consent"
        body[name] = (ConsentStatus.GRANTED if value is True else ConsentStatus.UNSPECIFIED).value
    return body, None


def identifiers_problem(identifiers: Sequence[Mapping[str, Any]]) -> str | None:
    """Why Google would refuse the whole request over these identifiers, or None. Never repeats a value."""
    if not identifiers:
        return "no e-mail, phone or complete address (first name, last name, zip and country) to match on"
    for identifier in identifiers:
        for name, value in {**identifier, **(identifier.get("address") or {})}.items():
            if name in HASHED_FIELDS and not SHA256_HEX.match(value):
                return f"{name}: not a SHA-256 hash (64 lowercase hex digits)"
            if name == POSTAL_CODE and SHA256_HEX.match(value.lower()):
                return f"{name}: postal codes are sent in clear, this one looks hashed"
            if name == REGION_CODE and not REGION_SHAPE.match(value):
                return f"{name}: not an ISO 3166-1 alpha-2 code in upper case"
    return None
