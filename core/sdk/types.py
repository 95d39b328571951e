"""The data types of the connector contract: what a connector declares and what flows through its operations.

Kept apart from the `Connector` base class so that the sandbox base, the engine and the run summary can share
these types without importing the class that drives HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from .identifier_kinds import IdentifierKind

#: Normalizes one raw value; gets the contact's ISO country (upper case) or None for region-dependent rules.
#: Raises `InvalidIdentifier` with a human reason when the value is unusable.
Normalizer = Callable[[str, str | None], str]


class Capability(StrEnum):
    """Optional abilities; the engine only uses what a connector declares."""

    REPLACE = "replace"  # replace_members swaps the whole audience in one session
    REMOVE = "remove"  # remove_members is supported (every built-in connector has it)


@dataclass(frozen=True, slots=True)
class IdentifierRule:
    """How one identifier kind becomes one field of a platform's payload.

    Attributes:
        kind: which contact identifier feeds the field.
        key: the platform's own field name (Meta `EMAIL`, LinkedIn `SHA256_EMAIL`, ...).
        normalize: the platform's published normalization for the kind.
        hashed: whether the platform wants the normalized value SHA-256 hashed (lowercase hex); keyword only,
            like `source`, so that `True` never lands in the wrong place.
        source: where the rule is documented, so a reviewer can check it.
    """

    kind: IdentifierKind
    key: str
    normalize: Normalizer
    _: KW_ONLY
    hashed: bool
    source: str = ""


@dataclass(frozen=True, slots=True)
class Member:
    """One contact as a platform will receive it: payload fields already normalized and hashed.

    A dataclass with slots rather than a pydantic model: a campaign pushes millions of these and the engine
    builds them itself, so validation would only cost time.
    """

    contact_id: str
    fields: Mapping[str, str]
    country: str | None = None
    consent: Mapping[str, bool | None] = field(default_factory=dict)


class AudienceSpec(BaseModel):
    """The audience the engine wants to exist on a platform (one per campaign, platform and funnel stage)."""

    model_config = ConfigDict(frozen=True)

    key: str
    name: str
    description: str = ""
    funnel_stage: str | None = None
    creative: str | None = None
    settings: dict[str, Any] = {}


class AudienceRef(BaseModel):
    """A platform's handle for an audience that exists; the engine stores it in the state database."""

    model_config = ConfigDict(frozen=True)

    key: str
    remote_id: str


class RecordRejection(BaseModel):
    """One record a platform refused, with its reason, when the platform says which."""

    model_config = ConfigDict(frozen=True)

    contact_id: str | None
    reason: str


class BatchResult(BaseModel):
    """What a platform reported for one batch."""

    model_config = ConfigDict(frozen=True)

    received: int
    invalid: int = 0
    rejections: tuple[RecordRejection, ...] = ()
    job_id: str | None = None


class AccountConfig(BaseModel):
    """Base of a connector's non-secret account settings (read from the campaign file)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None
    requests_per_second: float | None = None


class Credentials(BaseModel):
    """Base of a connector's secrets; every field should be `SecretStr` and comes from the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def secret_values(self) -> list[str]:
        """Every secret this connector holds, for the redaction filter."""
        return [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr) and v]
