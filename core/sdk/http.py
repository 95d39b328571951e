"""The one HTTP policy every connector shares.

A connector builds requests and parses responses; this module owns everything else: a pooled
`requests.Session` per platform, timeouts on every call, a per-platform rate limit, retries with exponential
backoff and full jitter that honour Retry-After, token refresh on expiry, a status-code table that decides
what a response means, redaction of secrets in everything it raises or logs, and the dry-run outbox.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from email.utils import parsedate_to_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import requests
from pydantic import BaseModel, ConfigDict
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception
from tenacity.wait import wait_base
from urllib3.exceptions import NameResolutionError, NewConnectionError

from .errors import (
    AuthExpiredError,
    ConfigError,
    FatalError,
    OutcomeUnknownError,
    RateLimitedError,
    RetryableError,
    RunInterrupted,
)
from .redaction import Redactor, get_logger, remember_secrets
from .types import MAX_REQUESTS_IN_FLIGHT

log = get_logger(__name__)


class Action(StrEnum):
    """What a response means for the caller."""

    OK = "ok"
    RETRY = "retry"
    RATE_LIMITED = "rate_limited"
    REFRESH_AUTH = "refresh_auth"
    CONFIG_ERROR = "config_error"
    FAIL = "fail"


def default_action(status: int) -> Action:
    """The status-code table used when a connector's own classifier has no opinion."""
    if 200 <= status < 300:
        return Action.OK
    if status == 429:
        return Action.RATE_LIMITED
    if status == 401:
        return Action.REFRESH_AUTH
    if status == 403:
        return Action.CONFIG_ERROR
    if status in (408, 425) or status >= 500:
        return Action.RETRY
    return Action.FAIL


@dataclass(frozen=True)
class HttpResponse:
    """A response as connectors see it: decoupled from `requests` so dry runs can answer too."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str = ""

    def json(self) -> Any:
        """The body decoded as JSON (an empty body is `{}`)."""
        return json.loads(self.body) if self.body else {}

    @property
    def text(self) -> str:
        """The body as text."""
        return self.body.decode("utf-8", "replace")


def response_of(error: BaseException) -> HttpResponse:
    """The platform response `PlatformHttp` attached to an error it raised (an empty one for timeouts).

    Connectors read the platform's own error code from it (a deleted audience, an OAuth `invalid_grant`)
    instead of parsing the message.
    """
    response = getattr(error, "response", None)
    return response if isinstance(response, HttpResponse) else HttpResponse(0, {}, b"")


#: A connector's classifier: look at a response, return an Action, or None to use the status-code table.
Classifier = Callable[[HttpResponse], Action | None]


class RetryPolicy(BaseModel):
    """Retry and timeout settings; copy with changes via `model_copy(update=...)`."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 60.0
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    #: The longest one request may take, its retries and any token request it needs included: past it the
    #: platform is given up, so an unreachable platform fails in bounded time instead of after every backoff.
    deadline_seconds: float = 300.0
    #: Attempts when the host refuses the connection or its name does not resolve: nothing is listening, so
    #: waiting longer rarely helps, and an offline run should fail in seconds.
    connect_attempts: int = 3
    #: The longest wait between those attempts.
    connect_max_wait: float = 1.0


class Authenticator:
    """Puts credentials on a request; subclasses that can get a fresh token override `refresh`."""

    can_refresh = False

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Add credentials to the outgoing headers or query parameters."""

    def refresh(self) -> None:
        """Obtain a new token after the platform said the current one expired."""
        raise ConfigError("credentials were rejected and cannot be refreshed")


class NoAuth(Authenticator):
    """For endpoints that take no credentials."""


@dataclass
class HeaderToken(Authenticator):
    """A static token in a header, e.g. `Authorization: Bearer <token>` (header and prefix by keyword only)."""

    token: str
    _: KW_ONLY
    header: str = "Authorization"
    prefix: str = "Bearer "

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the header."""
        headers[self.header] = f"{self.prefix}{self.token}"


@dataclass
class QueryToken(Authenticator):
    """A static token as a query parameter, e.g. Meta's `access_token`."""

    token: str
    param: str = "access_token"

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the query parameter."""
        params[self.param] = self.token


class TokenStore(Protocol):
    """Where `TokenCache` keeps tokens between runs: the state database (`StateStore`)."""

    def load_token(self, platform: str, key: str) -> tuple[str, float] | None:
        """The stored token and when it expires (epoch seconds), or None."""

    def save_token(self, platform: str, key: str, token: str, expires_at: float) -> None:
        """Store (replace) a token."""

    def drop_token(self, platform: str, key: str) -> None:
        """Forget a token (the platform refused it)."""


def token_key(*parts: str) -> str:
    """The cache key of a login: a digest, so the state database never holds a username or secret in clear."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class TokenCache:
    """Access tokens reused across runs until they expire, so a rerun does not log in again.

    Xandr allows 10 logins per 5 minutes per user: reruns after crashes that each logged in stalled for minutes
    on its throttling. OAuth platforms do not ration refreshes, but a cached access token still saves a request
    per run. The cache is empty and keeps nothing until the engine binds it to the run's state database (after
    taking the campaign lock; never in a dry run). Tokens are never logged; a token the platform refuses is
    dropped (`drop`) before a new one is fetched. Thread-safe.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._store: TokenStore | None = None
        self._lock = threading.Lock()

    def bind(self, store: TokenStore | None) -> None:
        """Keep tokens in `store` from now on (None: stop; the state is about to close)."""
        with self._lock:
            self._store = store

    def get(self, platform: str, key: str) -> tuple[str, float] | None:
        """A stored token and its remaining lifetime in seconds, if it has not expired."""
        with self._lock:
            found = self._store.load_token(platform, key) if self._store is not None else None
        if found is None:
            return None
        token, expires_at = found
        remaining = expires_at - self.clock()
        return (token, remaining) if remaining > 0 else None

    def put(self, platform: str, key: str, token: str, lifetime: float) -> None:
        """Store a token that stays usable for `lifetime` more seconds (nothing for a lifetime of zero)."""
        with self._lock:
            if self._store is not None and lifetime > 0:
                self._store.save_token(platform, key, token, self.clock() + lifetime)

    def drop(self, platform: str, key: str) -> None:
        """Forget a token the platform refused."""
        with self._lock:
            if self._store is not None:
                self._store.drop_token(platform, key)


class RateLimiter:
    """A token bucket: at most `rate` requests per second, with a burst of `burst`. Thread-safe."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """Block until one request may go out."""
        if self.rate <= 0:
            return
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            wait = (1 - self._tokens) / self.rate
            self._tokens = 0.0
            self._last = now + wait
        self._sleep(wait)


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Parse Retry-After (seconds or an HTTP date); None when absent or unreadable."""
    value = headers.get("Retry-After") or headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class CannotConnectError(RetryableError):
    """Nothing answered at the platform's address: the connection was refused or the host name did not resolve.

    Retried only `RetryPolicy.connect_attempts` times with short waits: a platform that is down or a wrong
    address should fail a run in seconds, not after the backoff meant for overloaded servers.
    """


def gave_up(error: BaseException) -> bool:
    """Whether a request already spent its retries on `error`: a request enclosing it must not retry it again.

    A token request runs inside the API request that needs the token; without this mark each of the API
    request's attempts would run all of the token request's attempts (8 x 8 = 64 for an unreachable host).
    """
    return bool(getattr(error, "gave_up", False))


def _retryable(error: BaseException) -> bool:
    return isinstance(error, RetryableError) and not gave_up(error)


def _not_applied(error: BaseException) -> bool:
    """Whether a failure proves the platform did not apply the request, so even a create may be sent again.

    Nothing connected, the platform throttled it, or the token had expired: each is refused before any work.
    Everything else retryable (timeouts, dropped connections, 5xx) may have been applied.
    """
    return isinstance(error, CannotConnectError | RateLimitedError | AuthExpiredError) and not gave_up(error)


def _connect_failure(exc: requests.ConnectionError) -> str | None:
    """"connection refused" or "host name not found" when nothing could be connected to, else None."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NameResolutionError):
        return "host name not found"
    if isinstance(reason, NewConnectionError):
        return "connection refused" if "refused" in str(reason).lower() else "cannot connect"
    return None


class _StopPolicy:
    """Stop after `max_attempts` (`connect_attempts` when nothing is listening) or before the deadline passes."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float], deadline: float) -> None:
        self.policy = policy
        self.clock = clock
        self.deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        limit = self.policy.connect_attempts if isinstance(error, CannotConnectError) else self.policy.max_attempts
        if retry_state.attempt_number >= limit:
            return True
        return self.clock() + retry_state.upcoming_sleep > self.deadline


class _WaitRetryAfterOrJitter(wait_base):
    """Honour the platform's Retry-After when it gave one; otherwise exponential backoff with full jitter."""

    def __init__(self, policy: RetryPolicy, rng: Callable[[], float]) -> None:
        self.policy = policy
        self.rng = rng

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self.policy.max_wait)
        ceiling = min(self.policy.max_wait, self.policy.initial_wait * 2 ** (retry_state.attempt_number - 1))
        if isinstance(error, CannotConnectError):
            ceiling = min(ceiling, self.policy.connect_max_wait)
        return self.rng() * ceiling


class Outbox:
    """Where a dry run writes every request it would have sent, one JSON line per request, secrets masked."""

    def __init__(self, folder: Path, redactor: Redactor) -> None:
        self.folder = folder
        self.redactor = redactor
        self._lock = threading.Lock()

    def record(self, platform: str, method: str, url: str, headers: Mapping[str, str], body: Any) -> None:
        """Append one request to `<folder>/<platform>.jsonl`."""
        line = json.dumps(
            {
                "platform": platform,
                "method": method,
                "url": self.redactor.redact(url),
                "headers": self.redactor.headers(headers),
                "body": body,
            },
            sort_keys=True,
        )
        with self._lock:
            # Created at the first request, not before: a run refused by the campaign lock writes nothing.
            self.folder.mkdir(parents=True, exist_ok=True)
            with (self.folder / f"{platform}.jsonl").open("a", encoding="utf-8") as out:
                out.write(self.redactor.redact(line) + "\n")


@dataclass
class PlatformHttp:
    """One platform's HTTP client. Connectors call `request`; everything else is policy.

    Thread-safe: the engine may have several requests of one platform in flight (`Connector.requests_in_flight`).
    Each passes the rate limit and retries on its own; when the platform throttles one, the others hold off too:
    no request of the platform starts before the throttled one's retry is due (`_hold`), since a platform that
    says "slow down" means the account, not the one request.

    Attributes:
        platform: the platform slug, used in messages and the outbox.
        base_url: prepended to relative paths.
        auth: puts credentials on each request; refreshed on `Action.REFRESH_AUTH`.
        policy: retries and timeouts.
        limiter: the per-platform rate limit.
        classify: the connector's own reading of responses (throttling codes in 400 bodies, for example).
        redactor: masks secrets in everything raised or logged.
        outbox: set in dry runs; requests are recorded there and never sent.
        clock: monotonic seconds for the deadline and the "gave up after" figures; tests move their own.
        cancel: set when the run is interrupted; no further request starts (the retry waits end early).
        tokens: where authenticators keep tokens between runs (see `TokenCache`); None: nowhere.
    """

    platform: str
    base_url: str
    auth: Authenticator = field(default_factory=NoAuth)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: RateLimiter | None = None
    classify: Classifier | None = None
    redactor: Redactor = field(default_factory=Redactor)
    outbox: Outbox | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: Callable[[], float] = random.random
    session: requests.Session = field(default_factory=requests.Session)
    requests_sent: int = 0
    clock: Callable[[], float] = time.monotonic
    cancel: threading.Event | None = None
    tokens: TokenCache | None = None

    def __post_init__(self) -> None:
        self._local = threading.local()  # the deadline of the request this thread is inside (token requests)
        self._lock = threading.Lock()  # the request count and the throttling hold, shared by the threads
        self._hold_until = -math.inf
        self._hold_owner: threading.Thread | None = None  # the object, not its ident: idents are reused
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=MAX_REQUESTS_IN_FLIGHT, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = "crm-activation/0.1"

    @property
    def dry_run(self) -> bool:
        """Whether requests are recorded instead of sent."""
        return self.outbox is not None

    def add_secrets(self, *values: str) -> None:
        """Register secrets obtained at run time (a refreshed token) for redaction."""
        self.redactor.add(values)
        remember_secrets(values)

    def url(self, path: str) -> str:
        """Absolute URL for a path relative to the base URL (absolute URLs pass through)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        data: bytes | str | Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        authenticate: bool = True,
        dry_run_result: Any = None,
        idempotent: bool = True,
    ) -> HttpResponse:
        """Send one request under the retry policy and return the successful response.

        `idempotent=False` marks a request that must not be applied twice (creating an audience): it is retried
        only after failures that prove it was not applied (`_not_applied`); any other failure raises
        `OutcomeUnknownError` at once, for the caller to find out what happened before sending it again.

        Raises:
            ConfigError: credentials or permissions are wrong (never retried).
            FatalError: the platform refused the request for good.
            OutcomeUnknownError: a non-idempotent request may or may not have been applied.
            RetryableError: still failing after every retry.
        """
        if self.outbox is not None:
            return self._record(method, path, params, json_body, data, headers, authenticate, dry_run_result)
        started = self.clock()
        enclosing: float | None = getattr(self._local, "deadline", None)
        deadline = started + self.policy.deadline_seconds
        if enclosing is not None:  # a token request shares the deadline of the request that needs the token
            deadline = min(deadline, enclosing)
        retrying = Retrying(
            retry=retry_if_exception(_retryable if idempotent else _not_applied),
            stop=_StopPolicy(self.policy, self.clock, deadline),
            wait=_WaitRetryAfterOrJitter(self.policy, self.rng),
            sleep=self._wait,
            before_sleep=self._log_retry,
            reraise=True,
        )
        self._local.deadline = deadline
        try:
            return retrying(self._send_once, method, path, params, json_body, data, headers, authenticate)
        except RetryableError as error:
            if not idempotent and not _not_applied(error) and not gave_up(error):
                raise OutcomeUnknownError(f"{error} (not sent again: it may have been applied)") from None
            if not gave_up(error):
                self._give_up(error, int(retrying.statistics.get("attempt_number", 1)), self.clock() - started)
            raise
        finally:
            self._local.deadline = enclosing

    def _give_up(self, error: RetryableError, attempts: int, seconds: float) -> None:
        """Say how many attempts over how long in the error, and mark it so no enclosing request retries it."""
        detail = str(error)
        if detail.startswith(f"{self.platform} "):
            detail = detail[len(self.platform) + 1 :]
        took = f"{seconds:.1f}" if seconds < 10 else f"{seconds:.0f}"
        tries = f"{attempts} attempt{'s' * (attempts != 1)}"
        error.args = (f"{self.platform}: gave up after {tries} over {took} s: {detail}",)
        error.gave_up = True  # type: ignore[attr-defined]
        error.attempts = attempts  # type: ignore[attr-defined]

    def _wait(self, seconds: float) -> None:
        """Sleep between attempts; an interrupted run stops waiting at once."""
        if self.cancel is None:
            self.sleep(seconds)
            return
        if self.sleep is time.sleep:
            self.cancel.wait(seconds)  # a real wait ends as soon as the run is interrupted
        elif not self.cancel.is_set():
            self.sleep(seconds)
        if self.cancel.is_set():
            raise RunInterrupted(f"{self.platform}: interrupted")

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RateLimitedError):
            self._hold(state.upcoming_sleep)
        log.warning("%s: retrying after attempt %d: %s", self.platform, state.attempt_number, error)

    def _hold(self, seconds: float) -> None:
        """Throttled: no other request of the platform starts for `seconds` (this thread waits them itself)."""
        with self._lock:
            until = self.clock() + seconds
            if until > self._hold_until:
                self._hold_until, self._hold_owner = until, threading.current_thread()

    def _wait_for_hold(self) -> None:
        """Wait out what is left of another request's throttling wait before starting this one."""
        with self._lock:
            remaining = self._hold_until - self.clock()
            held_by_other = self._hold_owner is not threading.current_thread()
        if remaining > 0 and held_by_other:
            self._wait(remaining)

    def _prepare(
        self, params: Mapping[str, Any] | None, headers: Mapping[str, str] | None, authenticate: bool
    ) -> tuple[dict[str, Any], dict[str, str]]:
        final_params = dict(params or {})
        final_headers = dict(headers or {})
        if authenticate:
            self.auth.apply(final_headers, final_params)
        return final_params, final_headers

    def _send_once(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        authenticate: bool,
    ) -> HttpResponse:
        if self.cancel is not None and self.cancel.is_set():
            raise RunInterrupted(f"{self.platform}: interrupted")
        self._wait_for_hold()
        if self.limiter is not None:
            self.limiter.acquire()
        final_params, final_headers = self._prepare(params, headers, authenticate)
        url = self.url(path)
        with self._lock:
            self.requests_sent += 1
        # A read never outlasts the deadline by more than a second (a slow answer is as bad as none).
        remaining = getattr(self._local, "deadline", math.inf) - self.clock()
        try:
            raw = self.session.request(
                method,
                url,
                params=final_params or None,
                json=json_body,
                data=data,
                headers=final_headers,
                timeout=(self.policy.connect_timeout, min(self.policy.read_timeout, max(1.0, remaining))),
            )
        except requests.ConnectionError as exc:
            reason = _connect_failure(exc)
            if reason is not None:
                raise CannotConnectError(self._describe(method, url, reason)) from None
            raise RetryableError(self._describe(method, url, f"{type(exc).__name__}: {exc}")) from None
        except requests.Timeout as exc:
            raise RetryableError(self._describe(method, url, f"{type(exc).__name__}: {exc}")) from None
        response = HttpResponse(raw.status_code, raw.headers, raw.content, raw.url)
        action = (self.classify(response) if self.classify else None) or default_action(response.status)
        return self._act(action, method, response.url or url, response, authenticate)

    def _act(self, action: Action, method: str, url: str, response: HttpResponse, authenticated: bool) -> HttpResponse:
        if action is Action.OK:
            return response
        detail = self._describe(method, url, f"HTTP {response.status}: {response.text[:500]}")
        error = self._error_for(action, response, detail, authenticated)
        # The response rides along so a connector can read the platform's own error code (Meta tells a deleted
        # audience from other failures only by the code in the body) without parsing the message.
        error.response = response  # type: ignore[attr-defined]
        raise error

    def _error_for(self, action: Action, response: HttpResponse, detail: str, authenticated: bool) -> Exception:
        if action is Action.RATE_LIMITED:
            return RateLimitedError(detail, retry_after_seconds(response.headers))
        if action is Action.RETRY:
            return RetryableError(detail)
        if action is Action.REFRESH_AUTH:
            # A 401 on a call sent without our token (the token endpoint itself) means the secrets are wrong:
            # refreshing would call the same endpoint again, forever.
            if not (authenticated and self.auth.can_refresh):
                return ConfigError(f"{self.platform}: credentials rejected. {detail}")
            self.auth.refresh()
            return AuthExpiredError(detail)
        if action is Action.CONFIG_ERROR:
            return ConfigError(f"{self.platform}: credentials or permissions rejected. {detail}")
        return FatalError(detail)

    def _describe(self, method: str, url: str, what: str) -> str:
        return self.redactor.redact(f"{self.platform} {method} {url}: {what}")

    def _record(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        data: Any,
        headers: Mapping[str, str] | None,
        authenticate: bool,
        dry_run_result: Any,
    ) -> HttpResponse:
        assert self.outbox is not None
        final_params, final_headers = self._prepare(params, headers, authenticate)
        prepared = requests.Request(method, self.url(path), params=final_params or None).prepare()
        body = json_body
        if body is None and data is not None:
            body = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        self.outbox.record(self.platform, method, prepared.url or path, final_headers, body)
        payload = json.dumps(dry_run_result if dry_run_result is not None else {}).encode()
        return HttpResponse(200, {"Content-Type": "application/json"}, payload, prepared.url or path)
