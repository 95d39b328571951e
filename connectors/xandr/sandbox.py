"""A local emulator of Xandr's Authentication, Segment and Batch Segment services.

Served: `POST /auth`; `GET`/`POST`/`PUT`/`DELETE /segment?member_id=` (GET by `id`, by `code`, or a page of the
member's segments); `POST /batch-segment?member_id=` (a job
and an upload URL on this server), `GET /batch-segment?member_id=[&job_id=]`; `POST /segment-upload/{job_id}`
(the upload URL). It enforces what the connector must get right: the `Authorization: <token>` header, token
idle and absolute expiry (NOAUTH), at most `auth_limit` logins per window, one valid upload URL per member with
a lifetime, `application/octet-stream` bodies within the size limit, and the member's file format.

Jobs advance one phase per status read (uploading, validating, processing, completed) and are applied at
completion, after any earlier job of the member: Xandr processes a member's uploads in order, which is what
makes a re-sent file harmless. Errors come as `{"response": {"status": "error", "error_id", "error"}}`, upload
refusals as `{"response": {"status": "ERROR", "error_code", "errors"}}`, throttling as 429 (or 503 with
`x-ratelimit-code`) with Retry-After. Membership is a set of users per segment (each kept with the EXPIRATION it
was uploaded with): decimal Xandr uids and `<scheme>:<device id>` in lower case. The sandbox issues no session
cookie, so only the header authenticates.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from crm_activation import (
    Credentials,
    FaultPlan,
    SandboxApp,
    SandboxAudience,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
)

from .segment_file import FileOutcome, SegmentInfo, process_file
from .settings import (
    AUTH_LIMIT,
    AUTH_WINDOW_SECONDS,
    MAX_CODE_LENGTH,
    MAX_FILE_BYTES,
    MAX_SHORT_NAME_LENGTH,
    PHASES,
    REMOVE_EXPIRATION,
    TOKEN_IDLE_SECONDS,
    TOKEN_MAX_SECONDS,
    UPLOAD_URL_LIFETIME_SECONDS,
    BssFileFormat,
    XandrCredentials,
)

#: "The maximum number of objects that can be returned in a given GET response is 100" (API semantics: paging
#: with `start_element` and `num_elements`); the default page is that maximum.
MAX_PAGE = 100


@dataclass
class _Segment(SandboxAudience):
    """A segment (its `name` is Xandr's `short_name`); each user is kept with its EXPIRATION minutes."""

    member_id: int
    code: str | None
    state: str = "active"

    def resource(self, segment_id: int) -> dict[str, Any]:
        return {"id": segment_id, "member_id": self.member_id, "code": self.code, "short_name": self.name,
                "state": self.state, "expire_minutes": None}


@dataclass
class _Job:
    seq: int
    member_id: int
    job_id: str
    created: float
    phase: str = "starting"
    data: bytes | None = None
    outcome: FileOutcome | None = None
    applied: bool = False


class XandrSandbox(SandboxApp[_Segment]):
    """Xandr's API for one user, in memory.

    Args:
        credentials: the username and password `POST /auth` accepts.
        faults: throttling, 5xx, timeouts and partial rejects to inject.
        file_format: the members' BSS file format (Xandr configures it per member; one for all here).
        member_ids: the members this user may use; None lets it use any positive member id.
        clock: seconds, for token expiry, the login window and upload URL lifetimes.
        token_idle_seconds / token_max_seconds: a token dies this long after its last use / its issue.
        auth_limit / auth_window_seconds: successful logins allowed per window.
        upload_url_seconds: how long an upload URL accepts a file.
        max_file_bytes: the file size limit (FILESIZE_LIMIT_EXCEEDED above it).
        num_error_log_lines: refused lines a job lists in `error_log_lines`.
    """

    platform = "xandr"
    test_credentials = {  # what `run --sandbox` uses when the variables are unset
        "username": "sandbox-xandr-api-user",
        "password": "sandbox-xandr-password-9d0e",
    }
    first_id = 28_000_001

    def __init__(
        self,
        credentials: Credentials,
        faults: FaultPlan | None = None,
        *,
        file_format: BssFileFormat | None = None,
        member_ids: Iterable[int] | None = None,
        clock: Callable[[], float] = time.monotonic,
        token_idle_seconds: float = TOKEN_IDLE_SECONDS,
        token_max_seconds: float = TOKEN_MAX_SECONDS,
        auth_limit: int = AUTH_LIMIT,
        auth_window_seconds: float = AUTH_WINDOW_SECONDS,
        upload_url_seconds: float = UPLOAD_URL_LIFETIME_SECONDS,
        max_file_bytes: int = MAX_FILE_BYTES,
        num_error_log_lines: int = 200,
    ) -> None:
        if not isinstance(credentials, XandrCredentials):
            raise TypeError("XandrSandbox needs XandrCredentials")
        super().__init__(credentials, faults)
        self.xandr_credentials = credentials
        self.file_format = file_format or BssFileFormat()
        self.member_ids = set(member_ids) if member_ids is not None else None
        self.clock = clock
        self.token_idle_seconds, self.token_max_seconds = token_idle_seconds, token_max_seconds
        self.auth_limit, self.auth_window_seconds = auth_limit, auth_window_seconds
        self.upload_url_seconds = upload_url_seconds
        self.max_file_bytes = max_file_bytes
        self.num_error_log_lines = num_error_log_lines
        self.tokens: dict[str, list[float]] = {}  # token -> [issued, last used]
        self.issued: list[str] = []
        self.logins: list[float] = []
        self.jobs: dict[str, _Job] = {}
        self._job_seq = itertools.count(1)
        self._throttles = itertools.count()

    # -- Xandr's answer shapes ------------------------------------------------------------------------------
    def error(self, status: int, error_id: str, message: str) -> SandboxError:
        """An API error in Xandr's envelope, ready to raise."""
        return SandboxError(status, {"response": {"status": "error", "error_id": error_id, "error": message}})

    def upload_error(self, status: int, code: str, message: str) -> SandboxError:
        """An upload refusal as the batch-segment docs show it (`error_code` and `errors`)."""
        return SandboxError(status, {"response": {"status": "ERROR", "error_code": code, "errors": [message]}})

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """429 for the per-user limit, every other time 503 with `x-ratelimit-code` for the service-wide one."""
        with self.lock:
            n = next(self._throttles)
        status = 429 if n % 2 == 0 else 503
        headers = {"Retry-After": f"{retry_after:g}", "x-ratelimit-code": str(status)}
        if status == 429:
            headers["x-ratelimit-count"] = str(100 + n)  # "included only if the status code is 429"
        body = {"response": {"status": "error", "error_code": "RATE_EXCEEDED", "error": "Too many requests"}}
        return SandboxResponse(status, body, headers)

    def server_error_response(self) -> SandboxResponse:
        """The service is overloaded: 503 without the rate-limit header."""
        return self.error(503, "SYSTEM", "Service Unavailable").response

    def secrets(self) -> list[str]:
        """The password and every token issued, masked in the request log."""
        with self.lock:
            return [*super().secrets(), *self.issued]

    # -- test helpers --------------------------------------------------------------------------------------
    def reset(self, member_ids: Iterable[int] | None = None, file_format: BssFileFormat | None = None) -> None:
        """Forget tokens, logins, segments, jobs, logged requests and faults (one server per test module)."""
        with self.lock:
            super().reset()
            self.file_format = file_format or BssFileFormat()
            self.tokens.clear()
            self.logins.clear()
            self.jobs.clear()
            self.member_ids = set(member_ids) if member_ids is not None else None
            self._throttles = itertools.count()

    def expire_tokens(self) -> None:
        """End every session, as 2 hours of idleness or the 24-hour hard expiry would."""
        with self.lock:
            self.tokens.clear()

    # -- dispatch ------------------------------------------------------------------------------------------
    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Route to the endpoint after checking the session (everything but `/auth` needs one)."""
        path, method = request.path.rstrip("/"), request.method
        if path == "/auth" and method == "POST":
            return self._login(request)
        self._authenticate(request)
        if path.startswith("/segment-upload/") and method == "POST":
            return self._upload(path.removeprefix("/segment-upload/"), request)
        if path == "/segment" and method in ("GET", "POST", "PUT", "DELETE"):
            return self._segment_service(method, self._member(request), request)
        if path == "/batch-segment" and method in ("GET", "POST"):
            member = self._member(request)
            return self._read_jobs(member, request) if method == "GET" else self._new_job(member)
        raise self.error(404, "NOTFOUND", f"no service at {method} {path}")

    def _login(self, request: SandboxRequest) -> SandboxResponse:
        auth = self._body(request).get("auth")
        creds = self.xandr_credentials
        if not isinstance(auth, dict) or set(auth) != {"username", "password"}:
            raise self.error(400, "SYNTAX", 'the body must be {"auth": {"username": ..., "password": ...}}')
        if (auth["username"], auth["password"]) != (creds.username.get_secret_value(),
                                                    creds.password.get_secret_value()):
            raise self.error(401, "NOAUTH", "No match found for user/pass")
        now = self.clock()
        self.logins = [t for t in self.logins if now - t < self.auth_window_seconds]
        if len(self.logins) >= self.auth_limit:
            wait = math.ceil(self.logins[0] + self.auth_window_seconds - now)
            body = {
                "response": {
                    "status": "error",
                    "error_code": "RATE_EXCEEDED",
                    "error": f"Too many logins: {self.auth_limit} per {self.auth_window_seconds:g} s",
                }
            }
            raise SandboxError(429, body, {"Retry-After": str(max(1, wait)), "x-ratelimit-code": "429"})
        self.logins.append(now)
        token = secrets.token_hex(16)
        self.tokens[token] = [now, now]
        self.issued.append(token)
        return SandboxResponse(200, {"response": {"status": "OK", "token": token, "dbg_info": _DBG}})

    def _authenticate(self, request: SandboxRequest) -> None:
        token = request.header("authorization") or ""
        times = self.tokens.get(token)
        now = self.clock()
        if times is None or now - times[1] > self.token_idle_seconds or now - times[0] > self.token_max_seconds:
            self.tokens.pop(token, None)
            raise self.error(401, "NOAUTH", "Authentication failed - not logged in")
        times[1] = now

    def _member(self, request: SandboxRequest) -> int:
        text = request.param("member_id") or ""
        if not text.isdigit() or int(text) < 1:
            raise self.error(400, "SYNTAX", "member_id is required")
        member = int(text)
        if self.member_ids is not None and member not in self.member_ids:
            raise self.error(403, "UNAUTH", f"You do not have access to member {member}")
        return member

    def _body(self, request: SandboxRequest) -> dict[str, Any]:
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            raise self.error(400, "SYNTAX", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise self.error(400, "SYNTAX", "the body must be a JSON object")
        return body

    # -- Segment Service -----------------------------------------------------------------------------------
    def _segment_service(self, method: str, member: int, request: SandboxRequest) -> SandboxResponse:
        if method == "POST":
            return self._create_segment(member, self._body(request).get("segment"))
        mine = {int(i): s for i, s in self.audiences.items() if s.member_id == member}
        ident, code = request.param("id"), request.param("code")
        if method == "GET" and ident is None:
            found = [s.resource(i) for i, s in mine.items() if code is None or (s.code or "").lower() == code.lower()]
            # API paging: `start_element` and `num_elements` (at most 100, the default), `count` is the total.
            start, size = request.param("start_element") or "0", request.param("num_elements") or str(MAX_PAGE)
            if not (start.isdigit() and size.isdigit()) or not 1 <= int(size) <= MAX_PAGE:
                raise self.error(400, "SYNTAX", f"start_element and num_elements (1..{MAX_PAGE}) must be integers")
            page = found[int(start) : int(start) + int(size)]
            return _ok({"count": len(found), "start_element": int(start), "num_elements": len(page), "segments": page})
        if ident is None or not ident.isdigit() or int(ident) not in mine:
            raise self.error(404, "NOTFOUND", "segment not found")
        segment_id, segment = int(ident), mine[int(ident)]
        if method == "DELETE":
            self.delete_audience(str(segment_id))
            return _ok({})
        if method == "PUT":
            changes = self._body(request).get("segment")
            if not isinstance(changes, dict) or changes.get("state", segment.state) not in ("active", "inactive"):
                raise self.error(400, "SYNTAX", "segment.state must be active or inactive")
            segment.state = changes.get("state", segment.state)
            segment.name = str(changes.get("short_name", segment.name))[:MAX_SHORT_NAME_LENGTH]
        return _ok({"count": 1, "id": segment_id, "segment": segment.resource(segment_id)})

    def _create_segment(self, member: int, fields: Any) -> SandboxResponse:
        if not isinstance(fields, dict) or not fields.get("short_name"):
            raise self.error(400, "SYNTAX", "segment.short_name is required")
        code, name, state = fields.get("code"), str(fields["short_name"]), fields.get("state", "active")
        if len(name) > MAX_SHORT_NAME_LENGTH or state not in ("active", "inactive"):
            raise self.error(400, "SYNTAX", "short_name is at most 255 characters; state is active or inactive")
        if code is not None:
            code = str(code)
            if not code or len(code) > MAX_CODE_LENGTH:
                raise self.error(400, "SYNTAX", "code is at most 50 characters")
            if any(s.member_id == member and (s.code or "").lower() == code.lower() for s in self.audiences.values()):
                raise self.error(400, "SYNTAX", "code is already in use by another segment of this member")
        segment = _Segment(member, code, state, name=name)
        segment_id = int(self.create_audience(segment))
        return _ok({"count": 1, "id": segment_id, "segment": segment.resource(segment_id)})

    # -- Batch Segment Service -----------------------------------------------------------------------------
    def _new_job(self, member: int) -> SandboxResponse:
        job_id = secrets.token_hex(15) + str(int(time.time()))  # shaped like Xandr's: random, then epoch
        job = _Job(next(self._job_seq), member, job_id, self.clock())
        self.jobs[job_id] = job
        view = {"job_id": job_id, "id": job.seq, "member_id": member, "last_modified": _now(),
                "upload_url": f"{self.base_url}/segment-upload/{job_id}"}
        return _ok({"id": job.seq, "batch_segment_upload_job": view})

    def _upload(self, job_id: str, request: SandboxRequest) -> SandboxResponse:
        job = self.jobs.get(job_id)
        if job is None:
            raise self.upload_error(404, "UPLOAD_URL_UNKNOWN", "No upload job has this URL")
        answer = _ok({"segment_upload": {"job_id": job_id}})
        if job.data is not None:  # a retried upload is answered again; a different file is refused
            if request.body == job.data:
                return answer
            raise self.upload_error(400, "UPLOAD_ALREADY_RECEIVED", "A file was already uploaded for this job")
        newest = max((j.seq for j in self.jobs.values() if j.member_id == job.member_id), default=job.seq)
        if self.clock() - job.created > self.upload_url_seconds or job.seq != newest:
            raise self.upload_error(400, "UPLOAD_URL_EXPIRED", "This upload URL has expired; request a new job")
        if (request.header("content-type") or "").split(";")[0].strip() != "application/octet-stream":
            raise self.upload_error(400, "INVALID_CONTENT_TYPE", "Content-Type must be application/octet-stream")
        if len(request.body) > self.max_file_bytes:
            raise self.upload_error(
                400, "FILESIZE_LIMIT_EXCEEDED", "Member exceeds maximum byte size allowed for a file"
            )
        try:  # gzip is the one compression BSS accepts
            raw = gzip.decompress(request.body) if request.body[:2] == b"\x1f\x8b" else request.body
        except (OSError, EOFError):
            raise self.upload_error(400, "INVALID_FILE", "The file is not valid gzip") from None
        job.data, job.phase = request.body, "uploading"
        job.outcome = process_file(
            raw.decode("latin-1"),
            self.file_format,
            job.member_id,
            self._members_view(job.member_id),
            reject=_bucket_zero if self.should_reject_partially() else None,
            log_lines=self.names_limit(self.num_error_log_lines),
        )
        return answer

    def _members_view(self, member: int) -> dict[int, SegmentInfo]:
        segments = self.audiences.items()
        return {int(i): SegmentInfo(s.code, s.state == "active") for i, s in segments if s.member_id == member}

    def _read_jobs(self, member: int, request: SandboxRequest) -> SandboxResponse:
        job_id = request.param("job_id")
        if job_id is None:
            asked = request.param("num_elements") or "100"
            limit = min(100, int(asked)) if asked.isdigit() else 100  # the API pages at 100 objects
            jobs = sorted((j for j in self.jobs.values() if j.member_id == member), key=lambda j: -j.seq)
            return _ok({"count": len(jobs), "batch_segment_upload_job": [self._view(j) for j in jobs[:limit]]})
        job = self.jobs.get(job_id)
        if job is None or job.member_id != member:
            raise self.error(404, "NOTFOUND", "batch segment upload job not found")
        if job.phase in PHASES[1:-1]:
            job.phase = PHASES[PHASES.index(job.phase) + 1]
            if job.phase == "completed":
                for earlier in sorted(self.jobs.values(), key=lambda j: j.seq):
                    if earlier.member_id == member and earlier.outcome is not None and earlier.seq <= job.seq:
                        self._apply(earlier)
        return _ok({"count": 1, "batch_segment_upload_job": self._view(job)})

    def _apply(self, job: _Job) -> None:
        """Apply a job's valid lines in file order, once (an earlier job completes before a later one)."""
        if job.applied or job.outcome is None:
            return
        job.applied, job.phase = True, "completed"
        for segment_id, user, expiration in job.outcome.operations:
            segment = self.audiences.get(str(segment_id))
            if segment is None:
                continue
            if expiration == REMOVE_EXPIRATION:
                segment.remove(user)
            else:
                segment.add(user, expiration)

    def _view(self, job: _Job) -> dict[str, Any]:
        view: dict[str, Any] = {"job_id": job.job_id, "id": job.seq, "member_id": job.member_id,
                                "phase": job.phase, "error_code": None, "last_modified": _now()}
        if job.phase == "completed" and job.outcome is not None:  # "most metadata only when completed"
            view |= job.outcome.counts | {"percent_complete": 100}
            view["error_log_lines"] = "\n".join(job.outcome.error_lines) or None
            view["segment_log_lines"] = "".join(f"\n{s}:{n}" for s, n in job.outcome.per_segment.items()) or None
        return view


_DBG = {"warnings": [], "version": "sandbox", "output_term": "sandbox"}


def _ok(content: dict[str, Any]) -> SandboxResponse:
    return SandboxResponse(200, {"response": {"status": "OK", **content, "dbg_info": _DBG}})


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())


def _bucket_zero(user: str) -> bool:
    """About one user in ten, chosen by the user: a re-sent line is refused again, though its timestamp changed."""
    return hashlib.sha256(user.encode("latin-1")).digest()[0] % 10 == 0


__all__ = ["XandrSandbox"]
