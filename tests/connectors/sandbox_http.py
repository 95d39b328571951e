"""The `PlatformHttp` a connector's unit tests point at its sandbox: fast retries, no real sleeping."""

from __future__ import annotations

from typing import Any

from crm_activation import Connector, PlatformHttp, RetryPolicy, SandboxServer

#: The read timeout of a test that injects slow responses itself: well under every `FaultPlan.timeout_seconds` the
#: tests use (0.5 s and up), so an injected timeout always trips it.
FAULT_READ_TIMEOUT = 0.3


def sandbox_http(server: SandboxServer, connector: type[Connector], *, read_timeout: float = 30.0,
                 **overrides: Any) -> PlatformHttp:
    """An HTTP client for `connector`'s platform at `server`, with its classifier; `overrides` replace settings.

    The default read timeout is generous: a 10,000-member batch on a machine busy with other work may take
    seconds, and a test must not fail for a delay it did not inject. Tests that inject timeouts pass
    `read_timeout=FAULT_READ_TIMEOUT`.
    """
    settings: dict[str, Any] = {
        "platform": connector.platform,
        "base_url": server.url,
        "classify": connector.classify_response,
        "policy": RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=read_timeout),
        "sleep": lambda s: None,
    }
    return PlatformHttp(**(settings | overrides))
