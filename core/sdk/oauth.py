"""OAuth 2.0 refresh-token authentication (RFC 6749 §6), shared by every connector that needs it.

Google (DV360, Data Manager), LinkedIn and Amazon's Login with Amazon all hand out short-lived bearer tokens
for a long-lived refresh token. One implementation here keeps the subtle parts in one place: refreshing
shortly before expiry, refreshing once on 401, refusing to loop when the token endpoint itself says no, never
sending the secrets in a dry run, and registering every issued token for redaction. Connectors configure it
(or extend `apply`); none repeats the exchange. Sandboxes emulate the endpoint with `sandbox_oauth.py`.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from pydantic import SecretStr

from .errors import ConfigError, RetryableError
from .http import Authenticator, HttpResponse, PlatformHttp, token_key
from .types import Credentials

#: Refresh this long before `expires_in` runs out (at most half the lifetime), so a request never leaves
#: with a token that expires on the way.
EXPIRY_MARGIN_SECONDS = 60.0
#: Written in place of the client secret and refresh token in a dry run's recorded token request, so the
#: secrets never reach the outbox at all, not even for the redactor to catch.
DRY_RUN_MASK = "***"
#: The access token a dry run pretends to get; no platform accepts it.
DRY_RUN_TOKEN = "dry-run-access-token"


def refresh_grant(credentials: Credentials) -> tuple[str | None, str | None, str | None]:
    """The `client_id`, `client_secret` and `refresh_token` of a credentials model, as plain text.

    The field names every OAuth platform here uses, `SecretStr` or `str`; a missing or empty one is None, and
    then there is no refresh grant. Client and sandbox read credentials through this one function.
    """

    def plain(name: str) -> str | None:
        value = getattr(credentials, name, None)
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        return text if isinstance(text, str) and text else None

    return plain("client_id"), plain("client_secret"), plain("refresh_token")


def oauth_error(response: HttpResponse | None) -> str | None:
    """The OAuth 2.0 error code of a token-endpoint error (`{"error": "invalid_grant", ...}`), or None."""
    if response is None:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, str) else None


@dataclass(eq=False)
class RefreshTokenAuth(Authenticator):
    """`Authorization: Bearer` with access tokens obtained from a refresh token.

    A token is fetched before the first request, again shortly before `expires_in` runs out, and when the API
    answers 401. The token request goes through the connector's own `PlatformHttp` (unauthenticated), so it
    gets the same timeouts, retries and redaction as every call; in a dry run it is recorded in the outbox with
    the secrets masked, and a placeholder token is used. Platforms differ in a few settings, not in the flow:
    LinkedIn starts from an access token a person granted (`token`) and may lack the refresh grant (then a
    401 is a configuration error); Login with Amazon adds a header (a subclass extending `apply`).

    Attributes:
        http: the platform client the token requests go through.
        token_url: the token endpoint (or the sandbox's).
        client_id, client_secret, refresh_token: the refresh grant, as plain strings; without all three the
            token cannot be refreshed.
        platform: the slug used in error messages.
        hint: what to check when freshly issued tokens are refused (usually the scope the grant needs).
        token: the current access token. Give the one to start with when the platform issued one (LinkedIn);
            its lifetime is unknown, so it is used until refused. Without one, one is fetched first.
        new_token_refusals: how many freshly fetched tokens in a row may be refused at their first use and still
            be replaced; the next refusal is a configuration error (Login with Amazon tolerates one).
        dry_run_exchange: a dry run records the token request (secrets masked); False leaves it out of the
            outbox entirely and sends the placeholder token (Amazon's outbox shows only API calls).
        clock: monotonic seconds; tests substitute one they can move.
    """

    http: PlatformHttp = field(repr=False)
    token_url: str
    client_id: str | None = field(default=None, repr=False)
    client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    platform: str = ""
    hint: str = "check the scopes granted to the refresh token"
    token: str | None = field(default=None, repr=False)
    new_token_refusals: int = 0
    dry_run_exchange: bool = True
    clock: Callable[[], float] = time.monotonic

    _expires_at: float = field(default=math.inf, init=False, repr=False)
    _uses: int = field(default=0, init=False, repr=False)
    _after_refusal: bool = field(default=False, init=False, repr=False)
    _refused_new: int = field(default=0, init=False, repr=False)
    _fetching: bool = field(default=False, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.can_refresh = bool(self.client_id and self.client_secret and self.refresh_token)

    @classmethod
    def for_credentials(
        cls, http: PlatformHttp, token_url: str, credentials: Credentials, **settings: Any
    ) -> Self:
        """An authenticator for the `client_id`, `client_secret` and `refresh_token` fields of `credentials`."""
        return cls(http, token_url, *refresh_grant(credentials), **settings)

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the bearer token (see `access_token`)."""
        headers["Authorization"] = f"Bearer {self.access_token()}"

    def access_token(self) -> str:
        """The token for the next request (a use), fetched first when there is none or it is about to expire.

        A token never used is sent even when its lifetime is over: replacing it unused would hide a token
        endpoint that issues dead tokens behind an endless series of fetches.
        """
        with self._lock:
            if self.token is None and self.http.dry_run and not self.dry_run_exchange:
                return DRY_RUN_TOKEN
            if self.token is None:
                self._reuse()
            if self.token is None or (self._uses > 0 and self.clock() >= self._expires_at):
                self._fetch(after_refusal=False)
            self._uses += 1
            assert self.token is not None
            return self.token

    def refresh(self) -> None:
        """Get a new token after a 401; a fresh token refused at its first use is a configuration error.

        Unless `new_token_refusals` allows a few: retrying would only hide a grant that lacks a scope or an app
        without API access behind more token requests.
        """
        with self._lock:
            if self._after_refusal and self._uses <= 1:
                self._refused_new += 1
                if self._refused_new > self.new_token_refusals:
                    raise ConfigError(
                        f"{self.platform}: the API refused an access token just issued (401); {self.hint}"
                    )
            else:
                self._refused_new = 0
            if self.http.tokens is not None and self.can_refresh and not self.http.dry_run:
                self.http.tokens.drop(self.platform, self._login_key())  # refused: never reuse it again
            self._fetch(after_refusal=True)

    def _login_key(self) -> str:
        return token_key(self.platform, self.token_url, self.client_id or "", self.refresh_token or "")

    def _reuse(self) -> None:
        """Take the access token an earlier run kept (`TokenCache`) while it has not expired."""
        if self.http.tokens is None or self.http.dry_run or not self.can_refresh:
            return
        cached = self.http.tokens.get(self.platform, self._login_key())
        if cached is not None:
            self.http.add_secrets(cached[0])
            self.token, self._uses, self._after_refusal = cached[0], 0, False
            self._expires_at = self.clock() + cached[1]

    def _fetch(self, after_refusal: bool) -> None:
        if self._fetching:  # a 401 from the token endpoint itself must not start another fetch
            raise ConfigError(f"{self.platform}: the OAuth token endpoint refused the token request")
        if not self.can_refresh:
            raise ConfigError(f"{self.platform}: the access token was refused and no refresh grant is configured")
        dry_run = self.http.dry_run
        form = {
            "grant_type": "refresh_token",
            "client_id": DRY_RUN_MASK if dry_run else self.client_id,
            "client_secret": DRY_RUN_MASK if dry_run else self.client_secret,
            "refresh_token": DRY_RUN_MASK if dry_run else self.refresh_token,
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
            code = oauth_error(getattr(error, "response", None)) or "refused"
            raise ConfigError(
                f"{self.platform}: the OAuth token endpoint refused the credentials ({code}); check "
                "client_id, client_secret and refresh_token"
            ) from None
        except RetryableError as error:
            # Already retried under the policy and marked given up (`http.gave_up`), so the request that needed
            # the token does not retry it all again. It stays a RetryableError: a FatalError would read to the
            # connector as the API refusing the call ("advertiser could not be read") when nothing answered.
            error.args = (f"{error} (the OAuth token request)",)
            raise
        finally:
            self._fetching = False
        try:
            body = response.json()
        except ValueError:
            body = {}
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ConfigError(f"{self.platform}: the OAuth token endpoint answered without an access_token")
        if not dry_run:
            self.http.add_secrets(token)
        try:
            lifetime = float(body.get("expires_in", 3599))
        except (TypeError, ValueError):
            lifetime = 0.0  # unreadable: use the token once, then fetch again
        self.token, self._uses, self._after_refusal = token, 0, after_refusal
        usable = lifetime - min(EXPIRY_MARGIN_SECONDS, lifetime / 2)
        self._expires_at = self.clock() + usable
        if self.http.tokens is not None and not dry_run:
            self.http.tokens.put(self.platform, self._login_key(), token, usable)
