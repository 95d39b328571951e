"""What Google's error bodies mean (the OAuth refresh-token flow itself is core's `RefreshTokenAuth`)."""

from __future__ import annotations

from typing import Any

from crm_activation import Action, HttpResponse

from .settings import FATAL_STATUSES, OAUTH_CONFIG_ERRORS, RATE_LIMITED_STATUSES, TRANSIENT_STATUSES


def _json(response: HttpResponse) -> Any:
    try:
        return response.json()
    except ValueError:
        return {}


def google_error(response: HttpResponse) -> dict[str, Any]:
    """The `error` object of a Google JSON error body (`{code, message, status, details}`), or {}."""
    body = _json(response)
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


# A copy of the DV360 connector's Google error classification, on purpose: a plugin uses only crm-activation's public
# API, never `crm_activation.connectors.*`.
def classify_google(response: HttpResponse) -> Action | None:
    """Map Google's status names (and OAuth error codes) to the shared actions; None leaves it to the status table.

    The status name decides rather than the HTTP code: RESOURCE_EXHAUSTED comes as 429 without Retry-After, and a
    token endpoint's OAuth error is never "refresh the token", since answering a failed refresh with another
    refresh would loop.
    """
    if response.status < 400:
        return None
    body = _json(response)
    oauth = body.get("error") if isinstance(body, dict) else None
    if isinstance(oauth, str) and response.status != 429:
        return Action.CONFIG_ERROR if oauth in OAUTH_CONFIG_ERRORS or response.status in (401, 403) else Action.FAIL
    status = google_error(response).get("status")
    if status in RATE_LIMITED_STATUSES:
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
