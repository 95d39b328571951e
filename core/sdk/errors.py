"""Errors every layer agrees on.

The engine decides what to do with a failure by its type alone: retry it, stop the platform with a
configuration message, or stop the run. Connectors raise these instead of platform-specific exceptions so the
engine never needs to know a platform's error shapes.
"""

from __future__ import annotations


class CrmActivationError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CrmActivationError):
    """The campaign, account or credentials are wrong; retrying cannot help (bad token, missing permission)."""


class InputError(CrmActivationError):
    """An input file cannot be read at all (as opposed to one bad row, which is a rejection)."""


class ConnectorError(CrmActivationError):
    """A platform call failed."""


class RetryableError(ConnectorError):
    """A transient failure (5xx, connection reset, timeout): the same request may succeed later."""


class RateLimitedError(RetryableError):
    """The platform throttled us; `retry_after` is its hint in seconds when it gave one."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthExpiredError(RetryableError):
    """The access token expired; refreshing it and retrying is expected to work."""


class OutcomeUnknownError(ConnectorError):
    """A request that must not be sent twice got no answer that says whether the platform applied it.

    Raised instead of retrying a non-idempotent request (`PlatformHttp.request(..., idempotent=False)`, an audience
    create) after a read timeout, a dropped connection or a 5xx: the platform may have applied it, and sending
    it again could create a second audience. The caller finds out (e.g. looks the audience up by its marker)
    before trying again; see `Connector.create_audience_once`.
    """


class FatalError(ConnectorError):
    """A platform refused the request for a reason retrying will not fix (malformed payload, deleted audience)."""


class RunInterrupted(CrmActivationError):
    """The run was interrupted (Ctrl-C): no further request starts; what was acknowledged stays recorded."""


class InvalidIdentifier(ValueError):
    """A single identifier value cannot be normalized; the message is the reason shown in the rejects file."""
