"""The connector contract: what a platform plugin declares and the operations the engine calls.

Plugins register `Connector` subclasses through the `register_connectors` hook. Declarations are class
attributes, checked once when the class registers (`validate_connector_class`), so a mistake in a plugin fails
at start-up with the plugin's name rather than halfway through a campaign. Operations are plain methods the
type checker can see.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import OutcomeUnknownError
from .http import Action, Authenticator, HttpResponse, NoAuth
from .identifier_kinds import IdentifierKind
from .types import (
    MAX_REQUESTS_IN_FLIGHT,
    AccountConfig,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Capability,
    Credentials,
    IdentifierRule,
    Member,
    StagedBatch,
)

if TYPE_CHECKING:
    from .http import PlatformHttp
    from .sandbox import SandboxApp

SANDBOX_REQUESTS_PER_SECOND = 200.0


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
    #: Batches the engine sends at once when the account does not say (`AccountConfig.requests_in_flight`).
    #: More than one means `add_members`/`remove_members` (and the `_staged` forms) are called from several
    #: threads at once; a connector raises it once it is safe to, within what the platform tolerates.
    default_requests_in_flight: ClassVar[int] = 1
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

    def add_staged(self, audience: AudienceRef, batch: StagedBatch) -> BatchResult:
        """Add one batch as the state database holds it; what the engine calls.

        The default rebuilds the `Member`s and calls `add_members`, so a connector needs nothing else. One that
        can build its request from the stored payloads (`StagedBatch.fields()`) overrides this to skip that.
        """
        return self.add_members(audience, batch.members())

    def remove_staged(self, audience: AudienceRef, batch: StagedBatch) -> BatchResult:
        """Remove one batch as the state database holds it (see `add_staged`)."""
        return self.remove_members(audience, batch.members())

    @property
    def requests_in_flight(self) -> int:
        """Batches the engine may send at once: the account's setting, else the connector's default."""
        return self.account.requests_in_flight or self.default_requests_in_flight

    #: How many times `create_audience_once` sends a create whose outcome stayed unknown and was not found.
    CREATE_ATTEMPTS: ClassVar[int] = 3

    def create_audience_once(
        self, create: Callable[[], AudienceRef], find: Callable[[], AudienceRef | None]
    ) -> AudienceRef:
        """Create an audience without ever leaving a second one behind when an answer is lost.

        `create` sends the create with `idempotent=False`, so a timeout, dropped connection or 5xx raises
        `OutcomeUnknownError` instead of being retried blindly; `find` looks the audience up by its marker
        (`AudienceSpec.marker`). When the platform applied the lost create, `find` returns that audience; only
        when it is not there is the create sent again. A platform that cannot list audiences cannot use this.
        """
        for _ in range(self.CREATE_ATTEMPTS - 1):
            try:
                return create()
            except OutcomeUnknownError:
                found = find()
                if found is not None:
                    return found
        return create()  # should this answer be lost too, the next run finds the audience by its marker

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
    in_flight = cls.default_requests_in_flight
    if not isinstance(in_flight, int) or not 1 <= in_flight <= MAX_REQUESTS_IN_FLIGHT:
        raise ConnectorDeclarationError(
            f"{name}.default_requests_in_flight must be an int from 1 to {MAX_REQUESTS_IN_FLIGHT}"
        )
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
