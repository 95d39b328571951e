"""A connector's sandbox on a free port, and connectors built against it exactly as the engine builds them.

Each standard test gets its own sandbox (starting one costs a few milliseconds), so no test depends on a
sandbox's `reset`. Waits go through an injected sleep that records and returns at once: backoff is checked, not
sat through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..sdk.connector import Connector
from ..sdk.errors import CrmActivationError
from ..sdk.http import Action, HttpResponse, Outbox, PlatformHttp, RateLimiter, RetryPolicy, default_action
from ..sdk.http import retry_after_seconds as _retry_after
from ..sdk.redaction import Redactor, remember_secrets
from ..sdk.sandbox import FaultPlan, SandboxApp, SandboxServer
from ..sdk.types import Credentials

if TYPE_CHECKING:
    from .declaration import ContractDeclaration


@dataclass(frozen=True)
class ClassifiedAnswer:
    """A failed answer as the connector's classifier read it."""

    status: int
    retry_after: float | None
    action: Action


@dataclass
class SleepRecorder:
    """The injected sleep: remembers every wait asked for and returns at once."""

    calls: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        """Record the wait instead of sleeping."""
        self.calls.append(seconds)


class LogCapture(logging.Handler):
    """Log records of the process while active, formatted as a handler would write them (tracebacks too).

    Kept: every record of the package and of the connector's own top-level package, at any level, and
    warnings and errors of any other logger. Third-party debug records are left out: urllib3 logs each
    request line at DEBUG, query string included, which no connector can redact (see docs/contract-kit.md).
    """

    def __init__(self, *packages: str) -> None:
        super().__init__(logging.DEBUG)
        self.packages = tuple({"crm_activation", *packages})
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the formatted record when it is one the kit vouches for."""
        ours = record.name == "root" or record.name.split(".")[0] in self.packages
        if ours or record.levelno >= logging.WARNING:
            self.lines.append(self.format(record))

    @contextlib.contextmanager
    def active(self) -> Iterator[LogCapture]:
        """Attach to the root logger (and lower its level) for the duration."""
        root = logging.getLogger()
        level = root.level
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            root.removeHandler(self)
            root.setLevel(level)


def on_wire(value: str, text: str) -> bool:
    """Whether `value` appears in the lower-case `text` as a whole token, not inside a run of letters and digits.

    A 5-digit postal code is not "on the wire" because some hex digest or random id happens to contain it.
    """
    pattern = rf"(?<![0-9a-z]){re.escape(value.lower())}(?![0-9a-z])"
    return re.search(pattern, text) is not None


def secret_forms(secrets: list[str]) -> set[str]:
    """Each secret as written, URL-encoded and JSON-escaped, skipping the short ones no redactor masks (< 4)."""
    return {form for s in secrets if len(s) >= 4 for form in (s, quote(s, safe=""), json.dumps(s)[1:-1])}


def leaked(text: str, secrets: list[str]) -> list[str]:
    """Which secrets appear in `text`, described without repeating them."""
    return [f"a secret of {len(s)} characters ({s[:2]}...)" for s in secret_forms(secrets) if s in text]


@contextlib.contextmanager
def step(what: str) -> Iterator[None]:
    """Turn a connector error during a kit step into a test failure that says which step it was."""
    try:
        yield
    except CrmActivationError as error:
        raise AssertionError(f"{what}: the connector raised {type(error).__name__}: {error}") from error


class SandboxHarness:
    """One running sandbox of the contract's connector, and connectors pointed at it.

    Attributes:
        app: the sandbox application (its `requests` log and state).
        server: the running server; `server.url` is what the engine's `base_urls` would hold.
        sleep: the recording sleep every connector built here uses.
        answers: every failed answer the connectors received, with what their classifier made of it.
    """

    def __init__(
        self, contract: ContractDeclaration, faults: FaultPlan | None = None, log_path: Path | None = None
    ) -> None:
        self.contract = contract
        self.cls = contract.connector
        self.log_path = log_path
        self.app: SandboxApp = contract.make_sandbox(contract.credentials, faults or FaultPlan())
        self.server = SandboxServer(self.app, log_path=log_path)
        self.sleep = SleepRecorder()
        self.answers: list[ClassifiedAnswer] = []

    def __enter__(self) -> SandboxHarness:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    # -- connectors -------------------------------------------------------------------------------------
    def connector(
        self,
        credentials: Credentials | None = None,
        *,
        outbox_dir: Path | None = None,
        policy: RetryPolicy | None = None,
        cls: type[Connector] | None = None,
    ) -> Connector:
        """A connector as `Engine._build_connectors` makes one: sandbox URLs, rate limit, redaction, outbox."""
        cls = cls or self.cls
        credentials = credentials or self.contract.credentials
        account = cls.for_sandbox(self.contract.account, self.server.url)
        secrets = credentials.secret_values()
        redactor = Redactor(secrets)
        remember_secrets(secrets)  # as the engine does, so the package's own log records are masked
        rate = account.requests_per_second or cls.default_requests_per_second
        http = PlatformHttp(
            platform=cls.platform,
            base_url=account.base_url or cls.default_base_url,
            policy=policy or self.contract.policy,
            limiter=RateLimiter(rate, burst=max(1, int(rate))),
            classify=self._recording_classifier(cls),
            redactor=redactor,
            outbox=Outbox(outbox_dir, redactor) if outbox_dir is not None else None,
            sleep=self.sleep,
            rng=random.Random(0).random,
        )
        return cls(account, credentials, http)

    def _recording_classifier(self, cls: type[Connector]) -> Callable[[HttpResponse], Action | None]:
        """The connector's classifier, noting how it read each failed answer (and the Retry-After it carried)."""

        def classify(response: HttpResponse) -> Action | None:
            action = cls.classify_response(response)
            if response.status >= 300 or action not in (None, Action.OK):
                effective = action or default_action(response.status)
                self.answers.append(ClassifiedAnswer(response.status, _retry_after(response.headers), effective))
            return action

        return classify

    def set_faults(self, plan: FaultPlan) -> None:
        """Change what the sandbox injects from now on."""
        self.app.set_faults(plan)

    # -- what the sandbox saw ---------------------------------------------------------------------------
    def requests_text(self, since: int = 0) -> str:
        """Every logged request from `since` on as one lower-case text: method, path, query, headers, body.

        Raw text rather than JSON, whose escaped newlines in a body would glue a letter to the next value.
        """
        with self.app.lock:
            entries = list(self.app.requests[since:])
        lines = []
        for entry in entries:
            query = " ".join(f"{k}={v}" for k, values in entry["query"].items() for v in values)
            headers = " ".join(f"{k}: {v}" for k, v in entry["headers"].items())
            lines.append(f"{entry['method']} {entry['path']} {query}\n{headers}\n{entry['body']}")
        return "\n".join(lines).lower()

    def faults_seen(self, fault: str) -> int:
        """How many requests the sandbox answered with `fault`."""
        with self.app.lock:
            return sum(1 for entry in self.app.requests if entry.get("fault") == fault)

    def log_file_text(self) -> str:
        """The sandbox's JSON-lines request log on disk, as `crm-activation sandbox` writes it."""
        path = self.log_path
        return path.read_text(encoding="utf-8") if path is not None and path.exists() else ""

    def all_secrets(self, *extra: Credentials) -> list[str]:
        """The contract's credentials, any `extra` ones, and every token the sandbox accepts or issued."""
        values = [*self.contract.credentials.secret_values(), *self.app.secrets()]
        for credentials in extra:
            values.extend(credentials.secret_values())
        return values

    def record_counts(self) -> list[int]:
        """Records per logged request, as the contract's `records_in_request` counts them (None left out)."""
        with self.app.lock:
            entries = list(self.app.requests)
        counts = (self.contract.records_in_request(entry) for entry in entries if entry.get("fault") is None)
        return [count for count in counts if count is not None]

    def dumped_log(self) -> str:
        """The in-memory request log as JSON (case kept), for secret checks."""
        with self.app.lock:
            return json.dumps(self.app.requests, ensure_ascii=False)

    def describe_requests(self, limit: int = 8) -> str:
        """A short list of the last requests (method, path, status, fault), for failure messages."""
        with self.app.lock:
            entries = list(self.app.requests[-limit:])
        return "; ".join(f"{e['method']} {e['path']} -> {e['status']}{' ' + e['fault'] if e['fault'] else ''}"
                         for e in entries)


def loads_body(entry: dict[str, Any]) -> Any:
    """A logged request's body as JSON, or None when it is not JSON (a helper for `records_in_request`)."""
    try:
        return json.loads(entry.get("body") or "null")
    except ValueError:
        return None
