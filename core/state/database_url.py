"""Database URLs and driver messages made safe to print: passwords masked, customer values left out.

The SQL audience source and the PostgreSQL state database both take libpq URLs from campaign files and
environment variables, and both must report "cannot connect" or "query failed" without echoing a password or
a customer's e-mail address that a failed cast quotes back.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

_QUERY_PASSWORD = re.compile(r"(?i)((?:^|&)password=)[^&]*")


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by `***`.

    Both places libpq takes a password from are masked: the user-info part and a `password=` query parameter.
    The host part is kept as written rather than rebuilt from the parsed host and port, which fail on a libpq
    multi-host URL (`h1:5432,h2:5432`) and would drop an IPv6 address's brackets.
    """
    parts = urlsplit(url)
    netloc, query = parts.netloc, _QUERY_PASSWORD.sub(r"\1***", parts.query)
    if parts.password is not None:
        userinfo, _, hosts = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hosts}"
    if (netloc, query) == (parts.netloc, parts.query):
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def libpq_url(url: str) -> str:
    """The URL as libpq takes it: `postgres://`, any case, and SQLAlchemy's `postgresql+driver://` all accepted."""
    _scheme, separator, rest = url.partition("://")
    return f"postgresql://{rest}" if separator else url


def scrub_password(text: str, url: str) -> str:
    """`text` (a driver's message about `url`) with the URL shown masked and every form of its password `***`."""
    source = mask_url(url)
    text = text.replace(libpq_url(url), source).replace(url, source)
    parts = urlsplit(url)
    passwords = [value for key, value in parse_qsl(parts.query) if key.lower() == "password"]
    passwords += [parts.password] if parts.password else []
    for secret in sorted({form for p in passwords for form in (p, unquote(p)) if form}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def postgres_reason(exc: Exception) -> str:
    """Why PostgreSQL failed, on one line and without any value from the rows.

    A data exception (SQLSTATE class 22: a cast that failed, a number out of range) quotes the offending value,
    which is a customer's data (`invalid input syntax for type integer: "ann@example.com"`), so for those only
    the condition is named. Other messages name parts of the query (a table, a column) or the server, which the
    operator needs; the primary message leaves out libpq's echo of the statement (our internal DECLARE).
    """
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate and sqlstate.startswith("22"):
        condition = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", type(exc).__name__).lower()
        return f"{condition} (SQLSTATE {sqlstate}; the value is not shown)"
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return " ".join((primary or str(exc) or type(exc).__name__).split())
