"""Xandr's API envelope and session login, shared by the connector and its tests.

Every answer wraps its content in `{"response": {...}}`; errors say `error_id` (Digital Platform API: NOAUTH,
SYNTAX, UNAUTH, ...) or `error_code` (upload endpoint: FILESIZE_LIMIT_EXCEEDED, ...), often with HTTP 200.
Sessions: `POST /auth` with `{"auth": {"username", "password"}}` answers a token that goes in `Authorization:
<token>` (no "Bearer"); it lives 2 hours after its last use and 24 hours at most, and the API allows 10
successful logins per 5 minutes, so the token is kept until an answer says NOAUTH (authentication-service).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from crm_activation import Authenticator, ConfigError, FatalError, HttpResponse, PlatformHttp
from crm_activation.sdk.http import token_key

from .settings import AUTH_WINDOW_SECONDS

#: Fresh logins allowed within Xandr's 5-minute auth window before we stop: tokens live 2 h, so needing more
#: means the API refuses fresh tokens, and carrying on would spend the user's 10 logins for everyone.
MAX_LOGINS_PER_WINDOW = 5
#: How long a session token is reused by later runs (kept in the state database): Xandr's tokens live 2 hours
#: after their last use (24 at most), so one stored at login is still good for this long whatever the run did.
SESSION_REUSE_SECONDS = 90 * 60.0


def envelope(response: HttpResponse) -> dict[str, Any]:
    """The `response` object every Xandr API answer wraps its content in ({} when the body is not one)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    inner = body.get("response") if isinstance(body, dict) else None
    return inner if isinstance(inner, dict) else {}


def error_of(response: HttpResponse) -> tuple[str | None, str | None]:
    """`(error_id, error_code)` of an error answer; both None for a successful one.

    The Digital Platform API reports errors as `error_id` (NOAUTH, SYNTAX, UNAUTH, ...) while the upload
    endpoint uses `error_code` (FILESIZE_LIMIT_EXCEEDED, ...), often with HTTP 200 or 400, so both are read.
    """
    body = envelope(response)
    error_id, error_code = body.get("error_id"), body.get("error_code")
    return (str(error_id) if error_id else None), (str(error_code) if error_code else None)


def one_object(body: Mapping[str, Any], singular: str, plural: str) -> dict[str, Any] | None:
    """The object an answer carries as `singular` or as the first of `plural` (Xandr uses both shapes)."""
    value = body.get(singular)
    if isinstance(value, list):  # the Impbus API wraps even a single job in a list
        value = value[0] if value else None
    if isinstance(value, dict):
        return value
    many = body.get(plural)
    if isinstance(many, list) and many and isinstance(many[0], dict):
        return many[0]
    return None


@dataclass
class XandrSessionAuth(Authenticator):
    """`Authorization: <token>` (no "Bearer"), logging in lazily and again whenever the API says NOAUTH."""

    http: PlatformHttp
    username: str
    password: str
    token: str | None = None
    can_refresh = True
    clock: Callable[[], float] = time.monotonic
    _logins: list[float] = field(default_factory=list, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the header: the token, else one an earlier run kept (`TokenCache`), else log in first."""
        if self.token is None:
            with self._lock:
                tokens = self.http.tokens if self._caches() else None
                cached = tokens.get("xandr", self._login_key()) if tokens is not None else None
                if cached is not None:
                    self.http.add_secrets(cached[0])
                    self.token = cached[0]
        if self.token is None:
            self.refresh()
        headers["Authorization"] = cast(str, self.token)

    def _caches(self) -> bool:
        return self.http.tokens is not None and not self.http.dry_run

    def _login_key(self) -> str:
        return token_key("xandr", self.http.base_url, self.username, self.password)

    def refresh(self) -> None:
        """`POST /auth` for a new token; registered for redaction before anything can log it."""
        with self._lock:
            if self.token is not None and self.http.tokens is not None and self._caches():
                self.http.tokens.drop("xandr", self._login_key())  # refused (NOAUTH): expired or revoked
            now = self.clock()
            self._logins = [t for t in self._logins if now - t < AUTH_WINDOW_SECONDS]
            if len(self._logins) >= MAX_LOGINS_PER_WINDOW:
                raise ConfigError(
                    f"xandr: logged in {len(self._logins)} times in {AUTH_WINDOW_SECONDS:g} s and the API keeps "
                    "answering NOAUTH; stopping before the user's login quota (10 per 5 minutes) is spent"
                )
            # A dry run sends nothing, so its outbox never needs the password.
            password = "***" if self.http.dry_run else self.password
            response = self.http.request(
                "POST",
                "/auth",
                json_body={"auth": {"username": self.username, "password": password}},
                authenticate=False,
                dry_run_result={"response": {"status": "OK", "token": "dry-run-token"}},
            )
            token = envelope(response).get("token")
            if not isinstance(token, str) or not token:
                raise FatalError("xandr: POST /auth answered without a token")
            self.http.add_secrets(token)
            self.token = token
            self._logins.append(now)
            if self.http.tokens is not None and self._caches():
                self.http.tokens.put("xandr", self._login_key(), token, SESSION_REUSE_SECONDS)


