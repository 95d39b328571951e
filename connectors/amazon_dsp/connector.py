"""Amazon DSP advertiser audiences through the Amazon Ads AMC Audiences API.

Contract (see docs/platform-apis.md section 5 and `settings.py` for sources): create an audience with
`POST /amc/audiences/metadata` (targeting the DSP advertiser), check it with `GET /amc/audiences/metadata/{id}`,
add and remove members with `POST /amc/audiences/records` (`action` CREATE or DELETE), which answers with a
`jobRequestId`; the job's outcome, including per-record errors, is read from
`GET /amc/audiences/records/{jobRequestId}`. All bodies use the `application/vnd.amcaudiences.v1+json` media type.
Login with Amazon supplies the bearer token (`api.LoginWithAmazon`); the shared `PlatformHttp` retries 429 (with
Retry-After) and 5xx, refreshes on 401 and turns 403 into a configuration error.

`Amazon-Advertising-API-Scope` is not sent: Amazon's OpenAPI for these endpoints declares only the client-id
header, and the advertiser is named in the body (`targetResource.advertiserId`) instead of by a profile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from crm_activation import (
    AccountConfig,
    Action,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Capability,
    Connector,
    FatalError,
    HttpResponse,
    IdentifierKind,
    IdentifierRule,
    Member,
    RecordRejection,
    response_of,
)
from crm_activation import normalization as norm

from .api import LoginWithAmazon, build_record, error_body, error_text, refusal
from .sandbox import AmazonDspSandbox
from .settings import (
    API_URLS,
    JOB_FAILED,
    JOB_FINAL_STATES,
    MAX_DESCRIPTION_LENGTH,
    MAX_RECORDS_PER_REQUEST,
    MEDIA_TYPE,
    NAME_LENGTH,
    OAUTH_CONFIG_ERRORS,
    TOKEN_PATH,
    TOKEN_URLS,
    AmazonDspAccount,
    AmazonDspCredentials,
    Region,
)

log = logging.getLogger(__name__)

METADATA_PATH = "/amc/audiences/metadata"
RECORDS_PATH = "/amc/audiences/records"
_HASHING_DOC = "Amazon AMC hashed PII (Segment amazon-amc normalization); platform-apis.md §5"
#: Polling backs off from 1 s, doubling, to at most 8 s between status calls (Amazon asks clients to stop
#: polling once a job is final, to spare the shared request quota).
_POLL_FIRST_DELAY, _POLL_MAX_DELAY = 1.0, 8.0


class AmazonDspConnector(Connector):
    """Advertiser (first-party) audiences of one Amazon DSP advertiser, uploaded as hashed PII records.

    Decisions a reviewer should know:

    - `externalUserId` is `config.external_user_id(advertiser, contact id)`, never the raw CRM id.
    - UK/EEA records (and country-less records in the EU region) are sent only with a recorded
      `consent_ad_user_data` = yes, as Amazon Consent Signal `amznUserData: GRANTED`; otherwise they are refused
      per record and not sent. `amznAdStorage` is left out: Amazon reads a missing value as "the data collection
      did not involve cookies", which is true of a CRM upload. A record whose ad_user_data consent is denied is
      never sent, whatever its country. Removals are always sent: withdrawing data needs no consent.
    - Each batch waits up to `job_wait_seconds` for its upload job and reports the job's per-record errors as
      rejections; a job still PENDING then is left to Amazon (its id is in `BatchResult.job_id`). A FAILED job is
      a `FatalError`, so the engine does not record the batch and sends it again next run (CREATE and DELETE are
      idempotent per `externalUserId`).
    - `BatchResult.received` counts records sent to Amazon; `invalid` counts refused and reported records.
    """

    platform = "amazon_dsp"
    display_name = "Amazon DSP advertiser audiences (AMC Audiences API)"
    account_model = AmazonDspAccount
    credentials_model = AmazonDspCredentials
    identifier_rules = (
        IdentifierRule(IdentifierKind.EMAIL, "email", norm.email_amazon, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.PHONE, "phone", norm.phone_digits_with_country_code, hashed=True, source=_HASHING_DOC
        ),
        IdentifierRule(
            IdentifierKind.FIRST_NAME, "firstname", norm.alnum_lower_ascii, hashed=True, source=_HASHING_DOC
        ),
        IdentifierRule(IdentifierKind.LAST_NAME, "lastname", norm.alnum_lower_ascii, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.CITY, "city", norm.alnum_lower_ascii, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.STATE, "state", norm.alnum_lower_ascii, hashed=True, source=_HASHING_DOC),
        IdentifierRule(IdentifierKind.ZIP, "postal", norm.alnum_lower_ascii, hashed=True, source=_HASHING_DOC),
        IdentifierRule(
            IdentifierKind.COUNTRY, "countryCode", norm.country_upper,
            hashed=False, source=_HASHING_DOC + " (countryCode, clear)"
        ),
    )
    # Names and places only help Amazon match alongside an e-mail or phone; alone they identify nobody.
    match_keys = frozenset({IdentifierKind.EMAIL, IdentifierKind.PHONE})
    max_batch_size = MAX_RECORDS_PER_REQUEST
    capabilities = frozenset({Capability.REMOVE})
    default_base_url = API_URLS[Region.NA]
    # Amazon asks for "under 15M records per hour per connection" (~4,200 records/s). One request a second of
    # up to 6,000 records, shared with the job-status calls, stays under it; numeric TPS limits are unpublished.
    default_requests_per_second = 1.0
    sandbox = AmazonDspSandbox

    account: AmazonDspAccount
    credentials: AmazonDspCredentials

    # -- HTTP hooks ---------------------------------------------------------------------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Read Login with Amazon's OAuth errors and the 401s that no new token can fix.

        LwA refuses a bad refresh token with 400 `invalid_grant` and a bad client with 401 `invalid_client`;
        neither may be retried or "refreshed". A 401 about the scope or the client-id header is a setup
        problem too. Everything else (429, 5xx, an expired token's 401) follows the shared status table.
        """
        if response.status < 400:
            return None
        oauth_error = error_body(response).get("error")
        if isinstance(oauth_error, str):
            if oauth_error in OAUTH_CONFIG_ERRORS:
                return Action.CONFIG_ERROR
            if oauth_error in ("server_error", "temporarily_unavailable"):
                return Action.RETRY
        if response.status == 401:
            text = error_text(response).lower()
            if "scope" in text or "clientid" in text:
                return Action.CONFIG_ERROR
        return None

    def authenticator(self) -> LoginWithAmazon:
        """Login with Amazon tokens for this account's region (or sandbox); credentials registered as secrets."""
        account, credentials = self.account, self.credentials
        # The engine registers these too; doing it here keeps a connector built anywhere else from leaking them.
        self.http.add_secrets(*credentials.secret_values())
        return LoginWithAmazon.for_credentials(self.http, account.token_url or TOKEN_URLS[account.region], credentials)

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        """Point the API and the Login with Amazon token endpoint at the sandbox, which serves both."""
        return super().for_sandbox(account, url).model_copy(update={"token_url": url.rstrip("/") + TOKEN_PATH})

    # -- operations ---------------------------------------------------------------------------------------
    def check(self) -> None:
        """Obtain an access token: proves the app credentials and the refresh token.

        The audiences API has no read-only call for an advertiser without an audience id; access to the
        advertiser is proved by the first audience creation (403 there is a configuration error).
        """
        auth = self.http.auth
        if isinstance(auth, LoginWithAmazon):
            auth.access_token()

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """Reuse the known audience while Amazon still has it; create one when there is none or it is gone (404).

        Only the recorded id proves an audience is this campaign's: the AMC Audiences API reads audiences by id and
        offers no list or search, so nothing can be looked up by name or marker, and a lost state database means
        new audiences. Each is still created with the campaign's marker (`AudienceSpec.marker`) as its
        `externalAudienceId` and in its description, so a person can tell two campaigns' audiences of one name
        apart in Amazon's console.
        """
        if known is not None:
            try:
                response = self.http.request(
                    "GET",
                    f"{METADATA_PATH}/{known.remote_id}",
                    headers=_headers(body=False),
                    dry_run_result={"audienceId": known.remote_id, "name": spec.name},
                )
                return AudienceRef(key=spec.key, remote_id=str(response.json().get("audienceId", known.remote_id)))
            except FatalError as error:
                if response_of(error).status != 404:
                    raise
        response = self.http.request(
            "POST",
            METADATA_PATH,
            json_body=self.audience_body(spec),
            headers=_headers(body=True),
            dry_run_result=self.dry_run_audience(spec),
        )
        audience_id = response.json().get("audienceId")
        if audience_id is None:
            raise FatalError("amazon_dsp: audience creation answered without an audienceId")
        return AudienceRef(key=spec.key, remote_id=str(audience_id))  # a 64-bit number: kept as text

    def audience_body(self, spec: AudienceSpec) -> dict[str, Any]:
        """The `POST /amc/audiences/metadata` body, marked with the campaign's audience marker.

        The marker is the `externalAudienceId` ("the user-defined audience identifier") and ends the description
        (cut to Amazon's 1,000 characters, never the marker). Amazon wants a name of 10 to 128 characters: a
        shorter campaign name gets a " (crm-activation)" suffix, a longer one is cut.
        """
        name = spec.name.strip()
        if len(name) < NAME_LENGTH[0]:
            name = f"{name} (crm-activation)".strip()
        metadata: dict[str, Any] = {"externalAudienceId": spec.marker}
        if self.account.ttl_seconds is not None:
            metadata["ttl"] = self.account.ttl_seconds
        body: dict[str, Any] = {
            "name": name[: NAME_LENGTH[1]],
            "description": spec.described_with_marker(MAX_DESCRIPTION_LENGTH),
            "targetResource": {"advertiserId": int(self.account.advertiser_id)},
            "metadata": metadata,
        }
        if self.account.country_code:
            body["countryCode"] = self.account.country_code
        return body

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What `POST /amc/audiences/metadata` answers, with an id no real (numeric) audience can have."""
        return {"audienceId": f"dry-run-{spec.key}", "externalAudienceId": spec.marker}

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Upload the batch as CREATE records; UK/EEA records without consent are refused, not sent."""
        return self._upload("CREATE", audience, members)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Upload the batch as DELETE records with the same `externalUserId` and hashed PII as when added."""
        return self._upload("DELETE", audience, members)

    def _upload(self, action: str, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        if len(members) > self.max_batch_size:
            raise ValueError(f"amazon_dsp: batch of {len(members)} exceeds the {self.max_batch_size}-record limit")
        refused: list[RecordRejection] = []
        records: list[dict[str, Any]] = []
        owners: dict[str, str] = {}
        for member in members:
            reason = refusal(member, self.account.country_code, self.account.region) if action == "CREATE" else None
            if reason is not None:
                refused.append(RecordRejection(contact_id=member.contact_id, reason=reason))
                continue
            record = build_record(member, self.account.advertiser_id, action)
            owners[record["externalUserId"]] = member.contact_id
            records.append(record)
        if not records:
            return BatchResult(received=0, invalid=len(refused), rejections=tuple(refused))
        response = self.http.request(
            "POST",
            RECORDS_PATH,
            json_body={"audienceId": _audience_number(audience.remote_id), "records": records},
            headers=_headers(body=True),
            dry_run_result={"jobRequestId": f"dry-run-{audience.key}"},
        )
        job_id = response.json().get("jobRequestId")
        if not job_id:
            raise FatalError("amazon_dsp: records upload answered without a jobRequestId")
        status = self._wait_for_job(str(job_id))
        invalid = status.get("invalidRecords") if status else None
        reported = [item for item in invalid or [] if isinstance(item, dict)]
        rejections = [
            RecordRejection(contact_id=owners[item["externalId"]], reason=f"Amazon: {item.get('error') or 'invalid'}")
            for item in reported
            if item.get("externalId") in owners
        ]
        return BatchResult(
            received=len(records),
            invalid=len(refused) + len(reported),
            rejections=(*refused, *rejections),
            job_id=str(job_id),
        )

    def _wait_for_job(self, job_id: str) -> dict[str, Any] | None:
        """The job's final status, or None when it is still pending after `job_wait_seconds` (or in a dry run).

        Waiting is counted in the seconds asked of `http.sleep`, not read from a clock, so a test with a no-op
        sleep polls exactly as often as production would.
        """
        if self.http.dry_run:
            return None
        waited, delay = 0.0, _POLL_FIRST_DELAY
        while True:
            try:
                status = self.http.request("GET", f"{RECORDS_PATH}/{job_id}", headers=_headers(body=False)).json()
            except FatalError as error:
                log.warning("amazon_dsp: status of upload job %s unavailable (%s)", job_id, response_of(error).status)
                return None
            state = status.get("jobState") if isinstance(status, dict) else None
            if state in JOB_FINAL_STATES:
                break
            if waited >= self.account.job_wait_seconds:
                log.info("amazon_dsp: upload job %s still %s after %.0f s; not waiting longer", job_id, state, waited)
                return None
            pause = min(delay, _POLL_MAX_DELAY, self.account.job_wait_seconds - waited)
            self.http.sleep(pause)
            waited, delay = waited + pause, delay * 2
        if state == JOB_FAILED:
            errors = [item.get("error") for item in status.get("invalidRecords") or [] if isinstance(item, dict)]
            first = f": {errors[0]}" if errors and errors[0] else ""
            raise FatalError(f"amazon_dsp: upload job {job_id} FAILED{first}")
        return status


def _headers(*, body: bool) -> dict[str, str]:
    """The vendor media type, as Content-Type on requests with a body and as Accept on all."""
    return {"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE} if body else {"Accept": MEDIA_TYPE}


def _audience_number(remote_id: str) -> int | str:
    """`audienceId` goes out as a JSON number (Python writes big integers exactly); a dry-run id stays text."""
    return int(remote_id) if remote_id.isdigit() else remote_id


__all__ = ["AmazonDspConnector"]
