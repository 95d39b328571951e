"""The connector contract: what a platform plugin declares and the operations the engine calls.

Plugins register `Connector` subclasses through the `register_connectors` hook. Declarations are class
attributes, checked once when the class registers (`validate_connector_class`), so a mistake in a plugin fails
at start-up with the plugin's name rather than halfway through a campaign. Operations are plain methods the
type checker can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from .http import Action, Authenticator, HttpResponse, NoAuth
from .identifiers import IdentifierKind

if TYPE_CHECKING:
    from .http import PlatformHttp
    from .sandbox import SandboxApp

#: Normalizes one raw value; gets the contact's ISO country (upper case) or None for region-dependent rules.
#: Raises `InvalidIdentifier` with a human reason when the value is unusable.
Normalizer = Callable[[str, str | None], str]


SANDBOX_REQUESTS_PER_SECOND = 200.0


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
        hashed: whether the platform wants the normalized value SHA-256 hashed (lowercase hex).
        source: where the rule is documented, so a reviewer can check it.
    """

    kind: IdentifierKind
    key: str
    normalize: Normalizer
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


class Connector:
    """Base class of every platform connector.

    Subclasses set the class attributes below and implement the operations. `__init__` receives the
    validated account settings, the credentials and a `PlatformHttp` that already applies the retry policy,
    rate limit, redaction and dry-run recording; a connector only builds requests and parses responses.
    """

    platform: ClassVar[str]
    display_name: ClassVar[str]
    account_model: ClassVar[type[AccountConfig]] = AccountConfig
    credentials_model: ClassVar[type[Credentials]] = Credentials
    identifier_rules: ClassVar[tuple[IdentifierRule, ...]] = ()
    #: Kinds that identify a person on their own; a contact with none of them is ineligible on the platform.
    match_keys: ClassVar[frozenset[IdentifierKind]] = frozenset()
    max_batch_size: ClassVar[int]
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.REMOVE})
    default_base_url: ClassVar[str]
    default_requests_per_second: ClassVar[float] = 10.0
    sandbox: ClassVar[type[SandboxApp] | None] = None

    def __init__(self, account: AccountConfig, credentials: Credentials, http: PlatformHttp) -> None:
        # Once here for every connector: subclasses declare `account: TheirAccount` and rely on it.
        if not isinstance(account, self.account_model) or not isinstance(credentials, self.credentials_model):
            raise TypeError(
                f"{type(self).__name__} needs a {self.account_model.__name__} and a {self.credentials_model.__name__}"
            )
        self.account = account
        self.credentials = credentials
        self.http = http
        http.auth = self.authenticator()

    # -- operations -------------------------------------------------------------------------------------
    def check(self) -> None:
        """Verify credentials and account access cheaply; raise `ConfigError` with a clear message if not."""

    def ensure_audience(self, spec: AudienceSpec, known: AudienceRef | None) -> AudienceRef:
        """Return the audience for `spec`, creating it when `known` is None or no longer exists. Idempotent."""
        raise NotImplementedError

    def add_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Add one batch (never larger than `max_batch_size`) to the audience."""
        raise NotImplementedError

    def remove_members(self, audience: AudienceRef, members: Sequence[Member]) -> BatchResult:
        """Remove one batch, given the same payload fields that were used to add them."""
        raise NotImplementedError

    def replace_members(self, audience: AudienceRef, batches: Iterable[Sequence[Member]]) -> BatchResult:
        """Replace the audience's whole membership (only with `Capability.REPLACE`)."""
        raise NotImplementedError

    def dry_run_audience(self, spec: AudienceSpec) -> dict[str, Any]:
        """The response body a dry run pretends the audience-creation call returned."""
        return {"id": f"dry-run-{spec.key}"}

    # -- HTTP hooks (the engine passes these to the platform's `PlatformHttp`) ---------------------------
    @classmethod
    def classify_response(cls, response: HttpResponse) -> Action | None:
        """Read a platform-specific signal in a response (a throttling code in a 400 body, say).

        Return None to let the shared status-code table decide; that is the default.
        """
        return None

    def authenticator(self) -> Authenticator:
        """Build what puts the credentials on each request (installed on `self.http` at construction).

        An instance method because token endpoints depend on the account (region, sandbox URL).
        The default sends no credentials.
        """
        return NoAuth()

    @classmethod
    def for_sandbox(cls, account: AccountConfig, url: str) -> AccountConfig:
        """The account settings that point every endpoint of the platform at a local sandbox at `url`.

        The default moves `base_url` and, unless the account sets a rate, lifts the rate limit to
        `SANDBOX_REQUESTS_PER_SECOND`: a local sandbox has no quota to protect (it throttles only when a fault
        plan says so). Connectors whose token endpoint lives on another host (Login with Amazon, Google OAuth)
        extend this to move that too, since their sandbox serves it as well.
        """
        rate = account.requests_per_second or SANDBOX_REQUESTS_PER_SECOND
        return account.model_copy(update={"base_url": url, "requests_per_second": rate})

    # -- declarations helpers ---------------------------------------------------------------------------
    @classmethod
    def rule_for(cls, kind: IdentifierKind) -> IdentifierRule | None:
        """The rule for a kind, or None when the platform does not take it."""
        for rule in cls.identifier_rules:
            if rule.kind == kind:
                return rule
        return None

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """A plain summary of the declarations, for `crm-activation connectors` and docs."""
        return {
            "platform": cls.platform,
            "name": cls.display_name,
            "identifiers": [
                {"kind": str(r.kind), "key": r.key, "hashed": r.hashed} for r in cls.identifier_rules
            ],
            "match_keys": sorted(str(k) for k in cls.match_keys),
            "max_batch_size": cls.max_batch_size,
            "capabilities": sorted(str(c) for c in cls.capabilities),
            "sandbox": cls.sandbox is not None,
        }


class ConnectorDeclarationError(TypeError):
    """A plugin registered a connector class whose declarations are incomplete or inconsistent."""


def validate_connector_class(cls: type[Connector]) -> None:
    """Check a registered class's declarations; raise `ConnectorDeclarationError` naming the problem."""
    name = getattr(cls, "__qualname__", repr(cls))
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConnectorDeclarationError(f"{name} is not a Connector subclass")
    for attr in ("platform", "display_name", "max_batch_size", "default_base_url"):
        if not hasattr(cls, attr):
            raise ConnectorDeclarationError(f"{name} does not declare `{attr}`")
    if not cls.platform.isidentifier() or cls.platform != cls.platform.lower():
        raise ConnectorDeclarationError(f"{name}.platform must be a lower-case identifier, got {cls.platform!r}")
    if not isinstance(cls.max_batch_size, int) or cls.max_batch_size < 1:
        raise ConnectorDeclarationError(f"{name}.max_batch_size must be a positive int")
    keys = [rule.key for rule in cls.identifier_rules]
    if len(keys) != len(set(keys)):
        raise ConnectorDeclarationError(f"{name}.identifier_rules repeats a payload key")
    declared = {rule.kind for rule in cls.identifier_rules}
    if not cls.match_keys or not cls.match_keys <= declared:
        raise ConnectorDeclarationError(f"{name}.match_keys must be a non-empty subset of its identifier kinds")
    if not issubclass(cls.account_model, AccountConfig) or not issubclass(cls.credentials_model, Credentials):
        raise ConnectorDeclarationError(f"{name}: account_model/credentials_model must extend the base models")
    if Capability.REPLACE in cls.capabilities and cls.replace_members is Connector.replace_members:
        raise ConnectorDeclarationError(f"{name} declares REPLACE but does not implement replace_members")
