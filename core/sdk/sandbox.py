"""Local platform sandboxes: real HTTP servers that enforce a platform's contract.

A connector's sandbox subclasses `SandboxApp` and implements the platform's endpoints in `handle`. This module
provides the rest: a threaded HTTP server on loopback, a JSON-lines request log with tokens masked, fault
injection (throttling in the platform's own shape, 5xx, slow responses that trip client timeouts), and admin
endpoints under `/_sandbox/` so a test or a person can read the platform's end state.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict

from .redaction import Redactor
from .types import Credentials


class FaultPlan(BaseModel):
    """How often a sandbox misbehaves, per request, drawn from a seeded generator so runs repeat.

    `timeout` faults process the request and then answer too late: the client gives up and retries a request
    the platform already applied, which is exactly the case that tests idempotence.
    """

    model_config = ConfigDict(frozen=True)

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    timeout_rate: float = 0.0
    partial_reject_rate: float = 0.0
    retry_after: float = 0.01
    timeout_seconds: float = 1.0
    seed: int = 0


@dataclass
class SandboxRequest:
    """An incoming request, decoded once."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON, or `SandboxError` 400 when it is not JSON."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise SandboxError(400, {"error": f"body is not JSON: {exc}"}) from None


@dataclass
class SandboxResponse:
    """What the sandbox answers: a JSON body unless `raw` is given."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class SandboxError(Exception):
    """Raised inside `handle` to answer with a platform-shaped error."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = SandboxResponse(status, body, headers or {})


class SandboxApp:
    """Base of a platform emulator. Subclasses implement `handle`, `throttle_response` and `state`.

    A sandbox is built from the same `Credentials` model its connector uses and accepts exactly those
    credentials, so a run against it proves the connector sends them the way the platform expects.
    """

    platform: ClassVar[str]

    def __init__(self, credentials: Credentials, faults: FaultPlan | None = None) -> None:
        self.credentials = credentials
        self.lock = threading.RLock()
        self.faults = faults or FaultPlan()
        self._rng = random.Random(self.faults.seed)
        self.requests: list[dict[str, Any]] = []
        self.base_url = ""

    def set_faults(self, faults: FaultPlan) -> None:
        """Change the fault plan (and reseed) while running."""
        with self.lock:
            self.faults = faults
            self._rng = random.Random(faults.seed)

    def draw_fault(self) -> str | None:
        """Pick this request's fault, if any: 'throttle', 'server_error' or 'timeout'."""
        with self.lock:
            roll = self._rng.random()
            plan = self.faults
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

    def handle(self, request: SandboxRequest) -> SandboxResponse:
        """Serve one platform endpoint."""
        raise NotImplementedError

    def throttle_response(self, retry_after: float) -> SandboxResponse:
        """The platform's own throttling answer (override: Meta throttles with a 400 and an error code)."""
        return SandboxResponse(429, {"error": "rate limited"}, {"Retry-After": f"{retry_after:g}"})

    def server_error_response(self) -> SandboxResponse:
        """The platform's own transient server error."""
        return SandboxResponse(503, {"error": "service unavailable"})

    def state(self) -> dict[str, Any]:
        """The platform's end state (audiences and members) as plain JSON."""
        raise NotImplementedError

    def secrets(self) -> list[str]:
        """Tokens this sandbox accepts or issued, masked in its request log (extend for issued tokens)."""
        return self.credentials.secret_values()


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
                if fault == "timeout":
                    time.sleep(app.faults.timeout_seconds)
        self.server.log(request, response, fault)
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
        try:
            with self.app.lock:
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
