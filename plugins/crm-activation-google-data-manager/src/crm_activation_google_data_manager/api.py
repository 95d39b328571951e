"""Google's side of the wire: the OAuth 2.0 refresh-token flow and what Google's error bodies mean.

The built-in DV360 connector has the same two pieces, but a plugin may import only `crm_activation`'s public
API, so they live here too (see the plugin README: a shared OAuth refresh authenticator in core would remove
the copy).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from crm_activation import Action, Authenticator, ConfigError, HttpResponse, PlatformHttp

from .config import (
    FATAL_STATUSES,
    OAUTH_CONFIG_ERRORS,
    RATE_LIMITED_STATUSES,
    SCOPE,
    TRANSIENT_STATUSES,
    GoogleDataManagerCredentials,
)

#: Refresh this long before `expires_in` runs out (at most half the lifetime), so no request leaves with a token
#: that expires on the way.
EXPIRY_MARGIN_SECONDS = 60.0
#: What a dry run writes in place of each OAuth secret in the recorded token request: the secrets never reach the
#: outbox at all, not even for the redactor to catch.
DRY_RUN_MASK = "***"
#: The access token a dry run pretends to get; no Google service accepts it.
DRY_RUN_TOKEN = "dry-run-access-token"


def _json(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def google_error(response: HttpResponse) -> dict[str, Any]:
    """The `error` object of a Google JSON error body (`{code, message, status, details}`), or {}."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def error_reasons(response: HttpResponse) -> list[str]:
    """The Data Manager `ErrorReason`s of an error: each BadRequest field violation's, else ErrorInfo's."""
    details = [d for d in google_error(response).get("details") or () if isinstance(d, dict)]
    violations = [v for d in details for v in d.get("fieldViolations") or () if isinstance(v, dict)]
    reasons = [str(v["reason"]) for v in violations if v.get("reason")]
    return reasons or [str(d["reason"]) for d in details if d.get("reason")]


def response_of(error: Exception) -> HttpResponse:
    """The platform response `PlatformHttp` attached to the error (an empty one when there was none)."""
    response = getattr(error, "response", None)
    return response if isinstance(response, HttpResponse) else HttpResponse(0, {}, b"")


def classify_google(response: HttpResponse) -> Action | None:
    """Map Google's status names (and OAuth error codes) to the shared actions; None leaves it to the status table.

    The status name decides rather than the HTTP code: RESOURCE_EXHAUSTED comes as 429 without Retry-After, and a
    token endpoint's OAuth error is never "refresh the token", since answering a failed refresh with another
    refresh would loop.
    """
    if response.status < 400:
        return None
    body = _json(response)
    oauth = body.get("error") if isinstance(body, dict) else None
    if isinstance(oauth, str) and response.status != 429:
        return Action.CONFIG_ERROR if oauth in OAUTH_CONFIG_ERRORS or response.status in (401, 403) else Action.FAIL
    status = google_error(response).get("status")
    if status in RATE_LIMITED_STATUSES:
        return Action.RATE_LIMITED
    if status in TRANSIENT_STATUSES:
        return Action.RETRY
    if status == "UNAUTHENTICATED":
        return Action.REFRESH_AUTH
    if status == "PERMISSION_DENIED":
        return Action.CONFIG_ERROR
    if status in FATAL_STATUSES:
        return Action.FAIL
    return None


@dataclass
class GoogleRefreshTokenAuth(Authenticator):
    """`Authorization: Bearer` with access tokens obtained from a refresh token (RFC 6749 §6).

    A token is fetched before the first request, again shortly before `expires_in` runs out, and when the API
    answers 401 UNAUTHENTICATED. The token request goes through the connector's own `PlatformHttp` without
    authentication, so it gets the same timeouts, retries and redaction, and in a dry run it is recorded in the
    outbox, with the secrets written as the mask, instead of being sent.

    Attributes:
        http: the platform client the token requests go through.
        token_url: Google's token endpoint (or the sandbox's).
        credentials: client id, client secret and refresh token.
        platform: the slug used in error messages.
        clock: monotonic seconds; tests substitute one they can move.
    """

    http: PlatformHttp = field(repr=False)
    token_url: str
    credentials: GoogleDataManagerCredentials = field(repr=False)
    platform: str = "google_data_manager"
    clock: Callable[[], float] = time.monotonic
    can_refresh = True

    _token: str | None = field(default=None, init=False, repr=False)
    _expires_at: float = field(default=0.0, init=False, repr=False)
    _uses: int = field(default=0, init=False, repr=False)
    _after_refusal: bool = field(default=False, init=False, repr=False)
    _fetching: bool = field(default=False, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the bearer token, fetching one first when there is none or it is about to expire.

        A token never used is sent even when its lifetime is over: replacing it unused would hide a token
        endpoint that issues dead tokens behind an endless series of fetches.
        """
        with self._lock:
            if self._token is None or (self._uses > 0 and self.clock() >= self._expires_at):
                self._fetch(after_refusal=False)
            self._uses += 1
            token = self._token
        headers["Authorization"] = f"Bearer {token}"

    def refresh(self) -> None:
        """Get a new token after a 401; a token refused at its first use is a configuration error, not a retry."""
        with self._lock:
            if self._after_refusal and self._uses <= 1:
                raise ConfigError(
                    f"{self.platform}: Google refused an access token it had just issued (401 UNAUTHENTICATED); "
                    f"check that the refresh token was granted the {SCOPE} scope"
                )
            self._fetch(after_refusal=True)

    def _fetch(self, after_refusal: bool) -> None:
        if self._fetching:  # a 401 from the token endpoint itself must not start another fetch
            raise ConfigError(f"{self.platform}: the OAuth token endpoint refused the token request")
        dry_run, secret = self.http.dry_run, self.credentials
        form = {
            "grant_type": "refresh_token",
            "client_id": DRY_RUN_MASK if dry_run else secret.client_id.get_secret_value(),
            "client_secret": DRY_RUN_MASK if dry_run else secret.client_secret.get_secret_value(),
            "refresh_token": DRY_RUN_MASK if dry_run else secret.refresh_token.get_secret_value(),
        }
        self._fetching = True
        try:
            response = self.http.request(
                "POST",
                self.token_url,
                data=form,
                authenticate=False,
                dry_run_result={"access_token": DRY_RUN_TOKEN, "expires_in": 3599, "token_type": "Bearer"},
            )
        except ConfigError as error:
            body = _json(response_of(error))
            code = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), str) else "refused"
            raise ConfigError(
                f"{self.platform}: Google's OAuth token endpoint refused the credentials ({code}); check "
                "client_id, client_secret and refresh_token"
            ) from None
        finally:
            self._fetching = False
        body = _json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(f"{self.platform}: the OAuth token endpoint answered without an access_token")
        if not dry_run:
            self.http.add_secrets(token)
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 0.0  # unreadable: use the token once, then fetch again
        self._token, self._uses, self._after_refusal = token, 0, after_refusal
        self._expires_at = self.clock() + lifetime - min(EXPIRY_MARGIN_SECONDS, lifetime / 2)
