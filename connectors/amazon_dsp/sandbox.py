"""A local emulator of the Amazon Ads AMC Audiences endpoints and of Login with Amazon, enforcing one contract.

Served: `POST /auth/o2/token` (LwA refresh-token grant), `POST /amc/audiences/metadata`,
`GET /amc/audiences/metadata/{audienceId}`, `POST /amc/audiences/records` and
`GET /amc/audiences/records/{jobRequestId}`. Error bodies take Amazon's three shapes: the Ads API gateway's
`{"code", "details"}` for authentication, media type and throttling (429 with Retry-After, as Amazon's
rate-limiting guide documents); the audiences service's `{"message", "requestId"}` (its OpenAPI error models) for
validation, missing resources and 5xx; LwA's OAuth `{"error", "error_description"}` on the token endpoint.

Sandbox choices Amazon does not document, labelled as such: a malformed request (schema: ids, actions, keys,
country codes, batch size) is refused whole with 400, while a record whose content is unusable (a value that is
not a SHA-256 hex digest, a UK/EEA CREATE without granted consent, an injected partial reject) is skipped and
listed in the job status's `invalidRecords` `{audienceId, externalId, error}`; such a job ends SUCCEEDED. A job
whose audience does not exist ends FAILED ("the audience activation job will invalidate this audience"). Records
are applied when posted; the job reports PENDING for `job_pending_polls` status calls first. Membership is keyed
by `externalUserId`: CREATE is idempotent, DELETE removes. The token endpoint is core's `RefreshTokenEndpoint`;
access tokens live `token_lifetime` seconds (fractions allowed, so tests can watch one expire; LwA issues 3600).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeGuard

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

from .settings import (
    MAX_DESCRIPTION_LENGTH,
    MAX_RECORDS_PER_REQUEST,
    MAX_TTL_SECONDS,
    MEDIA_TYPE,
    NAME_LENGTH,
    TOKEN_PATH,
    AmazonDspCredentials,
    consent_problem,
    is_sha256_lower,
    schema_problem,
    valid_country,
)


@dataclass
class _Audience(SandboxAudience):
    """An advertiser audience; its members are `externalUserId`s, each kept with its hashed PII."""

    description: str
    advertiser_id: int
    external_audience_id: str
    country_code: str | None
    ttl: int | None


@dataclass
class _Job:
    received: int
    invalid: list[dict[str, str]]
    failed: bool
    pending_polls: int


class AmazonDspSandbox(SandboxApp[_Audience]):
    """Amazon's advertiser-audience surface and token endpoint, in memory.

    Args:
        credentials: the LwA app and refresh token the sandbox accepts; anything else is refused.
        faults: throttling, 5xx, timeouts and partial rejects to inject.
        token_lifetime: seconds an issued access token is valid.
        job_pending_polls: status calls that answer PENDING before a job's outcome.
        advertiser_ids: advertisers the user may manage; None allows any numeric id.
    """

    platform = "amazon_dsp"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "client_id": "amzn1.application-oa2-client.sandbox0001",
        "client_secret": "sandbox-amazon-secret-77aa01",
        "refresh_token": "Atzr.sandbox-amazon-refresh-0c3e",
    }
    first_id = 413642381039213536  # beyond 2**53: clients must keep ids as exact integers
    oauth: RefreshTokenEndpoint

    def __init__(
        self,
        credentials: Credentials,
        faults: FaultPlan | None = None,
        *,
        token_lifetime: float = 3600.0,
        job_pending_polls: int = 0,
        advertiser_ids: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(credentials, AmazonDspCredentials):
            raise TypeError("AmazonDspSandbox needs AmazonDspCredentials")
        super().__init__(credentials, faults)
        self.client_id = credentials.client_id.get_secret_value()
        answer = {"refresh_token": credentials.refresh_token.get_secret_value(), "token_type": "bearer"}
        self.oauth = RefreshTokenEndpoint.for_credentials(
            TOKEN_PATH, credentials, lifetime=token_lifetime, token_prefix="Atza|sbx-", answer=answer
        )
        self.job_pending_polls = job_pending_polls
        self.advertiser_ids = set(advertiser_ids) if advertiser_ids is not None else None
        self.jobs: dict[str, _Job] = {}

    # -- errors in Amazon's shapes --------------------------------------------------------------------------
    def gateway_error(self, status: int, code: str, details: str) -> SandboxError:
        """The Ads API's universal error object (reference/concepts/errors)."""
        return SandboxError(status, {"code": code, "details": details})

    def service_error(self, status: int, message: str) -> SandboxError:
        """The audiences service's error object (OpenAPI `*ExceptionResponseContent`)."""
        return SandboxError(status, {"message": message, "requestId": f"sbx-{self.next_id()}"})

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """HTTP 429 with Retry-After, as Amazon's rate-limiting guide describes; the body code is ours."""
        body = {"code": "TOO_MANY_REQUESTS", "details": "Request was rate-limited. Retry later."}
        return SandboxResponse(429, body, {"Retry-After": f"{retry_after:g}"})

    def server_error_response(self) -> SandboxResponse:
        """The audiences service's internal error (HTTP 500, "Retry later")."""
        return self.service_error(500, "Internal server error. Retry later.").response

    # -- test helpers (tokens: `oauth.expire()`) -------------------------------------------------------------
    def reset(
        self,
        *,
        token_lifetime: float = 3600.0,
        job_pending_polls: int = 0,
        advertiser_ids: Iterable[str] | None = None,
    ) -> None:
        """Forget audiences, jobs, tokens, requests and faults, so tests can share one running server."""
        with self.lock:
            super().reset()
            self.jobs.clear()
            self.oauth.lifetime = token_lifetime
            self.job_pending_polls = job_pending_polls
            self.advertiser_ids = set(advertiser_ids) if advertiser_ids is not None else None

    # -- dispatch -------------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Authenticate and route an audiences call (the base serves the token endpoint)."""
        parts = request.path.strip("/").split("/")
        if parts[:2] != ["amc", "audiences"] or len(parts) not in (3, 4):
            raise self.gateway_error(404, "NOT_FOUND", "No such resource")
        self._authenticate(request)
        resource, ident, method = parts[2], parts[3] if len(parts) == 4 else None, request.method
        if method == "POST":
            content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
            if content_type != MEDIA_TYPE:
                raise self.gateway_error(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be {MEDIA_TYPE}")
        if resource == "metadata" and ident is None and method == "POST":
            return self._create(self._body(request))
        if resource == "metadata" and ident is not None and method == "GET":
            return SandboxResponse(200, self._read(ident))
        if resource == "records" and ident is None and method == "POST":
            return self._records(self._body(request))
        if resource == "records" and ident is not None and method == "GET":
            return SandboxResponse(200, self._status(ident))
        raise self.gateway_error(404, "NOT_FOUND", "No such resource")

    def _authenticate(self, request: SandboxRequest) -> None:
        problem = self.token_problem(request)
        if problem == "missing":
            raise self.gateway_error(401, "UNAUTHORIZED", "Authorization header with a bearer token is required")
        if problem is not None:
            raise self.gateway_error(401, "UNAUTHORIZED", "The access token is expired or was not issued")
        if not _same(request.header("amazon-advertising-api-clientid"), self.client_id):
            details = "Amazon-Advertising-API-ClientId is missing or not the token's client"
            raise self.gateway_error(401, "UNAUTHORIZED", details)

    def _body(self, request: SandboxRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"null")
        except ValueError:
            raise self.service_error(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise self.service_error(400, "Request body must be a JSON object")
        return body

    # -- audiences ------------------------------------------------------------------------------------------
    def _create(self, body: dict[str, Any]) -> SandboxResponse:
        name, description = body.get("name"), body.get("description")
        if not isinstance(name, str) or not NAME_LENGTH[0] <= len(name) <= NAME_LENGTH[1]:
            raise self.service_error(400, "name must be a string of 10 to 128 characters")
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
            raise self.service_error(400, "description must be a string of at most 1000 characters")
        target = body.get("targetResource")
        advertiser = target.get("advertiserId") if isinstance(target, dict) else None
        if not _is_int(advertiser):
            raise self.service_error(400, "targetResource.advertiserId must be a number")
        if self.advertiser_ids is not None and str(advertiser) not in self.advertiser_ids:
            raise self.service_error(403, "The user is not allowed to manage this advertiser")
        country = body.get("countryCode")
        if country is not None and not valid_country(country):
            raise self.service_error(400, "countryCode must be an ISO 3166-1 alpha-2 code")
        metadata = body.get("metadata")
        external = metadata.get("externalAudienceId") if isinstance(metadata, dict) else None
        if not isinstance(external, str) or not external:
            raise self.service_error(400, "metadata.externalAudienceId is required")
        ttl = metadata.get("ttl") if isinstance(metadata, dict) else None
        if ttl is not None and not (_is_int(ttl) and 0 <= ttl <= MAX_TTL_SECONDS):
            raise self.service_error(400, f"metadata.ttl must be a number from 0 to {MAX_TTL_SECONDS}")
        audience = _Audience(description, int(advertiser), external, country, ttl, name=name)
        audience_id = int(self.create_audience(audience))
        return SandboxResponse(201, {"audienceId": audience_id, "externalAudienceId": external})

    def _read(self, ident: str) -> dict[str, Any]:
        audience = self.audiences.get(ident)
        if audience is None:
            raise self.service_error(404, f"Audience {ident} not found")
        size = len(audience.members)
        return {
            "advertiserId": audience.advertiser_id,
            "audienceId": int(ident),
            "countryCode": audience.country_code,
            "description": audience.description,
            "name": audience.name,
            "metadata": {
                "externalAudienceId": audience.external_audience_id,
                "ttl": audience.ttl,
                "audienceSize": {"receivedRecordSize": size, "dspAudienceSize": size},
            },
        }

    # -- records and jobs -----------------------------------------------------------------------------------
    def _records(self, body: dict[str, Any]) -> SandboxResponse:
        audience_id, records = body.get("audienceId"), body.get("records")
        if not _is_int(audience_id):
            raise self.service_error(400, "audienceId must be a number")
        if not isinstance(records, list) or not records:
            raise self.service_error(400, "records must be a non-empty list")
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise self.service_error(400, f"Too many records: at most {MAX_RECORDS_PER_REQUEST} per request")
        for index, record in enumerate(records):
            problem = schema_problem(record)
            if problem:
                raise self.service_error(400, f"records[{index}]: {problem}")
        audience = self.audiences.get(str(audience_id))
        job = _Job(received=len(records), invalid=[], failed=audience is None, pending_polls=self.job_pending_polls)
        if audience is None:
            error = "Audience was not created with /amc/audiences/metadata; the job invalidated it"
            job.invalid.append({"audienceId": str(audience_id), "externalId": "", "error": error})
        else:
            partial = self.should_reject_partially()
            for record in records:
                self._apply(str(audience_id), audience, record, partial, job)
        job_id = str(uuid.uuid4())
        self.jobs[job_id] = job
        return SandboxResponse(202, {"jobRequestId": job_id})

    def _apply(self, audience_id: str, audience: _Audience, record: dict[str, Any], partial: bool, job: _Job) -> None:
        """Apply one schema-valid record, or list it in the job's invalid records."""
        external, creating = record["externalUserId"], record["action"] == "CREATE"
        values = {k: v for pii in record["hashedPII"] for k, v in pii.items()}
        unhashed = [key for key, value in values.items() if not is_sha256_lower(value)]
        problem = f"hashedPII.{unhashed[0]} is not a SHA-256 hex digest" if unhashed else None
        if problem is None and creating and not values:
            problem = "hashedPII has no values"
        if problem is None and creating:
            problem = consent_problem(record, audience.country_code)
        if problem is None and creating and partial and hashlib.sha256(external.encode()).digest()[0] % 10 == 0:
            problem = "record could not be processed"  # the injected partial reject: about one record in ten
        if problem is not None:
            job.invalid.append({"audienceId": audience_id, "externalId": external, "error": problem})
        elif creating:
            audience.add(external, values)
        else:
            audience.remove(external)

    def _status(self, ident: str) -> dict[str, Any]:
        job = self.jobs.get(ident)
        if job is None:
            raise self.service_error(404, f"Job {ident} not found")
        if job.pending_polls > 0:
            job.pending_polls -= 1
            return {"jobRequestId": ident, "jobState": "PENDING"}
        processed = job.received - len(job.invalid)
        return {
            "jobRequestId": ident,
            "jobState": "FAILED" if job.failed else "SUCCEEDED",
            "invalidRecords": job.invalid,
            "successful": {"recordsProcessedRate": 0.0 if job.failed else round(100 * processed / job.received, 2)},
            "audienceSize": {"receivedRecordSize": job.received},
        }


def _same(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


__all__ = ["AmazonDspSandbox"]
