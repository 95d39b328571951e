"""The filters email templates may use; docs/email-templates.md lists them with examples.

A small, documented set rather than Babel: templates need a price, a date, a greeting and a list of categories
in a handful of locales, and every filter here is a pure function of plain values (the sandbox gives templates
nothing else). Filters that need the message's locale or campaign read them from the render context through
`pass_context`; templates cannot reach that context object themselves.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jinja2 import pass_context
from jinja2.runtime import Context

from ..sdk.identifier_kinds import is_sha256_hex

# language → (group separator, decimal separator, symbol first, space between symbol and number)
_NUMBER_STYLE: dict[str, tuple[str, str, bool, bool]] = {
    "en": (",", ".", True, False),
    "de": (".", ",", False, True),
    "es": (".", ",", False, True),
    "it": (".", ",", False, True),
    "pt": (".", ",", False, True),
    "nl": (".", ",", True, True),
    "fr": ("\u202f", ",", False, True),
    "sv": ("\u00a0", ",", False, True),
    "ja": (",", ".", True, False),
}
_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "CAD": "CA$", "AUD": "A$", "JPY": "¥", "INR": "₹", "CHF": "CHF",
            "SEK": "kr", "BRL": "R$", "MXN": "MX$", "NZD": "NZ$", "SGD": "S$", "PLN": "zł"}
_ZERO_DECIMAL = frozenset({"JPY", "KRW"})
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DATE_FORMATS = {"iso": "%Y-%m-%d"}


def _language(locale: str | None) -> str:
    return (locale or "en").split("_")[0].lower()


def _group(digits: str, separator: str) -> str:
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return separator.join(parts)


def format_money(amount: Any, currency: str = "USD", locale: str | None = "en_US") -> str:
    """`$1,234.50`, `1.234,50 €`, `¥1,200`: whole amounts drop their cents (a "$100 coupon", not "$100.00")."""
    value = float(amount)
    code = str(currency).upper()
    group, decimal, symbol_first, spaced = _NUMBER_STYLE.get(_language(locale), _NUMBER_STYLE["en"])
    decimals = 0 if code in _ZERO_DECIMAL or value == int(value) else 2
    text = f"{abs(value):.{decimals}f}"
    whole, _, cents = text.partition(".")
    number = _group(whole, group) + (decimal + cents if cents else "")
    symbol = _SYMBOLS.get(code, code)
    space = "\u00a0" if spaced or symbol == code else ""
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{space}{number}" if symbol_first else f"{sign}{number}{space}{symbol}"


@pass_context
def money(context: Context, amount: Any, currency: str = "USD") -> str:
    """Format an amount in a currency, in the style of the contact's locale."""
    return format_money(amount, currency, context.get("locale"))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        raise ValueError(f"date filter: {text[:40]!r} is not an ISO date") from None


def format_date(value: Any, format: str = "long", locale: str | None = "en_US") -> str:
    """`long` (March 5, 2026 / 5 March 2026 outside the US), `short` (03/05/2026 / 05/03/2026), `iso`, or strftime."""
    day = _as_date(value)
    us = (locale or "en_US") in ("en_US", "en")
    if format == "long":
        month = _MONTHS[day.month - 1]
        return f"{month} {day.day}, {day.year}" if us else f"{day.day} {month} {day.year}"
    if format == "short":
        return day.strftime("%m/%d/%Y" if us else "%d/%m/%Y")
    return day.strftime(_DATE_FORMATS.get(format, format))


@pass_context
def date_filter(context: Context, value: Any, format: str = "long") -> str:
    """Format an ISO date (or date) the way the contact's locale writes it."""
    return format_date(value, format, context.get("locale"))


def first_name(value: Any, fallback: str = "there") -> str:
    """The greeting name: the first word of a name, capitalised when all lower or upper case.

    `fallback` when the name is missing, blank, or a SHA-256 digest (a pre-hashed export has no name to greet).
    """
    text = "" if value is None else str(value).strip()
    if not text or is_sha256_hex(text):
        return fallback
    word = text.split()[0]
    return word.capitalize() if word.islower() or word.isupper() else word


def join_categories(values: Any, n: int = 3, fallback: str = "", conjunction: str = "and") -> str:
    """`web design, copywriting and SEO`: at most `n` items (the rest dropped), `fallback` when empty."""
    if values is None or isinstance(values, str):
        items = [values] if values else []
    else:
        items = [str(v).strip() for v in values if v is not None and str(v).strip()]
    items = items[: max(1, int(n))]
    if not items:
        return fallback
    if len(items) == 1:
        return items[0]
    return f"{', '.join(items[:-1])} {conjunction} {items[-1]}"


def pluralize(count: Any, singular: str, plural: str | None = None) -> str:
    """`1 hire`, `3 hires`, `0 hires` (a number and the right word; `plural` defaults to singular + "s")."""
    number = int(count or 0)
    return f"{number} {singular if number == 1 else (plural or singular + 's')}"


@pass_context
def track(context: Context, url: Any, content: str | None = None) -> str:
    """Add utm_source/medium/campaign/content parameters so clicks can be attributed to the step and variant."""
    parts = urlsplit(str(url))
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"track filter: {str(url)[:60]!r} is not an http(s) URL")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not k.startswith("utm_")]
    label = content or "-".join(str(x) for x in (context.get("template"), context.get("variant")) if x)
    query += [("utm_source", "email"), ("utm_medium", "email"), ("utm_campaign", str(context.get("campaign", "")))]
    if label:
        query.append(("utm_content", label))
    return urlunsplit(parts._replace(query=urlencode(query)))


_SPACE = re.compile(r"\s+")


def one_line(value: Any) -> str:
    """Collapse whitespace to single spaces (subjects, preheaders)."""
    return _SPACE.sub(" ", str(value)).strip()


FILTERS: dict[str, Any] = {
    "money": money,
    "date": date_filter,
    "first_name": first_name,
    "join_categories": join_categories,
    "pluralize": pluralize,
    "track": track,
    "one_line": one_line,
}
