"""With several requests of one platform in flight, the platform's limits still hold.

Every request takes its own slot of the rate limit; a throttled request is retried after its wait; and while it
waits, no other request of the platform starts, since a platform that says "slow down" means the account.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from crm_activation import FaultPlan, Member, PlatformHttp, RetryPolicy, SandboxServer
from crm_activation.campaign.loader import load_campaign
from crm_activation.connectors.facebook import FacebookAccount, FacebookConnector, FacebookCredentials, FacebookSandbox
from crm_activation.normalization import sha256_hex
from crm_activation.pipeline.platform_sync import PlatformSync
from crm_activation.sdk.http import RateLimiter
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.summary import PlatformSummary
from crm_activation.state.store import StateStore

from .test_push_concurrency import CAMPAIGN, KEY, stage

TOKEN = "EAAGsandboxTOKEN0123456789abcdef"


class _ThrottlesFirst(BaseHTTPRequestHandler):
    """Answers 429 with `Retry-After: 7` to the first request, 200 to every other."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        first = len(self.seen) == 1
        self.send_response(429 if first else 200)
        if first:
            self.send_header("Retry-After", "7")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def throttling_server() -> Iterator[str]:
    _ThrottlesFirst.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ThrottlesFirst)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_throttled_request_holds_back_the_platforms_other_requests(throttling_server: str) -> None:
    waits: list[tuple[str, float]] = []
    http = PlatformHttp(
        platform="x",
        base_url=throttling_server,
        clock=lambda: 100.0,  # time stands still: every wait is exactly what the policy asks for
        sleep=lambda seconds: waits.append((threading.current_thread().name, seconds)),
    )

    def get(name: str) -> None:
        thread = threading.Thread(target=http.request, args=("GET", f"/{name}"), name=name)
        thread.start()
        thread.join()

    get("throttled")  # 429 with Retry-After: 7, then its retry goes through
    get("other")  # starts after the throttle, within its 7 s: it waits what is left of them

    assert waits == [("throttled", 7.0), ("other", 7.0)]
    assert _ThrottlesFirst.seen == ["/throttled", "/throttled", "/other"]
    assert http.requests_sent == 3


def test_in_flight_requests_each_take_a_rate_slot_and_throttled_ones_are_retried(tmp_path: Path) -> None:
    creds = FacebookCredentials(access_token=SecretStr(TOKEN))
    app = FacebookSandbox(creds, faults=FaultPlan(throttle_rate=0.3, seed=7))
    slots: list[float] = []
    lock = threading.Lock()

    def take_slot(seconds: float) -> None:
        with lock:
            slots.append(seconds)

    rate = 50.0
    limiter = RateLimiter(rate, burst=1, clock=lambda: 0.0, sleep=take_slot)  # a clock that stands still
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN.replace("fb: {enabled: false}", "facebook: {enabled: false}"))
    campaign = load_campaign(tmp_path / "campaign.yaml").campaign
    members = [
        Member(f"c{i:02d}", {"EMAIL": sha256_hex(f"user{i}@example.com"), "COUNTRY": sha256_hex("us")}, "US", {})
        for i in range(40)
    ]
    with SandboxServer(app) as server:
        http = PlatformHttp(
            platform="facebook",
            base_url=server.url,
            classify=FacebookConnector.classify_response,
            policy=RetryPolicy(initial_wait=0.001, max_wait=0.01, max_attempts=20),
            limiter=limiter,
            sleep=lambda seconds: None,
        )
        connector = FacebookConnector(FacebookAccount(ad_account_id="1234567890"), creds, http)
        store = StateStore(tmp_path / "state.sqlite")
        stage(store, members, platform="facebook")
        sync = PlatformSync(
            campaign=campaign, platform="facebook", connector=connector, state=store, run_id="run", dry_run=False,
            hooks=make_plugin_manager(load_entry_points=False).hook, batch_size=5, in_flight=4,
        )
        summary = PlatformSummary()
        sync.run(summary)

    throttled = [r for r in app.requests if r["status"] == 400]
    assert throttled, "the fault plan throttled nothing: pick another seed"
    remote = store.audience("facebook", KEY)
    assert remote is not None
    held = {tuple(sorted(row.items())) for row in app.state()["audiences"][remote.remote_id]["members"]}
    assert held == {tuple(sorted(m.fields.items())) for m in members}
    assert len(store.members("facebook", KEY)) == 40 and summary.stages["awareness"].added == 40
    # every attempt, throttled or not, passed the limiter and got a slot of its own: 1/rate, 2/rate, ...
    assert http.requests_sent == len(app.requests)
    assert sorted(slots) == pytest.approx([i / rate for i in range(1, http.requests_sent)])
