"""What Google's error bodies mean (the OAuth refresh-token flow itself is core's `RefreshTokenAuth`)."""

from __future__ import annotations

from typing import Any

from crm_activation import Action, HttpResponse, oauth_error

from .settings import FATAL_STATUSES, OAUTH_CONFIG_ERRORS, RATE_LIMIT_REASONS, RATE_LIMITED_STATUSES, TRANSIENT_STATUSES


def google_error(response: HttpResponse) -> dict[str, Any]:
    """The `error` object of a Google JSON error body (`{code, message, status, details}`), or {}."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


# Duplicated on purpose in the Google Data Manager plugin's api.py: a plugin may use only crm-activation's public
# API (never `crm_activation.connectors.*`), and DV360's and Data Manager's error details differ enough to keep apart.
def classify_google(response: HttpResponse) -> Action | None:
    """Map Google's error status names (and OAuth error codes) to the shared actions; None for the status table.

    The status name decides rather than the HTTP code: Google sends RESOURCE_EXHAUSTED as 429 without
    Retry-After, and older front ends throttle with 403 `rateLimitExceeded`, which the table would call a
    permission problem. An OAuth error from the token endpoint is never "refresh the token": answering a failed
    refresh with another refresh would loop.
    """
    if response.status < 400:
        return None
    oauth = oauth_error(response)
    if oauth is not None and 400 <= response.status < 500 and response.status != 429:
        return Action.CONFIG_ERROR if oauth in OAUTH_CONFIG_ERRORS or response.status in (401, 403) else Action.FAIL
    error = google_error(response)
    status = error.get("status")
    reasons = {e.get("reason") for e in error.get("errors") or () if isinstance(e, dict)}
    if status in RATE_LIMITED_STATUSES or reasons & RATE_LIMIT_REASONS:
        return Action.RATE_LIMITED
    if status in TRANSIENT_STATUSES:
        return Action.RETRY
    if status == "UNAUTHENTICATED":
        return Action.REFRESH_AUTH
    if status == "PERMISSION_DENIED":
        return Action.CONFIG_ERROR
    if status in FATAL_STATUSES:
        return Action.FAIL
    return None


def _json(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}
