"""The shared HTTP policy against a real local server."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from crm_activation import (
    Action,
    ConfigError,
    Credentials,
    FatalError,
    HeaderToken,
    PlatformHttp,
    RetryableError,
    RetryPolicy,
    SandboxApp,
    SandboxResponse,
    SandboxServer,
)
from crm_activation.sdk.http import Authenticator, Outbox, RateLimiter, retry_after_seconds
from crm_activation.sdk.redaction import MASK, Redactor


class TokenCredentials(Credentials):
    token: SecretStr


class ScriptedApp(SandboxApp):
    """Answers from a script of (status, body, headers), then 200; checks the bearer token."""

    platform = "scripted"

    def __init__(self, credentials, script=()):
        super().__init__(credentials)
        self.script = list(script)
        self.calls = 0

    def handle(self, request):
        self.calls += 1
        if request.header("authorization") != f"Bearer {self.credentials.token.get_secret_value()}":
            return SandboxResponse(401, {"error": "bad token"})
        if self.script:
            status, body, headers = self.script.pop(0)
            return SandboxResponse(status, body, headers)
        return SandboxResponse(200, {"ok": True, "n": self.calls})

    def state(self):
        return {"calls": self.calls}


TOKEN = "tok-0123456789abcdef"
FAST = RetryPolicy(initial_wait=0.001, max_wait=0.01, max_attempts=5, read_timeout=0.5)


@pytest.fixture
def serve():
    servers = []

    def start(script=(), token=TOKEN):
        app = ScriptedApp(TokenCredentials(token=SecretStr(token)), script)
        server = SandboxServer(app).start()
        servers.append(server)
        return app, server

    yield start
    for server in servers:
        server.stop()


def client(server, sleeps=None, **kwargs):
    return PlatformHttp(
        platform="scripted",
        base_url=server.url,
        auth=kwargs.pop("auth", HeaderToken(TOKEN)),
        policy=kwargs.pop("policy", FAST),
        redactor=Redactor([TOKEN]),
        sleep=(sleeps.append if sleeps is not None else lambda s: None),
        **kwargs,
    )


def test_retries_429_honouring_retry_after_then_succeeds(serve):
    app, server = serve([(429, {"e": 1}, {"Retry-After": "7"}), (503, {}, {}), (500, {}, {})])
    sleeps = []
    policy = FAST.model_copy(update={"max_wait": 30})
    response = client(server, sleeps, policy=policy).request("GET", "/x")
    assert response.json()["n"] == 4 and app.calls == 4
    assert sleeps[0] == 7  # the platform's hint, not our backoff
    assert all(s <= FAST.initial_wait * 2**3 for s in sleeps[1:])  # exponential, jittered


def test_gives_up_after_max_attempts(serve):
    app, server = serve([(503, {}, {})] * 10)
    with pytest.raises(RetryableError):
        client(server).request("GET", "/x")
    assert app.calls == FAST.max_attempts


def test_bad_credentials_are_a_config_error_without_retry_or_leak(serve):
    app, server = serve(token="the-right-token-xyz")
    with pytest.raises(ConfigError) as caught:
        client(server).request("GET", "/x", params={"access_token": TOKEN})
    assert app.calls == 1
    assert TOKEN not in str(caught.value) and MASK in str(caught.value)


def test_other_4xx_are_fatal(serve):
    _, server = serve([(400, {"error": "malformed"}, {})])
    with pytest.raises(FatalError, match="malformed"):
        client(server).request("POST", "/x", json_body={"a": 1})


def test_connector_classifier_can_turn_a_400_into_a_retry(serve):
    app, server = serve([(400, {"error": {"code": 80003}}, {})])

    def classify(response):
        if response.status == 400 and response.json()["error"]["code"] == 80003:
            return Action.RATE_LIMITED
        return None

    assert client(server, classify=classify).request("GET", "/x").status == 200
    assert app.calls == 2


def test_refreshing_authenticator_gets_a_new_token_once(serve):
    _app, server = serve()

    class Refreshing(Authenticator):
        can_refresh = True

        def __init__(self):
            self.token = "expired-token-000"
            self.refreshes = 0

        def apply(self, headers, params):
            headers["Authorization"] = f"Bearer {self.token}"

        def refresh(self):
            self.refreshes += 1
            self.token = TOKEN

    auth = Refreshing()
    assert client(server, auth=auth).request("GET", "/x").status == 200
    assert auth.refreshes == 1


def test_timeouts_are_retried(serve):
    from crm_activation import FaultPlan

    app, server = serve()
    app.set_faults(FaultPlan(timeout_rate=1.0, timeout_seconds=1.0))
    http = client(server, policy=FAST.model_copy(update={"read_timeout": 0.2, "max_attempts": 2}))
    with pytest.raises(RetryableError, match="Timeout"):
        http.request("GET", "/x")
    assert app.calls == 2  # the sandbox applied both: a timeout does not mean nothing happened


def test_a_request_that_must_not_be_sent_twice_is_not_retried_once_it_may_have_been_applied(serve):
    from crm_activation import FaultPlan, OutcomeUnknownError

    app, server = serve()
    app.set_faults(FaultPlan(timeout_requests=frozenset({1}), timeout_seconds=1.0))
    http = client(server, policy=FAST.model_copy(update={"read_timeout": 0.2}))
    with pytest.raises(OutcomeUnknownError, match="may have been applied"):
        http.request("POST", "/audiences", json_body={"name": "a"}, idempotent=False)
    assert app.calls == 1
    for status in (503, 500):  # a 5xx may have been applied as well
        app, server = serve([(status, {"error": "busy"}, {})])
        with pytest.raises(OutcomeUnknownError):
            client(server).request("POST", "/audiences", json_body={"name": "a"}, idempotent=False)
        assert app.calls == 1


def test_a_request_that_must_not_be_sent_twice_is_retried_when_it_was_refused_unapplied(serve):
    app, server = serve([(429, {"error": "slow down"}, {"Retry-After": "0"})])
    response = client(server).request("POST", "/audiences", json_body={"name": "a"}, idempotent=False)
    assert response.json()["n"] == 2 and app.calls == 2


def test_dry_run_records_instead_of_sending(serve, tmp_path):
    app, server = serve()
    http = client(server, outbox=Outbox(tmp_path, Redactor([TOKEN])))
    response = http.request("POST", "/audiences", params={"access_token": TOKEN}, json_body={"name": "a"},
                            dry_run_result={"id": "42"})
    assert response.json() == {"id": "42"} and app.calls == 0
    line = json.loads((tmp_path / "scripted.jsonl").read_text())
    assert line["method"] == "POST" and line["body"] == {"name": "a"}
    assert line["headers"]["Authorization"] == MASK
    assert TOKEN not in json.dumps(line)


def test_retry_after_parsing():
    assert retry_after_seconds({"Retry-After": "3"}) == 3
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
    assert retry_after_seconds({"Retry-After": "soon"}) is None


def test_rate_limiter_spaces_requests_with_an_injected_clock():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(rate=10, burst=2, clock=lambda: now[0], sleep=sleep)
    for _ in range(6):
        limiter.acquire()
    assert sum(slept) == pytest.approx(0.4)  # 2 free, then 4 at 0.1 s each
