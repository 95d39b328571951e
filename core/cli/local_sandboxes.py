"""Starting the local platform sandboxes of installed connectors (for `run --sandbox`, `sandbox`, tests)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..campaign.credentials import load_credentials
from ..campaign.schema import PlatformConfig
from ..sdk.connector import Connector
from ..sdk.errors import ConfigError
from ..sdk.sandbox import FaultPlan, SandboxServer


def start_sandboxes(
    connectors: dict[str, type[Connector]],
    platforms: Iterable[str],
    configs: dict[str, PlatformConfig] | None = None,
    *,
    log_dir: Path | None = None,
    faults: FaultPlan | None = None,
    port_base: int = 0,
) -> dict[str, SandboxServer]:
    """Start one sandbox per platform, accepting the credentials found in the environment.

    Each sandbox is built from the same credentials the connector will load, so a run proves the connector
    presents them as the platform expects. `port_base` 0 picks free ports; otherwise ports count up from it.
    """
    servers: dict[str, SandboxServer] = {}
    try:
        for index, slug in enumerate(platforms):
            cls = connectors.get(slug)
            if cls is None or cls.sandbox is None:
                raise ConfigError(f"platform {slug!r} has no sandbox (is its connector installed?)")
            config = (configs or {}).get(slug) or PlatformConfig()
            credentials = load_credentials(cls.credentials_model, slug, config)
            log_path = (log_dir / f"{slug}.jsonl") if log_dir else None
            if log_dir:
                log_dir.mkdir(parents=True, exist_ok=True)
            port = port_base + index if port_base else 0
            servers[slug] = SandboxServer(cls.sandbox(credentials, faults), port=port, log_path=log_path).start()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers
