"""A sandbox's OAuth 2.0 token endpoint for the refresh-token grant (RFC 6749 §6), and the tokens it issued.

Google (DV360, Data Manager), LinkedIn and Login with Amazon all trade a long-lived refresh token for short-lived
bearer tokens at a form-encoded endpoint, and answer refusals in RFC 6749's `{"error", "error_description"}`
shape. One emulation serves them all: a sandbox sets `self.oauth = RefreshTokenEndpoint.for_credentials(...)`
and `SandboxApp` then serves `POST <path>`, masks every issued token in its request log and forgets them on
`reset()`; the sandbox only answers refused API tokens in its own error shape (`oauth.problem(token)`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs

from .oauth import refresh_grant
from .sandbox_messages import SandboxRequest, SandboxResponse
from .types import Credentials


def _same(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison, so the sandbox does not teach timing attacks by example."""
    return given is not None and expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def oauth_refusal(status: int, error: str, description: str) -> SandboxResponse:
    """An RFC 6749 §5.2 error answer."""
    return SandboxResponse(status, {"error": error, "error_description": description})


def bearer_token(request: SandboxRequest) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None without one."""
    scheme, _, token = (request.header("authorization") or "").partition(" ")
    return token if scheme == "Bearer" and token else None


@dataclass(eq=False)
class RefreshTokenEndpoint:
    """The token endpoint: checks the form, the client and the refresh token, and issues expiring tokens.

    Attributes:
        path: where the endpoint is served (`/token`, `/oauth/v2/accessToken`, `/auth/o2/token`).
        client_id, client_secret, refresh_token: the grant it honours; a None one is never matched.
        lifetime: `expires_in` of issued tokens in seconds; small values let tests see tokens expire.
        token_prefix: the start of each issued token, shaped like the platform's (`ya29.`, `Atza|`).
        answer: extra fields of a successful answer (`scope`, a `token_type` spelled the platform's way).
        clock: seconds for expiry (monotonic by default); tests substitute one they can move.
        revoked: the user revoked the app: every token is refused and the grant too.
        issued: every token handed out, in order.
    """

    path: str
    client_id: str | None = field(repr=False)
    client_secret: str | None = field(repr=False)
    refresh_token: str | None = field(repr=False)
    lifetime: float = 3600.0
    token_prefix: str = "sbx-"
    answer: dict[str, Any] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic
    revoked: bool = False
    issued: list[str] = field(default_factory=list, init=False, repr=False)
    _expiry: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def for_credentials(cls, path: str, credentials: Credentials, **settings: Any) -> Self:
        """An endpoint honouring the `client_id`, `client_secret` and `refresh_token` fields of `credentials`."""
        return cls(path, *refresh_grant(credentials), **settings)

    def grant(self, request: SandboxRequest) -> SandboxResponse:
        """Serve one `grant_type=refresh_token` request (form-encoded, client id and secret in the body)."""
        if "x-www-form-urlencoded" not in (request.header("content-type") or ""):
            return oauth_refusal(400, "invalid_request", "Content-Type must be application/x-www-form-urlencoded")
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True).items()}
        if form.get("grant_type") != "refresh_token":
            return oauth_refusal(400, "unsupported_grant_type", "Only grant_type=refresh_token is supported")
        if not (_same(form.get("client_id"), self.client_id) and _same(form.get("client_secret"), self.client_secret)):
            return oauth_refusal(401, "invalid_client", "Client authentication failed")
        if self.revoked or not _same(form.get("refresh_token"), self.refresh_token):
            return oauth_refusal(400, "invalid_grant", "The refresh token is invalid, expired or revoked")
        token = self.token_prefix + secrets.token_urlsafe(24)
        self.accept(token)
        self.issued.append(token)
        expires_in = int(self.lifetime) if float(self.lifetime).is_integer() else self.lifetime
        body = {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
        return SandboxResponse(200, body | self.answer)

    def accept(self, token: str) -> None:
        """Make `token` live for `lifetime` from now (a token the platform issued before the sandbox started)."""
        self._expiry[token] = self.clock() + self.lifetime

    def problem(self, token: str | None) -> str | None:
        """Why `token` is refused: "missing", "unknown", "revoked" or "expired"; None when it is live."""
        if not token:
            return "missing"
        expires = self._expiry.get(token)
        if expires is None:
            return "unknown"
        if self.revoked:
            return "revoked"
        return "expired" if self.clock() >= expires else None

    def expire(self) -> None:
        """Let every token run out now, as if its lifetime had passed."""
        self._expiry = dict.fromkeys(self._expiry, float("-inf"))

    def revoke(self) -> None:
        """The user revoked the app: tokens are refused as revoked and the refresh grant as invalid."""
        self.revoked = True

    def forget(self) -> None:
        """Forget every token and the revocation (what `SandboxApp.reset` calls)."""
        self._expiry.clear()
        self.issued.clear()
        self.revoked = False
