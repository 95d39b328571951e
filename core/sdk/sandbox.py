"""Local platform sandboxes: real HTTP servers that enforce a platform's contract.

A connector's sandbox subclasses `SandboxApp` and implements the platform's endpoints in `handle`. This module
provides the rest: a threaded HTTP server on loopback, a JSON-lines request log with tokens masked, fault
injection (throttling in the platform's own shape, 5xx, slow responses that trip client timeouts), the
audience store every sandbox keeps its end state in (`sandbox_audiences.py`), an optional OAuth token endpoint
(`sandbox_oauth.py`), and admin endpoints under `/_sandbox/` so a test or a person can read the end state.
"""

from __future__ import annotations

import itertools
import json
import random
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict

from .redaction import Redactor
from .sandbox_audiences import SandboxAudience
from .sandbox_messages import SandboxError, SandboxRequest, SandboxResponse
from .sandbox_oauth import RefreshTokenEndpoint, bearer_token
from .types import Credentials

AudienceT = TypeVar("AudienceT", bound=SandboxAudience)

__all__ = ["FaultPlan", "SandboxApp", "SandboxError", "SandboxRequest", "SandboxResponse", "SandboxServer"]


class FaultPlan(BaseModel):
    """How often a sandbox misbehaves, per request, drawn from a seeded generator so runs repeat.

    `timeout` faults process the request and then answer too late: the client gives up and retries a request
    the platform already applied, which is exactly the case that tests idempotence. `timeout_requests` picks
    such requests by number instead of by chance (1 is the first platform request after `set_faults`), so a
    test can lose the answer to exactly one request, e.g. the create of an audience.

    `partial_reject_rate` is the share of add requests that refuse about one record in ten (chosen by the
    record's content, so a re-sent record is refused again). `reject_names`, when set, caps how many refused
    records one answer names, the rest only counted, as Meta does (ten samples): sandboxes of platforms that name
    refused records up to a limit (Meta's samples, Xandr's error log) honour it; those that answer per record
    by position (LinkedIn, Amazon) cannot leave one out and ignore it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    timeout_rate: float = 0.0
    partial_reject_rate: float = 0.0
    reject_names: int | None = None
    retry_after: float = 0.01
    timeout_seconds: float = 1.0
    timeout_requests: frozenset[int] = frozenset()
    seed: int = 0


class SandboxApp(Generic[AudienceT]):
    """Base of a platform emulator. Subclasses implement `handle` and the platform's error shapes.

    A sandbox is built from the same `Credentials` model its connector uses and accepts exactly those
    credentials, so a run against it proves the connector sends them the way the platform expects.

    Its end state lives in `audiences` (remote id -> a `SandboxAudience`, or the subclass the sandbox is
    parametrized with): `create_audience` stores one under a fresh id, `audiences.get` finds one, the audience's
    `add`/`remove` change its members, `delete_audience` drops one, and `state()` shows them all in the one shape
    every test reads. A platform with an OAuth refresh-token endpoint declares `token_path` (the base then builds
    `oauth`, a `RefreshTokenEndpoint` honouring the credentials' `client_id`, `client_secret` and `refresh_token`)
    or assigns its own `oauth` for other settings; either way the base serves it, masks the tokens it issues,
    forgets them in `reset()`, and `token_problem(request)` says why a request's bearer token is refused.
    Every request is handled under `lock`; take it in helpers that tests call while the server runs.
    """

    platform: ClassVar[str]
    #: The first id `next_id` hands out, before a random offset of up to a billion: ids shaped like the platform's.
    first_id: ClassVar[int] = 1_000_001
    #: Where the platform's OAuth refresh-token endpoint is served, if it has one (see `oauth`).
    token_path: ClassVar[str | None] = None
    #: Known test credentials (field -> value) this sandbox is built with when `run --sandbox` finds the
    #: connector's variables unset, so a sandbox run needs no secrets by hand. Never real secrets: they are public.
    test_credentials: ClassVar[dict[str, str]] = {}

    def __init__(self, credentials: Credentials, faults: FaultPlan | None = None) -> None:
        self.credentials = credentials
        self.lock = threading.RLock()
        self.faults = faults or FaultPlan()
        self._rng = random.Random(self.faults.seed)
        self._served = 0
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""
        self.audiences: dict[str, AudienceT] = {}
        self.oauth: RefreshTokenEndpoint | None = None
        if self.token_path is not None:
            self.oauth = RefreshTokenEndpoint.for_credentials(self.token_path, credentials)
        # Random start: a fresh sandbox never hands out an id an earlier one already used.
        self._ids = itertools.count(self.first_id + secrets.randbelow(10**6) * 1000)

    def set_faults(self, faults: FaultPlan) -> None:
        """Change the fault plan (and reseed) while running."""
        with self.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)
            self._served = 0

    def draw_fault(self) -> str | None:
        """Pick this request's fault, if any: 'throttle', 'server_error' or 'timeout'."""
        with self.lock:
            roll = self._rng.random()
            plan = self.faults
            self._served += 1
            if self._served in plan.timeout_requests:
                return "timeout"
        for name, rate in (
            ("throttle", plan.throttle_rate),
            ("server_error", plan.server_error_rate),
            ("timeout", plan.timeout_rate),
        ):
            if roll < rate:
                return name
            roll -= rate
        return None

    def should_reject_partially(self) -> bool:
        """Whether this batch should refuse some records (the sandbox decides which)."""
        with self.lock:
            return self._rng.random() < self.faults.partial_reject_rate

    def names_limit(self, platform_limit: int) -> int:
        """How many refused records one answer may name: the platform's own limit, or the fault plan's if lower."""
        with self.lock:
            cap = self.faults.reject_names
        return platform_limit if cap is None else max(0, min(platform_limit, cap))

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Serve one platform endpoint."""
        raise NotImplementedError

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """The platform's own throttling answer (override: Meta throttles with a 400 and an error code)."""
        return SandboxResponse(429, {"error": "rate limited"}, {"Retry-After": f"{retry_after:g}"})

    def server_error_response(self) -> SandboxResponse:
        """The platform's own transient server error."""
        return SandboxResponse(503, {"error": "service unavailable"})

    def secrets(self) -> list[str]:
        """Secrets masked in the request log: the credentials and issued tokens (extend for tokens of your own)."""
        issued = self.oauth.issued if self.oauth is not None else []
        return [*self.credentials.secret_values(), *issued]

    def token_problem(self, request: SandboxRequest) -> str | None:
        """Why the request's `Authorization: Bearer` token is refused: "missing", "unknown", "revoked" or "expired".

        None when `oauth` issued it and it is live. Answer a refusal in the platform's own error shape.
        """
        if self.oauth is None:
            raise TypeError(f"{type(self).__name__} has no token endpoint: declare `token_path` or set `oauth`")
        return self.oauth.problem(bearer_token(request))

    # -- the audience store -------------------------------------------------------------------------------
    def next_id(self) -> str:
        """A fresh numeric id (for audiences, and for anything else the platform numbers)."""
        with self.lock:
            return str(next(self._ids))

    def create_audience(self, audience: AudienceT) -> str:
        """Store a new audience under a fresh id and return the id."""
        with self.lock:
            remote_id = self.next_id()
            self.audiences[remote_id] = audience
            return remote_id

    def delete_audience(self, remote_id: str) -> None:
        """Drop an audience, as a person in the platform's UI would; later calls about it find nothing."""
        with self.lock:
            del self.audiences[remote_id]

    def state(self) -> dict[str, Any]:
        """The end state as plain JSON: `{"audiences": {remote_id: {"name", "members": [...], ...}}}`.

        Extend (`super().state() | {...}`) to show more of what the sandbox records; keep this part as it is,
        since the contract kit's defaults and the end-to-end tests read it.
        """
        with self.lock:
            return {"audiences": {remote_id: audience.view() for remote_id, audience in self.audiences.items()}}

    def reset(self) -> None:
        """Forget audiences, issued tokens, logged requests and faults, so tests can share one running server."""
        with self.lock:
            self.audiences.clear()
            self.requests.clear()
            if self.oauth is not None:
                self.oauth.forget()
        self.set_faults(FaultPlan())


class _Handler(BaseHTTPRequestHandler):
    server: _SandboxHTTPServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each response then waits ~40 ms for the
    # client's delayed ACK, which made every sandbox call (and every test and benchmark) 40 ms slower.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # the JSON log replaces stderr noise
        return

    def _serve(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = SandboxRequest(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        fault = None
        if parts.path.startswith("/_sandbox/"):
            response = self.server.admin(request)
        else:
            fault = app.draw_fault()
            if fault == "throttle":
                response = app.throttle_response(app.faults.retry_after)
            elif fault == "server_error":
                response = app.server_error_response()
            else:
                response = self.server.dispatch(request)
        # Logged before an injected delay: once the client gave up and the test moved on, nothing of this request
        # may still change what the test (or the next one, sharing the server) reads.
        self.server.log(request, response, fault)
        if fault == "timeout":
            time.sleep(app.faults.timeout_seconds)
        self._write(response)

    def _write(self, response: SandboxResponse) -> None:
        payload = response.raw if response.raw is not None else json.dumps(response.body).encode()
        try:
            self.send_response(response.status)
            headers = {"Content-Type": "application/json", **response.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left; the request was still applied, as on a real platform

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _SandboxHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, app: SandboxApp, host: str, port: int, log_path: Path | None) -> None:
        super().__init__((host, port), _Handler)
        self.app = app
        self.log_path = log_path
        self._log_lock = threading.Lock()

    def dispatch(self, request: SandboxRequest) -> SandboxResponse:
        oauth = self.app.oauth
        try:
            with self.app.lock:
                if oauth is not None and request.method == "POST" and request.path == oauth.path:
                    return oauth.grant(request)
                return self.app.handle(request)
        except SandboxError as error:
            return error.response

    def admin(self, request: SandboxRequest) -> SandboxResponse:
        if request.path == "/_sandbox/state":
            with self.app.lock:
                return SandboxResponse(200, self.app.state())
        if request.path == "/_sandbox/faults" and request.method == "POST":
            self.app.set_faults(FaultPlan.model_validate(request.json()))
            return SandboxResponse(200, self.app.faults.model_dump())
        return SandboxResponse(404, {"error": "unknown sandbox admin path"})

    def log(self, request: SandboxRequest, response: SandboxResponse, fault: str | None) -> None:
        """Record the request, secrets masked, in memory (for tests) and in the JSON-lines file."""
        redactor = Redactor(self.app.secrets())
        entry = {
            "ts": time.time(),
            "platform": self.app.platform,
            "method": request.method,
            "path": request.path,
            "query": {k: [redactor.redact(f"{k}={v}")[len(k) + 1 :] for v in vs] for k, vs in request.query.items()},
            "headers": redactor.headers(request.headers),
            "body": redactor.redact(request.body.decode("utf-8", "replace")),
            "status": response.status,
            "fault": fault,
        }
        with self._log_lock:
            self.app.requests.append(entry)
            if self.log_path is not None:
                with self.log_path.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(entry) + "\n")


class SandboxServer:
    """Runs one `SandboxApp` on loopback in a background thread; a context manager."""

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0, log_path: Path | None = None):
        self.app = app
        self._server = _SandboxHTTPServer(app, host, port, log_path)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"sandbox-{app.platform}"
        )
        self._thread.daemon = True
        host_name, port_number = self._server.server_address[:2]
        self.url = f"http://{host_name!s}:{port_number}"
        app.base_url = self.url

    def start(self) -> SandboxServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
