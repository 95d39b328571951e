"""LinkedIn's error bodies, read without the connector's business logic (OAuth refresh is core's `RefreshTokenAuth`).

LinkedIn's API errors are `{"status", "serviceErrorCode", "code"?, "message"}` (LinkedIn "Error Handling");
its OAuth endpoint answers RFC 6749 errors instead (`{"error": "invalid_grant", "error_description"}`).
"""

from __future__ import annotations

from typing import Any

from crm_activation import HttpResponse


def json_object(response: HttpResponse) -> dict[str, Any]:
    """The body of a LinkedIn answer as a JSON object, or {} when it is not one (HTML from a proxy, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_summary(response: HttpResponse) -> str:
    """A short, value-free description of a LinkedIn error: "HTTP 403 ACCESS_DENIED: Not enough permissions"."""
    body = json_object(response)
    code = body.get("code") or body.get("error") or body.get("serviceErrorCode") or ""
    message = body.get("message") or body.get("error_description") or ""
    return " ".join(part for part in (f"HTTP {response.status}", f"{code}:" if code else "", str(message)) if part)
