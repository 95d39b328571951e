"""Issue 11 §4: a platform that does not answer fails the run quickly, with how many attempts over how long.

No nested retries (a token request's attempts never multiply with the request's), one deadline per request
(token request included), and a refused connection or unknown host given up after a few quick attempts.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import pytest
from pydantic import SecretStr

from crm_activation import PlatformHttp, RetryableError, RetryPolicy, SandboxApp, SandboxResponse, SandboxServer
from crm_activation.sdk.errors import RunInterrupted
from crm_activation.sdk.http import Authenticator, CannotConnectError, gave_up
from crm_activation.sdk.oauth import RefreshTokenAuth

from .test_http import TokenCredentials

POLICY = RetryPolicy(max_attempts=8, initial_wait=0.5, max_wait=60.0, read_timeout=2.0)


class FakeClock:
    """Monotonic seconds that only the injected sleep moves: the deadline is tested without waiting."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Down(SandboxApp):
    """Every answer a 503 (an overloaded platform), or a token for `/token` when `token_ok`."""

    platform = "down"

    def __init__(self, token_ok: bool = False) -> None:
        super().__init__(TokenCredentials(token=SecretStr("t")))
        self.token_ok = token_ok
        self.paths: list[str] = []

    def handle(self, request: Any) -> SandboxResponse:
        self.paths.append(request.path)
        if request.path == "/token" and self.token_ok:
            return SandboxResponse(200, {"access_token": "fresh-token", "expires_in": 3600})
        return SandboxResponse(503, {"error": "unavailable"})

    def state(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def down():
    app = Down()
    with SandboxServer(app) as server:
        yield app, server


def closed_port_url() -> str:
    """A local address nothing listens on: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def http_for(base_url: str, clock: FakeClock, policy: RetryPolicy = POLICY, **kwargs: Any) -> PlatformHttp:
    return PlatformHttp(
        platform="facebook", base_url=base_url, policy=policy, sleep=clock.sleep, clock=clock, **kwargs
    )


class NestedToken(Authenticator):
    """Fetches its token with a request of its own, as Xandr's login and the OAuth refresh do."""

    can_refresh = True

    def __init__(self) -> None:
        self.http: PlatformHttp | None = None

    def apply(self, headers: dict[str, str], params: dict[str, Any]) -> None:
        assert self.http is not None
        self.http.request("POST", "/token", authenticate=False)
        headers["Authorization"] = "token"


def test_a_failing_token_request_is_not_retried_again_by_the_request_that_needed_it(down):
    app, server = down
    clock = FakeClock()
    auth = NestedToken()
    http = http_for(server.url, clock, auth=auth)
    auth.http = http
    with pytest.raises(RetryableError) as caught:
        http.request("GET", "/me")
    # Before: every one of the 8 attempts of GET /me ran 8 token attempts (64 requests; an offline Xandr run took
    # 305 s to fail). Now the token request's 8 attempts are all there is.
    assert app.paths == ["/token"] * POLICY.max_attempts
    assert gave_up(caught.value)
    assert str(caught.value).startswith(f"facebook: gave up after {POLICY.max_attempts} attempts over ")


def test_the_oauth_token_request_shares_the_deadline_and_is_not_multiplied(down):
    app, server = down
    clock = FakeClock()
    http = http_for(server.url, clock)
    http.auth = RefreshTokenAuth(http, "/token", "id", "secret", "refresh", platform="facebook", clock=clock)
    with pytest.raises(RetryableError, match=r"gave up after 8 attempts .*\(the OAuth token request\)"):
        http.request("GET", "/me")
    assert app.paths == ["/token"] * 8


def test_one_deadline_bounds_the_retries_and_the_error_says_attempts_and_time(down):
    app, server = down
    clock = FakeClock()
    policy = POLICY.model_copy(update={"max_attempts": 100, "deadline_seconds": 30.0})
    http = http_for(server.url, clock, policy=policy, rng=lambda: 1.0)  # no jitter: waits 0.5, 1, 2, 4, 8, ...
    with pytest.raises(RetryableError) as caught:
        http.request("GET", "/me")
    assert clock.now - 1000.0 <= 30.0  # never slept past the deadline
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0]  # the next wait (16 s) would have ended past it
    assert len(app.paths) == 6
    assert str(caught.value).startswith("facebook: gave up after 6 attempts over 16 s: GET ")
    assert "HTTP 503" in str(caught.value)


def test_a_refused_connection_is_given_up_after_a_few_quick_attempts():
    clock = FakeClock()
    http = http_for(closed_port_url(), clock)
    with pytest.raises(CannotConnectError) as caught:
        http.request("GET", "/v25.0/act_1")
    assert http.requests_sent == POLICY.connect_attempts == 3
    assert all(wait <= POLICY.connect_max_wait for wait in clock.sleeps)
    assert sum(clock.sleeps) <= 2 * POLICY.connect_max_wait
    message = str(caught.value)
    assert message.startswith("facebook: gave up after 3 attempts over ") and message.endswith("connection refused")


def test_an_unknown_host_is_given_up_after_a_few_quick_attempts():
    clock = FakeClock()
    http = http_for("http://no-such-host.invalid", clock)
    with pytest.raises(CannotConnectError, match="host name not found"):
        http.request("GET", "/x")
    assert http.requests_sent == 3


def test_an_interrupted_run_starts_no_request_and_stops_waiting(down):
    app, server = down
    clock = FakeClock()
    cancel = threading.Event()
    http = http_for(server.url, clock, cancel=cancel)
    cancel.set()
    with pytest.raises(RunInterrupted):
        http.request("GET", "/me")
    assert app.paths == []

    cancel.clear()
    http.sleep = lambda seconds: cancel.set()  # Ctrl-C arrives during the first wait
    with pytest.raises(RunInterrupted):
        http.request("GET", "/me")
    assert app.paths == ["/me"]  # the attempt before the wait, and none after it


def test_an_interrupted_run_ends_a_real_retry_wait_at_once(down):
    app, server = down
    cancel = threading.Event()
    policy = POLICY.model_copy(update={"initial_wait": 3600.0, "max_wait": 3600.0, "deadline_seconds": 7200.0})
    http = PlatformHttp(platform="facebook", base_url=server.url, policy=policy, rng=lambda: 1.0, cancel=cancel)
    threading.Timer(0.05, cancel.set).start()  # without the event the wait below would last an hour
    with pytest.raises(RunInterrupted):
        http.request("GET", "/me")
    assert app.paths == ["/me"]
