"""Issue 11 §4: tokens are reused across runs until they expire (kept in the state database); a refused one
is replaced and forgotten. Xandr rations logins (10 per 5 minutes): reruns after a crash used to stall on it."""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from pydantic import SecretStr

from crm_activation import PlatformHttp, RetryPolicy, SandboxApp, SandboxResponse, SandboxServer
from crm_activation.connectors.xandr.api import SESSION_REUSE_SECONDS
from crm_activation.connectors.xandr.connector import XandrConnector
from crm_activation.connectors.xandr.sandbox import XandrSandbox
from crm_activation.connectors.xandr.settings import XandrAccount, XandrCredentials
from crm_activation.sdk.http import TokenCache
from crm_activation.sdk.oauth import RefreshTokenAuth
from crm_activation.state.store import StateStore

from .test_http import TokenCredentials

FAST = RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=30.0)


class OAuthApp(SandboxApp):
    """A token endpoint handing out numbered tokens, and `/me` accepting only tokens not revoked."""

    platform = "oauth"

    def __init__(self) -> None:
        super().__init__(TokenCredentials(token=SecretStr("unused")))
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self._numbers = itertools.count(1)

    def handle(self, request: Any) -> SandboxResponse:
        if request.path == "/token":
            token = f"access-{next(self._numbers)}-0123456789"
            self.issued.append(token)
            self.valid.add(token)
            return SandboxResponse(200, {"access_token": token, "expires_in": 3600})
        if (request.header("authorization") or "").removeprefix("Bearer ") in self.valid:
            return SandboxResponse(200, {"ok": True})
        return SandboxResponse(401, {"error": "invalid_token"})

    def state(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def state(tmp_path):
    store = StateStore(tmp_path / "state.sqlite")
    yield store
    store.close()


def oauth_run(server: SandboxServer, tokens: TokenCache) -> PlatformHttp:
    """One run's client: a new process has nothing in memory, only what the state database kept."""
    http = PlatformHttp(platform="dv360", base_url=server.url, policy=FAST, sleep=lambda s: None, tokens=tokens)
    http.auth = RefreshTokenAuth(http, "/token", "client", "client-secret", "refresh-token", platform="dv360")
    http.request("GET", "/me")
    return http


def test_an_oauth_access_token_is_reused_by_the_next_run_until_refused_or_expired(state) -> None:
    app = OAuthApp()
    now = [time.time()]
    tokens = TokenCache(clock=lambda: now[0])
    tokens.bind(state)
    with SandboxServer(app) as server:
        oauth_run(server, tokens)
        oauth_run(server, tokens)
        assert len(app.issued) == 1  # the second run reused the first run's token
        stored = state.db.execute("SELECT platform, login, token FROM tokens").fetchall()
        assert [(p, t) for p, _, t in stored] == [("dv360", app.issued[0])]
        assert "client" not in stored[0][1] and "refresh" not in stored[0][1]  # the key is a digest

        app.valid.clear()  # revoked: the 401 replaces it, and the replacement is what the next run reuses
        oauth_run(server, tokens)
        oauth_run(server, tokens)
        assert len(app.issued) == 2
        assert state.load_token("dv360", stored[0][1])[0] == app.issued[1]

        now[0] += 3600  # past its lifetime (less the refresh margin): fetched anew
        oauth_run(server, tokens)
        assert len(app.issued) == 3

        unbound = TokenCache()  # a dry run, or a cache no run bound to the state: nothing reused or kept
        oauth_run(server, unbound)
        assert len(app.issued) == 4


XANDR = XandrCredentials(username=SecretStr("api-user"), password=SecretStr("s3cret-Passw0rd-xyz"))
ACCOUNT = XandrAccount(
    member_id=958, poll_interval_seconds=5, min_seconds_between_uploads=0, new_segment_wait_seconds=0
)


def xandr_run(server: SandboxServer, tokens: TokenCache) -> XandrConnector:
    http = PlatformHttp(
        platform="xandr", base_url=server.url, classify=XandrConnector.classify_response, policy=FAST,
        sleep=lambda s: None, tokens=tokens,
    )
    connector = XandrConnector(ACCOUNT, XANDR, http)
    connector.check()
    return connector


def test_a_xandr_rerun_reuses_the_session_token_instead_of_logging_in_again(state) -> None:
    app = XandrSandbox(XANDR)
    now = [time.time()]
    tokens = TokenCache(clock=lambda: now[0])
    tokens.bind(state)

    def logins() -> int:
        return sum(1 for r in app.requests if r["method"] == "POST" and r["path"] == "/auth")

    with SandboxServer(app) as server:
        first = xandr_run(server, tokens)
        for _ in range(3):  # reruns after crashes: before, each logged in again
            xandr_run(server, tokens)
        assert logins() == 1

        app.expire_tokens()  # NOAUTH: the stored token is replaced by a fresh login
        replaced = xandr_run(server, tokens)
        assert logins() == 2 and replaced.http.auth.token != first.http.auth.token
        xandr_run(server, tokens)
        assert logins() == 2

        now[0] += SESSION_REUSE_SECONDS + 1  # too old to trust: log in
        xandr_run(server, tokens)
        assert logins() == 3
