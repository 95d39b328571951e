"""The `PlatformHttp` a connector's unit tests point at its sandbox: fast retries, no real sleeping."""

from __future__ import annotations

from typing import Any

from crm_activation import Connector, PlatformHttp, RetryPolicy, SandboxServer


def sandbox_http(server: SandboxServer, connector: type[Connector], *, read_timeout: float = 0.5,
                 **overrides: Any) -> PlatformHttp:
    """An HTTP client for `connector`'s platform at `server`, with its classifier; `overrides` replace settings."""
    settings: dict[str, Any] = {
        "platform": connector.platform,
        "base_url": server.url,
        "classify": connector.classify_response,
        "policy": RetryPolicy(initial_wait=0.001, max_wait=0.01, read_timeout=read_timeout),
        "sleep": lambda s: None,
    }
    return PlatformHttp(**(settings | overrides))
