"""LinkedIn's wire details that are not the connector's business logic: OAuth refresh and error bodies.

LinkedIn's API errors are `{"status", "serviceErrorCode", "code"?, "message"}` (LinkedIn "Error Handling");
its OAuth endpoint answers RFC 6749 errors instead (`{"error": "invalid_grant", "error_description"}`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from crm_activation import Authenticator, ConfigError, FatalError, HttpResponse, PlatformHttp, response_of


def json_object(response: HttpResponse) -> dict[str, Any]:
    """The body of a LinkedIn answer as a JSON object, or {} when it is not one (HTML from a proxy, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_summary(response: HttpResponse) -> str:
    """A short, value-free description of a LinkedIn error: "HTTP 403 ACCESS_DENIED: Not enough permissions"."""
    body = json_object(response)
    code = body.get("code") or body.get("error") or body.get("serviceErrorCode") or ""
    message = body.get("message") or body.get("error_description") or ""
    return " ".join(part for part in (f"HTTP {response.status}", f"{code}:" if code else "", str(message)) if part)




@dataclass(eq=False)
class LinkedInOAuth(Authenticator):
    """`Authorization: Bearer <token>`, refreshed through LinkedIn's OAuth endpoint when a 401 says so.

    `PlatformHttp` calls `refresh` when LinkedIn answers 401 (expired, revoked or unknown token) and
    `can_refresh` is true; the request is then retried with the new token. Without a refresh grant a 401 is a
    configuration error: a person has to authorize the app again.

    Attributes:
        token: the current access token.
        token_url: LinkedIn's token endpoint (or the sandbox's).
        http: the platform's client, so the refresh call gets the same timeouts, retries and redaction.
        refresh_token, client_id, client_secret: the refresh grant, all three or none.
    """

    token: str = field(repr=False)
    token_url: str
    http: PlatformHttp = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.can_refresh = bool(self.refresh_token and self.client_id and self.client_secret)
        # Reentrant: a refresh runs inside the request that got the 401, on the same thread.
        self._lock = threading.RLock()
        self._refreshing = False

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        """Set the bearer header."""
        headers["Authorization"] = f"Bearer {self.token}"

    def refresh(self) -> None:
        """Trade the refresh token for a new access token (`grant_type=refresh_token`, form-encoded).

        Raises:
            ConfigError: there is no refresh grant, or LinkedIn refused it (`invalid_grant`: the refresh token
                expired after a year or the member revoked the app); only a new authorization helps.
        """
        if not self.can_refresh:
            raise ConfigError("linkedin: the access token was refused and no refresh token is configured")
        with self._lock:
            if self._refreshing:  # the token endpoint itself asked for authentication: never loop
                raise ConfigError("linkedin: the OAuth token endpoint refused the refresh request")
            self._refreshing = True
            try:
                response = self.http.request(
                    "POST",
                    self.token_url,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": self.refresh_token,
                        "client_id": self.client_id,
                        "client_secret": self.client_secret,
                    },
                    authenticate=False,
                )
            except (ConfigError, FatalError) as error:
                reason = error_summary(response_of(error))
                raise ConfigError(
                    f"linkedin: refreshing the access token failed ({reason}); authorize the app again and set "
                    "new LinkedIn credentials"
                ) from None
            finally:
                self._refreshing = False
            token = json_object(response).get("access_token")
            if not isinstance(token, str) or not token:
                raise ConfigError("linkedin: the OAuth token endpoint answered without an access_token")
            self.http.add_secrets(token)
            self.token = token
