"""The personalization context of one email: plain values only.

Templates see dicts, lists, strings, numbers, booleans and None — never a `Contact`, a model or anything with
methods — so the sandbox has nothing to walk from a variable to Python internals, and what a template can use
is exactly what `docs/email-templates.md` lists. History values (from `history_*` columns) are copied through
the same plain-value filter: dates become ISO strings, anything else unknown becomes its text.

Names that arrive SHA-256 hashed (a pre-hashed CRM export) are blanked: the `first_name` filter then greets with
its fallback instead of a digest.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind, is_sha256_hex

#: Country → locale for contacts whose row has no `locale` column; the campaign default covers the rest.
COUNTRY_LOCALES = {
    "US": "en_US", "CA": "en_CA", "GB": "en_GB", "IE": "en_IE", "AU": "en_AU", "NZ": "en_NZ", "IN": "en_IN",
    "SG": "en_SG", "DE": "de_DE", "AT": "de_AT", "CH": "de_CH", "FR": "fr_FR", "BE": "fr_BE", "ES": "es_ES",
    "MX": "es_MX", "IT": "it_IT", "NL": "nl_NL", "PT": "pt_PT", "BR": "pt_BR", "SE": "sv_SE", "JP": "ja_JP",
}
_MAX_DEPTH = 4
_MAX_TEXT = 2_000


def plain(value: Any, depth: int = 0) -> Any:
    """A JSON-like copy of a value: str, int, float, bool, None, list and str-keyed dict; dates as ISO text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if depth < _MAX_DEPTH:
        if isinstance(value, Mapping):
            return {str(k): plain(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [plain(v, depth + 1) for v in value]
    return str(value)[:_MAX_TEXT]


def _name(contact: Contact, kind: IdentifierKind) -> str:
    value = contact.identifiers.get(kind, "").strip()
    return "" if is_sha256_hex(value) else value


def contact_locale(contact: Contact, default: str) -> str:
    """The contact's locale: a `locale` column when the CRM has one, else from the country, else the default."""
    explicit = contact.attributes.extra.get("locale")
    if isinstance(explicit, str) and explicit.strip():
        return explicit.strip().replace("-", "_")
    return COUNTRY_LOCALES.get(contact.country or "", default)


def build_context(
    contact: Contact,
    *,
    campaign: str,
    stage: str,
    step: int,
    unsubscribe_url: str,
    coupon: Mapping[str, Any] | None = None,
    campaign_name: str = "",
    default_locale: str = "en_US",
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables every template part sees (the renderer adds `template` and `variant`).

    Args:
        contact: the recipient (only its names, country and attributes are read; never the email address).
        campaign: the campaign id (also feeds the `track` filter's utm_campaign).
        stage: the funnel stage whose sequence this step belongs to.
        step: the 1-based step number in that sequence.
        unsubscribe_url: the contact's one-click unsubscribe link (`unsubscribe.UnsubscribeLinks.https`).
        coupon: `{"code", "amount", "currency", "expires_on"}` or None when the campaign has no coupon.
        campaign_name: the campaign's human name.
        default_locale: used when neither a `locale` column nor a known country gives one.
        extra: more plain values (the campaign's `template_vars`); cannot override the above.

    Returns:
        A dict of plain values.
    """
    attributes = contact.attributes
    first, last = _name(contact, IdentifierKind.FIRST_NAME), _name(contact, IdentifierKind.LAST_NAME)
    context: dict[str, Any] = plain(dict(extra or {}))
    context.update(
        {
            "first_name": first,
            "last_name": last,
            "full_name": " ".join(p for p in (first, last) if p),
            "segment": attributes.segment or "",
            "lifecycle_stage": attributes.lifecycle_stage or "",
            "funnel_stage": attributes.funnel_stage or "",
            "preferred_categories": list(attributes.preferred_categories),
            "history": plain(attributes.history),
            "country": contact.country or "",
            "city": _name(contact, IdentifierKind.CITY),
            "locale": contact_locale(contact, default_locale),
            "coupon": plain(dict(coupon)) if coupon else None,
            "unsubscribe_url": unsubscribe_url,
            "campaign": campaign,
            "campaign_name": campaign_name or campaign,
            "stage": stage,
            "step": step,
        }
    )
    return context
