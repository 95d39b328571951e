"""crm-activation: push CRM audiences to ad platforms and email, with a holdout that measures the lift.

This module is the public API that connectors and plugins may use; anything not exported here is internal.
"""

from .sdk import normalization
from .sdk.connector import Connector
from .sdk.contact import Attributes, Consent, Contact
from .sdk.errors import (
    AuthExpiredError,
    ConfigError,
    ConnectorError,
    CrmActivationError,
    FatalError,
    InvalidIdentifier,
    OutcomeUnknownError,
    RateLimitedError,
    RetryableError,
)
from .sdk.http import (
    Action,
    Authenticator,
    HeaderToken,
    HttpResponse,
    PlatformHttp,
    QueryToken,
    RetryPolicy,
    response_of,
)
from .sdk.identifier_kinds import IdentifierKind, is_sha256_hex
from .sdk.oauth import RefreshTokenAuth, oauth_error
from .sdk.plugins import hookimpl
from .sdk.sandbox import FaultPlan, SandboxApp, SandboxError, SandboxRequest, SandboxResponse, SandboxServer
from .sdk.sandbox_audiences import SandboxAudience, member_key
from .sdk.sandbox_oauth import RefreshTokenEndpoint
from .sdk.summary import (
    BalanceRow,
    IdentitySummary,
    InDoubtSend,
    Outcome,
    PlatformSummary,
    RunSummary,
    StageCounts,
)
from .sdk.types import (
    AccountConfig,
    AudienceRef,
    AudienceSpec,
    BatchResult,
    Capability,
    Credentials,
    IdentifierRule,
    Member,
    RecordRejection,
    StagedBatch,
)

__version__ = "0.1.0"

__all__ = [
    "AccountConfig",
    "Action",
    "Attributes",
    "AudienceRef",
    "AudienceSpec",
    "AuthExpiredError",
    "Authenticator",
    "BalanceRow",
    "BatchResult",
    "Capability",
    "ConfigError",
    "Connector",
    "ConnectorError",
    "Consent",
    "Contact",
    "Credentials",
    "CrmActivationError",
    "FatalError",
    "FaultPlan",
    "HeaderToken",
    "HttpResponse",
    "IdentifierKind",
    "IdentifierRule",
    "IdentitySummary",
    "InDoubtSend",
    "InvalidIdentifier",
    "Member",
    "Outcome",
    "OutcomeUnknownError",
    "PlatformHttp",
    "PlatformSummary",
    "QueryToken",
    "RateLimitedError",
    "RecordRejection",
    "RefreshTokenAuth",
    "RefreshTokenEndpoint",
    "RetryPolicy",
    "RetryableError",
    "RunSummary",
    "SandboxApp",
    "SandboxAudience",
    "SandboxError",
    "SandboxRequest",
    "SandboxResponse",
    "SandboxServer",
    "StageCounts",
    "StagedBatch",
    "hookimpl",
    "is_sha256_hex",
    "member_key",
    "normalization",
    "oauth_error",
    "response_of",
]
