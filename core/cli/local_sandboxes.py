"""Starting the local platform sandboxes of installed connectors (for `run --sandbox`, `sandbox`, tests)."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from ..campaign.credentials import default_env_name, load_credentials
from ..campaign.schema import PlatformConfig
from ..sdk.connector import Connector
from ..sdk.errors import ConfigError
from ..sdk.sandbox import FaultPlan, SandboxServer

#: The e-mail channel's keys for sandbox runs (the SMTP relay itself is started by `run --sandbox`).
EMAIL_TEST_VARIABLES = {
    "CRM_ACTIVATION_EMAIL_SMTP_HOST": "127.0.0.1",
    "CRM_ACTIVATION_EMAIL_COUPON_KEY": "sandbox-coupon-key-0f3a9b2c7d",
    "CRM_ACTIVATION_EMAIL_UNSUBSCRIBE_KEY": "sandbox-unsubscribe-key-5e8d1a4b",
}


def supply_test_credentials(
    connectors: dict[str, type[Connector]],
    platforms: Iterable[str],
    configs: dict[str, PlatformConfig] | None = None,
    *,
    email: bool = False,
    environ: MutableMapping[str, str] | None = None,
) -> list[str]:
    """Set each unset credential variable of a sandboxed platform to its sandbox's known test value.

    A sandbox accepts whatever credentials it is built with, so against sandboxes the values only have to agree
    between the connector and its sandbox: `run --sandbox` then needs nothing exported by hand. A variable that
    is set wins (a run can still prove a connector presents real-looking credentials). Returns the variable
    names supplied, so the caller can say so; never their values.
    """
    env = os.environ if environ is None else environ
    supplied: list[str] = []
    for slug in platforms:
        cls = connectors.get(slug)
        if cls is None or cls.sandbox is None:
            continue
        config = (configs or {}).get(slug) or PlatformConfig()
        for field, value in cls.sandbox.test_credentials.items():
            variable = config.credentials_env.get(field) or default_env_name(slug, field)
            if not env.get(variable):
                env[variable] = value
                supplied.append(variable)
    for variable, value in EMAIL_TEST_VARIABLES.items() if email else ():
        if not env.get(variable):
            env[variable] = value
            supplied.append(variable)
    return supplied


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
            try:
                server = SandboxServer(cls.sandbox(credentials, faults), port=port, log_path=log_path)
            except OSError as error:
                raise ConfigError(bind_error(slug, port, error)) from None
            servers[slug] = server.start()
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def bind_error(what: str, port: int, error: OSError) -> str:
    """One line for a port that cannot be bound (sandboxes, the SMTP relay): in use is the usual case."""
    if error.errno == errno.EADDRINUSE:
        return f"{what} sandbox: port {port} is already in use (choose another --port-base, or stop what holds it)"
    return f"{what} sandbox: cannot listen on port {port}: {error.strerror or error}"
