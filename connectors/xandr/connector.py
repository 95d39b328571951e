"""Xandr (Microsoft, ex-AppNexus) segments through the Batch Segment Service (BSS).

Contract (see docs/platform-apis.md section 4): log in at `POST /auth` for a session token sent as
`Authorization: <token>`, and log in again only when an answer says `NOAUTH`. Segments are created and found
with the Segment Service (`/segment?member_id=`). Memberships change only through upload jobs: `POST
/batch-segment` hands out a job and an upload URL, the segment file is posted there within minutes, and `GET
/batch-segment?job_id=` is polled until the job is `completed`. Files are deltas in the member's legacy format:
added users carry the configured expiration, removed ones expiration -1.

Identifiers: BSS takes no e-mail, hashed or not. The legacy format carries the Xandr user id and device ids
(IDFA, AAID, ...); extended ids (UID2, RampID) need Xandr's Avro format, whose `uid` union can only be encoded
with Xandr's schema file (not in the docs), so this connector declares neither and contacts without a Xandr uid
or MAID are ineligible here. The platform's Invest DSP closed on 2026-02-28; BSS remains for sell-side members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any
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
    Credentials,
    FatalError,
    HttpResponse,
    IdentifierKind,
    IdentifierRule,
    Member,
    PlatformHttp,
    RecordRejection,
    RetryableError,
    response_of,
)
from crm_activation import normalization as norm

from .api import XandrSessionAuth, envelope, error_of, one_object
from .sandbox import XandrSandbox
from .segment_file import DEVICE_KEY, UID_KEY, SegmentFile, error_log_entries, write_lines
from .settings import (
    CONFIG_ERROR_IDS,
    FINAL_UPLOAD_CODES,
    INVALID_COUNTERS,
    MAX_FILE_BYTES,
    MAX_MEMBERS_PER_UPLOAD,
    MAX_SHORT_NAME_LENGTH,
    NOAUTH,
    RATE_EXCEEDED,
    REMOVE_EXPIRATION,
    TRANSIENT_ERROR_IDS,
    SegField,
    XandrAccount,
    XandrCredentials,
    xandr_uid,
)

_DOCS = "Xandr legacy BSS file format (learn.microsoft.com/en-us/xandr/digital-platform-api/legacy-bss-file-format)"
#: New jobs tried when an upload URL is refused (expired, or replaced by a newer job) before giving up.
MAX_UPLOAD_URL_ATTEMPTS = 3


class XandrConnector(Connector):
    """Segments of one Xandr member, filled through Batch Segment Service upload jobs."""

    platform = "xandr"
    display_name = "Xandr (Microsoft Curate/Monetize) Batch Segment Service"
    account_model = XandrAccount
    credentials_model = XandrCredentials
    identifier_rules = (
        IdentifierRule(
            IdentifierKind.XANDR_UID, UID_KEY, xandr_uid, hashed=False, source=_DOCS + ": UID, the Xandr user id"
        ),
        IdentifierRule(
            IdentifierKind.MAID, DEVICE_KEY, norm.maid_lower, hashed=False, source=_DOCS + ": SEPARATOR5 device ids"
        ),
    )
    match_keys = frozenset({IdentifierKind.XANDR_UID, IdentifierKind.MAID})
    max_batch_size = MAX_MEMBERS_PER_UPLOAD
    capabilities = frozenset({Capability.REMOVE})
    default_base_url = "https://api.appnexus.com"
    # Xandr's limits are per user and service and unpublished (429/503 with Retry-After, which is honoured);
    # the legacy figure was 60 writes and 100 reads a minute. A job is two writes, then polls 30 s apart, so
    # short bursts at this rate stay within a minute's quota.
    default_requests_per_second = 5.0
    sandbox = XandrSandbox

    account: XandrAccount
    credentials: XandrCredentials

    def __init__(self, account: AccountConfig, credentials: Credentials, http: PlatformHttp) -> None:
        super().__init__(account, credentials, http)
        # One upload URL is valid per member at a time ("max_concurrent_uploads: 1"): jobs go one by one.
        self._upload_lock = threading.Lock()
        self._last_upload: float | None = None
        self._created: dict[str, float] = {}  # segments this connector created -> when (monotonic)
        self._codes: dict[str, str] = {}  # segment id -> its `code`, for files in a SEG_CODE format

    # -- HTTP hooks ---------------------------------------------------------------------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Map Xandr's throttling headers and `error_id`/`error_code` bodies (often sent with HTTP 200)."""
        if response.status == 429 or (response.status == 503 and "x-ratelimit-code" in _lower(response.headers)):
            return Action.RATE_LIMITED
        error_id, error_code = error_of(response)
        if error_code == RATE_EXCEEDED:
            return Action.RATE_LIMITED
        if error_id == NOAUTH:
            # On /auth NOAUTH means the username or password is wrong; elsewhere the token expired.
            return Action.CONFIG_ERROR if urlsplit(response.url).path.endswith("/auth") else Action.REFRESH_AUTH
        if error_id in CONFIG_ERROR_IDS:
            return Action.CONFIG_ERROR
        if error_id in TRANSIENT_ERROR_IDS or response.status >= 500:
            return Action.RETRY
        if error_id or error_code or str(envelope(response).get("status", "OK")).upper() == "ERROR":
            return Action.FAIL  # SYNTAX, INTEGRITY, LIMIT, NOTFOUND, upload refusals: retrying repeats them
        return None

    def authenticator(self) -> XandrSessionAuth:
        """A session login with the API user's username and password."""
        return XandrSessionAuth(
            self.http,
            self.credentials.username.get_secret_value(),
            self.credentials.password.get_secret_value(),
        )

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        """Point the API at the sandbox, which hands out its own upload URLs, and drop the waits Xandr needs.

        The sandbox finishes a job in three status reads, has no upload backlog to protect and no servers to
        propagate new segments to, so pacing, the new-segment wait and 30 s polls would only make runs slow.
        """
        return super().for_sandbox(account, url).model_copy(
            update={
                "min_seconds_between_uploads": 0.0,
                "new_segment_wait_seconds": 0.0,
                "poll_interval_seconds": 0.01,
            }
        )

    # -- operations ---------------------------------------------------------------------------------------
    @property
    def _member(self) -> dict[str, int]:
        return {"member_id": self.account.member_id}

    def check(self) -> None:
        """Log in and read the member's upload history: proves the login and the member's BSS access."""
        try:
            self.http.request(
                "GET",
                "/batch-segment",
                params={**self._member, "num_elements": 1},
                dry_run_result={"response": {"status": "OK", "count": 0, "batch_segment_upload_job": []}},
            )
        except FatalError as error:
            error_id, error_code = error_of(response_of(error))
            raise ConfigError(
                f"xandr: member {self.account.member_id} has no Batch Segment Service access for this user "
                f"(Xandr error {error_id or error_code or response_of(error).status})"
            ) from None

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """Reuse the known segment while it exists, else the member's segment with this campaign's code, else new.

        A segment's `code` is unique per member, so it holds the campaign's marker (`AudienceSpec.marker`, 47
        characters of `[a-z0-9-]`, within the 50 allowed): a lost state database, or a create that timed out,
        finds the segment again, and another campaign's segment of the same `short_name` is never used.
        """
        code = spec.marker
        if known is not None:
            segment = self._segment({"id": known.remote_id})
            if segment is not None:
                self._activate(segment)
                return self._ref(spec, segment, known.remote_id)
        found = self._segment({"code": code})
        if found is None:
            body = {"segment": {"code": code, "short_name": spec.name[:MAX_SHORT_NAME_LENGTH], "state": "active"}}
            try:
                response = self.http.request(
                    "POST", "/segment", params=self._member, json_body=body, dry_run_result=self.dry_run_audience(spec)
                )
                body_out = envelope(response)
                found = one_object(body_out, "segment", "segments") or {"id": body_out.get("id")}
                if found.get("id") is None:
                    raise FatalError("xandr: POST /segment answered without a segment id")
                self._created[str(found["id"])] = time.monotonic()
            except FatalError:
                # A create that timed out after Xandr applied it is retried and refused as a duplicate code.
                found = self._segment({"code": code})
                if found is None:
                    raise
        self._activate(found)
        return self._ref(spec, found, str(found["id"]))

    def _ref(self, spec: AudienceSpec, segment: dict[str, Any], remote_id: str) -> AudienceRef:
        """The segment as an AudienceRef, its code remembered for files that name segments by code."""
        remote_id = str(segment.get("id", remote_id))
        if segment.get("code"):
            self._codes[remote_id] = str(segment["code"])
        return AudienceRef(key=spec.key, remote_id=remote_id)

    def _code_of(self, audience: AudienceRef) -> str:
        """The segment's `code` as Xandr holds it (read once when `ensure_audience` did not see it)."""
        if audience.remote_id not in self._codes:
            placeholder = {"response": {"status": "OK", "segment": {"id": audience.remote_id, "code": "dry-run"}}}
            response = self.http.request(
                "GET", "/segment", params={"id": audience.remote_id, **self._member}, dry_run_result=placeholder
            )
            segment = one_object(envelope(response), "segment", "segments") or {}
            if not segment.get("code"):
                raise FatalError(f"xandr: segment {audience.remote_id} has no code, which the file format needs")
            self._codes[audience.remote_id] = str(segment["code"])
        return self._codes[audience.remote_id]

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """What `POST /segment` answers, with an id no real segment can have."""
        code = spec.marker
        segment = {"id": f"dry-run-{code}", "code": code, "short_name": spec.name, "state": "active"}
        return {"response": {"status": "OK", "id": segment["id"], "segment": segment}}

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Upload a file adding the members with the configured expiration."""
        return self._upload(audience, members, remove=False)

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Upload a file removing the members (expiration -1, or after separator 4)."""
        return self._upload(audience, members, remove=True)

    # -- segments -----------------------------------------------------------------------------------------
    def _segment(self, query: dict[str, str]) -> dict[str, Any] | None:
        """The member's segment by id or code, or None when Xandr has none (404, NOTFOUND or an empty list)."""
        empty = {"response": {"status": "OK", "count": 0, "segments": []}}
        try:
            response = self.http.request("GET", "/segment", params={**query, **self._member}, dry_run_result=empty)
        except FatalError as error:
            gone = response_of(error)
            if gone.status == 404 or error_of(gone)[0] == "NOTFOUND":
                return None
            raise
        return one_object(envelope(response), "segment", "segments")

    def _activate(self, segment: dict[str, Any]) -> None:
        """Xandr ignores uploads to an inactive segment (`num_inactive_segment`); a person may have paused it."""
        if segment.get("state", "active") != "active":
            self.http.request(
                "PUT",
                "/segment",
                params={"id": segment["id"], **self._member},
                json_body={"segment": {"state": "active"}},
                dry_run_result={"response": {"status": "OK", "segment": {**segment, "state": "active"}}},
            )

    # -- uploads ------------------------------------------------------------------------------------------
    def _segment_file(
        self, audience: AudienceRef, members: Sequence[Member], remove: bool
    ) -> tuple[SegmentFile, list[tuple[str, str]]]:
        """The delta file for one audience and the members it cannot carry (with reasons)."""
        fmt = self.account.file_format
        values = {
            SegField.SEG_ID: audience.remote_id,
            SegField.SEG_CODE: self._code_of(audience) if SegField.SEG_CODE in fmt.segment_fields else "",
            SegField.EXPIRATION: str(REMOVE_EXPIRATION if remove else self.account.expiration_minutes),
            SegField.TIMESTAMP: str(int(time.time())),
            SegField.VALUE: "0",
            SegField.MEMBER_ID: str(self.account.member_id),
        }
        return write_lines(fmt, members, values, remove, self.account.device_id_domains)

    def _upload(self, audience: AudienceRef, members: Sequence[Member], remove: bool) -> BatchResult:
        if len(members) > self.max_batch_size:
            raise ValueError(f"xandr: batch of {len(members)} exceeds the {self.max_batch_size}-member upload limit")
        file, unwritable = self._segment_file(audience, members, remove)
        rejections = [RecordRejection(contact_id=contact, reason=reason) for contact, reason in unwritable]
        if not file.lines:
            return BatchResult(received=len(members), rejections=tuple(rejections))
        data = file.encode()
        if len(data) > MAX_FILE_BYTES:
            raise ValueError(f"xandr: segment file of {len(data)} bytes exceeds Xandr's {MAX_FILE_BYTES}-byte limit")
        with self._upload_lock:
            self._pace(audience)
            job = self._run_job(data, len(file.lines))
        return self._result(job, file, members, rejections)

    def _pace(self, audience: AudienceRef) -> None:
        """Wait for a new segment to propagate, and keep uploads `min_seconds_between_uploads` apart.

        A dry run sends nothing, so there is nothing to pace: waiting would only make the preview slow.
        """
        if self.http.dry_run:
            return
        waits = [0.0]
        created = self._created.pop(audience.remote_id, None)
        if created is not None:
            waits.append(created + self.account.new_segment_wait_seconds - time.monotonic())
        if self._last_upload is not None:
            waits.append(self._last_upload + self.account.min_seconds_between_uploads - time.monotonic())
        if max(waits) > 0:
            self.http.sleep(max(waits))
        self._last_upload = time.monotonic()

    def _run_job(self, data: bytes, lines: int) -> dict[str, Any]:
        """Request a job, post the file to its URL (a new job when the URL was refused), poll to the end."""
        for attempt in range(1, MAX_UPLOAD_URL_ATTEMPTS + 1):
            job = self._new_job()
            try:
                self.http.request(
                    "POST",
                    str(job["upload_url"]),
                    data=data,
                    headers={"Content-Type": "application/octet-stream"},  # Xandr refuses form encoding
                    dry_run_result={"response": {"status": "OK", "segment_upload": {"job_id": job["job_id"]}}},
                )
            except FatalError as error:
                if error_of(response_of(error))[1] in FINAL_UPLOAD_CODES or attempt == MAX_UPLOAD_URL_ATTEMPTS:
                    raise
                continue  # expired or superseded URL: "if you wait longer than 5 minutes ... request a new URL"
            return self._poll(str(job["job_id"]), lines)
        raise AssertionError("unreachable")  # pragma: no cover

    def _new_job(self) -> dict[str, Any]:
        dry = {"job_id": "dry-run-job", "id": 0, **self._member, "upload_url": self.http.url("/segment-upload/dry")}
        response = self.http.request(
            "POST",
            "/batch-segment",
            params=self._member,
            dry_run_result={"response": {"batch_segment_upload_job": dry}},
        )
        job = one_object(envelope(response), "batch_segment_upload_job", "batch_segment_upload_jobs")
        if not job or not job.get("upload_url") or not job.get("job_id"):
            raise FatalError("xandr: POST /batch-segment answered without a job_id and upload_url")
        return job

    def _poll(self, job_id: str, lines: int) -> dict[str, Any]:
        """Read the job until `completed`; waiting uses the injectable sleep and is bounded by the account."""
        done = {"job_id": job_id, "phase": "completed", "num_valid": lines, "num_valid_user": lines}
        waited = 0.0
        while True:
            response = self.http.request(
                "GET",
                "/batch-segment",
                params={**self._member, "job_id": job_id},
                dry_run_result={"response": {"status": "OK", "batch_segment_upload_job": done}},
            )
            job = one_object(envelope(response), "batch_segment_upload_job", "batch_segment_upload_jobs") or {}
            phase = job.get("phase")
            if phase == "completed":
                return job
            if phase == "error":
                raise FatalError(f"xandr: upload job {job_id} failed with error_code {job.get('error_code')!r}")
            if waited >= self.account.poll_timeout_seconds:
                raise RetryableError(
                    f"xandr: upload job {job_id} still '{phase}' after {waited:g} s; it may still be applied, "
                    "and re-sending the batch is harmless (uploads add or remove, they never toggle)"
                )
            self.http.sleep(self.account.poll_interval_seconds)
            waited += self.account.poll_interval_seconds

    def _result(
        self, job: dict[str, Any], file: SegmentFile, members: Sequence[Member], rejections: list[RecordRejection]
    ) -> BatchResult:
        """Counts as Xandr reports them, in lines; rejections for contacts all of whose lines were refused.

        `num_valid` counts user/segment pairs, one per line here, so the lines not applied are the lines sent
        minus `num_valid`; the segment counters are deduplicated per segment and would undercount a file sent
        to an unknown segment. `error_log_lines` names refused lines (up to the member's configured number, 200
        by default), which the file maps back to contacts; reasons name the counter and the field, never the id.
        `invalid` counts lines, not contacts, so `unnamed` says how many contacts may be refused unnamed: zero
        when the log names every refused line (or every line it leaves out was refused), else a number below the
        contacts in doubt, so that the engine splits them rather than taking any of them for refused.
        """
        valid = job.get("num_valid")
        if isinstance(valid, int):
            invalid = max(0, len(file.lines) - valid)
        else:
            invalid = sum(int(job.get(name) or 0) for name in INVALID_COUNTERS)
        refused: dict[str, list[str]] = {}
        logged: set[str] = set()
        for counter, line in error_log_entries(job.get("error_log_lines")):
            logged.add(line)
            for contact_id, key in file.owners.get(line, ()):
                refused.setdefault(contact_id, []).append(f"{key}: {counter}")
        unlogged = [line for line in file.lines if line not in logged]
        unlogged_refused = max(0, invalid - len(logged & set(file.owners)))
        doubtful: set[str] = set()
        if unlogged_refused and unlogged_refused >= len(unlogged):  # every line the log left out was refused
            for line in unlogged:
                for contact_id, key in file.owners[line]:
                    refused.setdefault(contact_id, []).append(f"{key}: refused (beyond the error log)")
        elif unlogged_refused:
            doubtful = {contact_id for line in unlogged for contact_id, _ in file.owners[line]}
        written: dict[str, int] = {}
        for owners in file.owners.values():
            for contact_id, _ in owners:
                written[contact_id] = written.get(contact_id, 0) + 1
        for contact_id, reasons in refused.items():
            if len(reasons) >= written.get(contact_id, 0):  # a contact with one line still applied is in
                rejections.append(RecordRejection(contact_id=contact_id, reason="; ".join(sorted(set(reasons)))))
        # Some lines the log left out were refused, some applied: the engine re-sends the contacts in doubt in
        # smaller files until the log names every refused line. One contact in doubt has a line applied: it is in.
        in_doubt = len(doubtful - {r.contact_id for r in rejections})
        unnamed = min(unlogged_refused, in_doubt - 1) if in_doubt > 1 else 0
        return BatchResult(
            received=len(members), invalid=invalid, rejections=tuple(rejections), job_id=str(job.get("job_id")),
            unnamed=unnamed,
        )


def _lower(headers: Any) -> set[str]:
    return {str(name).lower() for name in headers}
