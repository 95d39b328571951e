"""Keeping secrets and tokens out of logs, exception messages and the dry-run outbox.

Two layers: every secret value the run loaded is replaced wherever it appears, and token-shaped parts of URLs
and headers are masked even when the value is not known (a token a platform handed back, say).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping

MASK = "***"
SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "amazon-advertising-api-clientid"}
)
_QUERY_SECRET = re.compile(
    r"(?i)\b(access_token|refresh_token|client_secret|appsecret_proof|token|password|api_key|apikey|key|secret)"
    r"=([^&\s\"']+)"
)
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|bearer)(\s*[:=]?\s*)([A-Za-z0-9._~+/=|-]{8,})")


class Redactor:
    """Masks known secret values and token-shaped fragments in text. Thread-safe; secrets can be added."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Remember more secret values (short ones are ignored: masking 'a' everywhere helps nobody)."""
        forms = set()
        for secret in secrets:
            if secret and len(secret) >= 4:
                # as written, and as it appears inside JSON (escaped quotes, backslashes, non-ASCII)
                forms.update({secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]})
        with self._lock:
            self._secrets.update(forms)

    def redact(self, text: str) -> str:
        """Return `text` with every known secret and token-shaped fragment masked."""
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for secret in secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _QUERY_SECRET.sub(lambda m: f"{m.group(1)}={MASK}", text)
        return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Copy of `headers` with credential-bearing headers masked and the rest redacted as text."""
        return {
            name: (MASK if name.lower() in SENSITIVE_HEADERS else self.redact(str(value)))
            for name, value in headers.items()
        }


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message through a `Redactor`."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the formatted message (and drop args so they cannot be re-rendered raw)."""
        message = record.getMessage()
        record.msg = self.redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


#: Secrets accumulate here for the lifetime of the process: a logger cannot know which run a record is from,
#: and forgetting a secret early would be the only way to leak it.
PROCESS_REDACTOR = Redactor()
_PROCESS_FILTER = RedactingFilter(PROCESS_REDACTOR)


# urllib3 logs each request line (query string included: Meta's access_token) at DEBUG.
logging.getLogger("urllib3.connectionpool").addFilter(_PROCESS_FILTER)


def get_logger(name: str) -> logging.Logger:
    """A logger whose records pass through the process redactor before any handler sees them."""
    logger = logging.getLogger(name)
    if _PROCESS_FILTER not in logger.filters:
        logger.addFilter(_PROCESS_FILTER)
    return logger


def remember_secrets(secrets: Iterable[str]) -> None:
    """Register secret values so that no log record of this process can carry them."""
    PROCESS_REDACTOR.add(secrets)
