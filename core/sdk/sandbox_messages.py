"""What a sandbox reads and answers: the decoded request, the response, and the error that carries one.

Kept apart from the server (`sandbox.py`) so the helpers a sandbox builds on (`sandbox_oauth.py`) can speak in
requests and responses without importing the server that imports them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SandboxRequest:
    """An incoming request, decoded once."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON, or `SandboxError` 400 when it is not JSON."""
        try:
            return json.loads(self.body or b"null")
        except ValueError as exc:
            raise SandboxError(400, {"error": f"body is not JSON: {exc}"}) from None


@dataclass
class SandboxResponse:
    """What the sandbox answers: a JSON body unless `raw` is given."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None


class SandboxError(Exception):
    """Raised inside `handle` to answer with a platform-shaped error."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.response = SandboxResponse(status, body, headers or {})
