"""Reading a connector's credentials from environment variables.

Secrets never live in the campaign file. Each field of a connector's credentials model is read from the
variable the campaign names in `credentials_env`, or else from `CRM_ACTIVATION_<PLATFORM>_<FIELD>`. Errors name
the variable and the platform, never a value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TypeVar

from pydantic import ValidationError

from ..sdk.errors import ConfigError
from ..sdk.types import Credentials
from .schema import PlatformConfig

_NOT_ALNUM = re.compile(r"[^A-Za-z0-9]+")
C = TypeVar("C", bound=Credentials)


def default_env_name(platform_slug: str, field: str) -> str:
    """`CRM_ACTIVATION_<PLATFORM>_<FIELD>` in upper case, any non-alphanumeric run made `_`."""
    return _NOT_ALNUM.sub("_", f"CRM_ACTIVATION_{platform_slug}_{field}").upper()


def load_credentials(
    credentials_model: type[C],
    platform_slug: str,
    platform_config: PlatformConfig,
    environ: Mapping[str, str] | None = None,
) -> C:
    """Build a connector's credentials from the environment.

    Args:
        credentials_model: the connector's `Credentials` subclass.
        platform_slug: the platform's key in the campaign's `platforms:` mapping.
        platform_config: that platform's campaign settings (for `credentials_env`).
        environ: the environment to read (defaults to `os.environ`).

    Returns:
        The validated credentials.

    Raises:
        ConfigError: a required variable is unset or empty, `credentials_env` names a field the connector
            does not have, or a value does not fit the model (the message never contains the value).
    """
    env = os.environ if environ is None else environ
    fields = credentials_model.model_fields
    unknown = sorted(set(platform_config.credentials_env) - set(fields))
    if unknown:
        raise ConfigError(
            f"platforms.{platform_slug}.credentials_env names fields the {platform_slug} connector does not have: "
            f"{', '.join(unknown)} (it has: {', '.join(fields) or 'none'})"
        )
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, info in fields.items():
        variable = platform_config.credentials_env.get(name) or default_env_name(platform_slug, name)
        value = env.get(variable)
        if value:  # an empty variable is as good as unset: no platform accepts an empty secret
            values[name] = value
        elif info.is_required():
            missing.append(variable)
    if missing:
        plural = "s" if len(missing) > 1 else ""
        raise ConfigError(
            f"platform {platform_slug}: environment variable{plural} {', '.join(missing)} not set "
            f"(credentials come from the environment; see credentials_env)"
        )
    try:
        return credentials_model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigError(f"platform {platform_slug}: credentials are invalid: {problems}") from None
