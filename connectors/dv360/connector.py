"""Google Display & Video 360 Customer Match audiences through the DV360 API v4.

Contract (see docs/platform-apis.md section 3): create with `POST /v4/firstPartyAndPartnerAudiences
?advertiserId=` (the campaign's audience marker in `description`), find it again by that marker in the pages of
`GET /v4/firstPartyAndPartnerAudiences?advertiserId=`, check a known one with `GET
/v4/firstPartyAndPartnerAudiences/{id}?advertiserId=`, add and remove with `POST
/v4/firstPartyAndPartnerAudiences/{id}:editCustomerMatchMembers` carrying an `addedContactInfoList` or a
`removedContactInfoList`. Authentication is an OAuth 2.0 bearer token obtained from
a refresh token (core's `RefreshTokenAuth`).

Google accepts or refuses a request as a whole and reports nothing per member, so what can be refused per
record is refused here, before sending: a contact whose consent is denied (a DENIED consent fails the whole
request) and a contact whose values do not have the shape Google requires. Consent applies to every contact in
a request, so an add batch goes out as one request per consent combination.

Google now steers new Customer Match integrations to its Data Manager API; the normalization rules used here
are the shared Google ones in `crm_activation.normalization`, so a Data Manager connector can reuse them.
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
from .sandbox import Dv360Sandbox
from .settings import (
    ADDRESS_FIELDS,
    API_VERSION,
    AUDIENCE_TYPE,
    AUDIENCES,
    COUNTRY_CODE,
    COUNTRY_CODE_SHAPE,
    EDIT_MEMBERS,
    FIRST_PARTY,
    HASHED_EMAILS,
    HASHED_FIELDS,
    HASHED_FIRST_NAME,
    HASHED_LAST_NAME,
    HASHED_PHONES,
    LIST_FIELDS,
    MAX_CONTACTS_PER_REQUEST,
    MAX_LIST_PAGE_SIZE,
    SANDBOX_TOKEN_PATH,
    SCOPE,
    SHA256_HEX,
    ZIP_CODES,
    ConsentStatus,
    Dv360Account,
    Dv360Credentials,
    membership_duration,
)

_HASHING_DOC = "DV360 API ContactInfo; display-video upload-customer-match-audience/prepare-data; platform-apis.md §3"
#: The engine's consent keys on `Member.consent` and the `Consent` fields they become.
_CONSENT_FIELDS = (("ad_user_data", "adUserData"), ("ad_personalization", "adPersonalization"))
Consent = tuple[ConsentStatus, ConsentStatus]
#: Removals state no consent: they use nobody's data, and a consent withdrawn since the add must never be
#: the reason a person stays in an audience.
_REMOVAL_CONSENT: Consent = (ConsentStatus.UNSPECIFIED, ConsentStatus.UNSPECIFIED)


class Dv360Connector(Connector):
    """Customer Match audiences (CUSTOMER_MATCH_CONTACT_INFO, first party) owned by one DV360 advertiser."""

    platform = "dv360"
    display_name = "Google Display & Video 360 Customer Match"
    account_model = Dv360Account
    credentials_model = Dv360Credentials
    identifier_rules = (
        IdentifierRule(
            IdentifierKind.EMAIL, HASHED_EMAILS, norm.email_google,
            hashed=True, source=_HASHING_DOC + "; Gmail rule: data-manager/api/devguides/concepts/formatting",
        ),
        IdentifierRule(IdentifierKind.PHONE, HASHED_PHONES, norm.phone_e164, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.FIRST_NAME, HASHED_FIRST_NAME, norm.name_trimmed_lower, hashed=True, source=_HASHING_DOC
        ),
        IdentifierRule(
            IdentifierKind.LAST_NAME, HASHED_LAST_NAME, norm.name_trimmed_lower, hashed=True, source=_HASHING_DOC
        ),
        IdentifierRule(
            IdentifierKind.ZIP, ZIP_CODES, norm.zip_clear, hashed=False, source=_HASHING_DOC + " (zip in clear)"
        ),
        IdentifierRule(
            IdentifierKind.COUNTRY, COUNTRY_CODE, norm.country_upper,
            hashed=False, source=_HASHING_DOC + " (country in clear)"
        ),
    )
    # An address identifies someone only with first name, last name, zip and country together, which a set of
    # single kinds cannot say; address-only contacts are therefore not matched (see the report on match sets).
    match_keys = frozenset({IdentifierKind.EMAIL, IdentifierKind.PHONE})
    max_batch_size = MAX_CONTACTS_PER_REQUEST
    capabilities = frozenset({Capability.REMOVE})  # DV360 has no replace: a full sync sends the diff
    default_base_url = "https://displayvideo.googleapis.com"
    # Google allows 150 write requests a minute per advertiser and project (300 in all); 2 a second of every
    # kind stays below both, and failed requests count against the quota too.
    default_requests_per_second = 2.0
    sandbox = Dv360Sandbox

    account: Dv360Account
    credentials: Dv360Credentials

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
        return super().for_sandbox(account, url).model_copy(update={"token_url": url.rstrip("/") + SANDBOX_TOKEN_PATH})

    # -- operations ------------------------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join(("", API_VERSION, *parts))

    def check(self) -> None:
        """Get a token and read the advertiser; either failing is a configuration error naming the cause."""
        advertiser = self.account.advertiser_id
        try:
            self.http.request(
                "GET",
                self._path("advertisers", advertiser),
                dry_run_result={"advertiserId": advertiser, "displayName": "dry run"},
            )
        except FatalError as error:
            status = google_error(response_of(error)).get("status", "refused")
            raise ConfigError(f"dv360: advertiser {advertiser} could not be read ({status})") from None
        except ConfigError as error:
            if google_error(response_of(error)).get("status") != "PERMISSION_DENIED":
                raise
            raise ConfigError(
                f"dv360: advertiser {advertiser} is not accessible to this OAuth user (PERMISSION_DENIED); it needs "
                "the Admin or Standard role on the advertiser"
            ) from None

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """The known audience while DV360 still has it (not 404); else the one marked for this campaign; else new.

        The campaign's marker (`AudienceSpec.marker`) is written into the audience's `description` at creation and
        looked up before every create, so a lost state database, or a create whose answer timed out, finds its own
        audience. An audience with the same display name but not the marker is never used.
        """
        days = self._duration(spec)
        params = {"advertiserId": self.account.advertiser_id}
        if known is not None:
            try:
                response = self.http.request(
                    "GET",
                    self._path(f"{AUDIENCES}/{known.remote_id}"),
                    params=params,
                    dry_run_result={"firstPartyAndPartnerAudienceId": known.remote_id},
                )
                remote_id = response.json().get("firstPartyAndPartnerAudienceId", known.remote_id)
                return AudienceRef(key=spec.key, remote_id=str(remote_id))
            except FatalError as error:
                if google_error(response_of(error)).get("status") != "NOT_FOUND":
                    raise
        found = self._find_ref(spec)
        return found or self.create_audience_once(lambda: self._create(spec, days), lambda: self._find_ref(spec))

    def _find_ref(self, spec: AudienceSpec) -> AudienceRef | None:
        found = self._find(spec)
        return AudienceRef(key=spec.key, remote_id=found) if found is not None else None

    def _create(self, spec: AudienceSpec, days: int) -> AudienceRef:
        response = self.http.request(
            "POST",
            self._path(AUDIENCES),
            params={"advertiserId": self.account.advertiser_id},
            json_body={
                "displayName": spec.name,
                "description": spec.described_with_marker(),
                "audienceType": AUDIENCE_TYPE,
                # Output-only in the v4 reference (Google ignores it on input); sent because the guide says the
                # audience "must be declared a first-party audience" and the sandbox checks it when present.
                "firstPartyAndPartnerAudienceType": FIRST_PARTY,
                "membershipDurationDays": str(days),
                # Members are optional at creation ("the initial audience members"); sending the empty list
                # with its consent keeps creation separate from uploads, where batching and consent are handled.
                "contactInfoList": {"contactInfos": [], "consent": _consent_body(_REMOVAL_CONSENT)},
            },
            dry_run_result=self.dry_run_audience(spec),
            idempotent=False,
        )
        return AudienceRef(key=spec.key, remote_id=str(response.json()["firstPartyAndPartnerAudienceId"]))

    def _find(self, spec: AudienceSpec) -> str | None:
        """The advertiser's oldest Customer Match audience whose description carries the spec's marker, if any.

        The list can be filtered on `displayName` only, so every page is read (5,000 audiences a page). Should a
        retried create have left twins, every lookup takes the same one: the lowest id, the first created.
        """
        params: dict[str, Any] = {"advertiserId": self.account.advertiser_id, "pageSize": MAX_LIST_PAGE_SIZE}
        mine: list[str] = []
        while True:
            body = self.http.request("GET", self._path(AUDIENCES), params=params, dry_run_result={}).json()
            mine += [
                str(item["firstPartyAndPartnerAudienceId"])
                for item in body.get(AUDIENCES) or ()
                if isinstance(item, dict) and item.get("firstPartyAndPartnerAudienceId")
                and item.get("audienceType") == AUDIENCE_TYPE and spec.is_marked(item.get("description"))
            ]
            token = body.get("nextPageToken")
            if not token:
                break
            params = {**params, "pageToken": token}
        return min(mine, key=lambda i: (int(i), i) if i.isdigit() else (2**63, i)) if mine else None

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What the create call answers in a dry run: an id no DV360 audience can have (ids are numeric)."""
        return {"firstPartyAndPartnerAudienceId": "dry-run-" + re.sub(r"[^A-Za-z0-9_-]", "-", spec.key)}

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One `addedContactInfoList` request per consent combination; denied or malformed contacts are refused."""
        groups: dict[Consent, list[dict[str, Any]]] = {}
        rejections: list[RecordRejection] = []
        for member, info in self._contact_infos(members, rejections):
            consent, problem = member_consent(member.consent)
            if problem:
                rejections.append(RecordRejection(contact_id=member.contact_id, reason=problem))
            else:
                groups.setdefault(consent, []).append(info)
        for consent, infos in groups.items():
            self._edit(audience, "addedContactInfoList", infos, consent)
        return BatchResult(received=sum(len(infos) for infos in groups.values()), rejections=tuple(rejections))

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """One `removedContactInfoList` request with the contact infos the members were added with."""
        rejections: list[RecordRejection] = []
        infos = [info for _, info in self._contact_infos(members, rejections)]
        if infos:
            self._edit(audience, "removedContactInfoList", infos, _REMOVAL_CONSENT)
        return BatchResult(received=len(infos), rejections=tuple(rejections))

    # -- payloads --------------------------------------------------------------------------------------------
    def contact_info(self, member: Member) -> dict[str, Any]:
        """The member's `ContactInfo`: e-mail and phone when present, the address only when all four parts are."""
        fields = member.fields
        info: dict[str, Any] = {}
        for name in (HASHED_EMAILS, HASHED_PHONES):
            if fields.get(name):
                info[name] = [fields[name]]
        if all(fields.get(name) for name in ADDRESS_FIELDS):
            for name in ADDRESS_FIELDS:
                info[name] = [fields[name]] if name in LIST_FIELDS else fields[name]
        return info

    def _contact_infos(
        self, members: Sequence[Member], rejections: list[RecordRejection]
    ) -> list[tuple[Member, dict[str, Any]]]:
        """Each sendable member with its ContactInfo; the others go to `rejections` with the reason."""
        if len(members) > self.max_batch_size:
            raise ValueError(f"dv360: batch of {len(members)} exceeds the {self.max_batch_size}-contact request size")
        sendable = []
        for member in members:
            info = self.contact_info(member)
            problem = contact_info_problem(info)
            if problem:
                rejections.append(RecordRejection(contact_id=member.contact_id, reason=problem))
            else:
                sendable.append((member, info))
        return sendable

    def _edit(self, audience: AudienceRef, list_name: str, infos: list[dict[str, Any]], consent: Consent) -> None:
        """One `editCustomerMatchMembers` call; Google answers only with the audience id."""
        self.http.request(
            "POST",
            self._path(f"{AUDIENCES}/{audience.remote_id}:{EDIT_MEMBERS}"),
            json_body={
                "advertiserId": self.account.advertiser_id,
                list_name: {"contactInfos": infos, "consent": _consent_body(consent)},
            },
            dry_run_result={"firstPartyAndPartnerAudienceId": audience.remote_id},
        )

    def _duration(self, spec: AudienceSpec) -> int:
        """The audience's `membership_duration_days` setting, else the account's."""
        value = spec.settings.get("membership_duration_days", self.account.membership_duration_days)
        try:
            return membership_duration(value)
        except ValueError as error:
            raise ConfigError(f"dv360: audience {spec.name!r} settings: {error}") from None


def member_consent(consent: Mapping[str, bool | None]) -> tuple[Consent, str | None]:
    """The member's consent as DV360 statuses, or a refusal reason when either is denied.

    True is GRANTED and unrecorded is UNSPECIFIED. False never becomes DENIED: Google fails the whole request
    on a DENIED status, and the engine already keeps such contacts off ad platforms, so one arriving anyway is
    refused on its own.
    """
    statuses = []
    for key, name in _CONSENT_FIELDS:
        value = consent.get(key)
        if value is False:
            return _REMOVAL_CONSENT, f"consent: {name} is denied; DV360 refuses to upload users without consent"
        statuses.append(ConsentStatus.GRANTED if value is True else ConsentStatus.UNSPECIFIED)
    return (statuses[0], statuses[1]), None


def contact_info_problem(info: Mapping[str, Any]) -> str | None:
    """Why Google would refuse the whole request over this ContactInfo, or None. Never repeats a value."""
    if not (info.get(HASHED_EMAILS) or info.get(HASHED_PHONES) or info.get(ZIP_CODES)):
        return "no e-mail, phone or complete address (first name, last name, zip and country) to match on"
    for name, value in info.items():
        for text in value if isinstance(value, list) else [value]:
            if name in HASHED_FIELDS and not SHA256_HEX.match(text):
                return f"{name}: not a SHA-256 hash (64 lowercase hex digits)"
            if name == ZIP_CODES and SHA256_HEX.match(text.lower()):
                return f"{name}: zip codes are sent in clear, this one looks hashed"
            if name == COUNTRY_CODE and not COUNTRY_CODE_SHAPE.match(text):
                return f"{name}: not an ISO 3166-1 alpha-2 code in upper case"
    return None


def _consent_body(consent: Consent) -> dict[str, str]:
    return {"adUserData": consent[0].value, "adPersonalization": consent[1].value}
