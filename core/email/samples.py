"""Sample contacts and contexts for `email render`, `lint` and `preview`: no database, no secrets needed.

The samples are chosen to break templates the way real data does: a complete contact, a minimal one (only an
id and an address: every optional variable missing or empty), a hostile one (markup, quotes and template syntax
in every text field), one whose names arrived SHA-256 hashed, and a German one (locale-dependent money and
dates). Preview coupon codes and unsubscribe links are derived with a fixed, public preview key: they look
real but are never recorded and match nothing in production.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import SecretStr

from ..campaign.email_settings import CouponConfig, EmailConfig, StepConfig, VariantConfig
from ..sdk.contact import Attributes, Consent, Contact
from ..sdk.identifier_kinds import IdentifierKind
from .context import build_context
from .coupons import derive_code
from .unsubscribe import links

PREVIEW_KEY = SecretStr("preview-only-key-not-a-secret")
HOSTILE_TEXT = "<script>alert(1)</script>\"'{{ 7*7 }}{% raw %}"
SEGMENTS = ("high_potential", "medium_potential", "low_potential", "unsegmented")
LIFECYCLE_STAGES = ("inactive", "lapsing", "active", "loyal")


def _contact(contact_id: str, identifiers: dict[IdentifierKind, str], **attributes: Any) -> Contact:
    return Contact(
        contact_id=contact_id,
        identifiers=identifiers,
        attributes=Attributes(consent=Consent(email_marketing=True), **attributes),
        source="samples",
    )


SAMPLE_CONTACTS: dict[str, Contact] = {
    "typical": _contact(
        "sample-typical",
        {IdentifierKind.EMAIL: "maria.garcia@example.com", IdentifierKind.FIRST_NAME: "maria",
         IdentifierKind.LAST_NAME: "Garcia", IdentifierKind.COUNTRY: "US"},
        segment="high_potential", lifecycle_stage="lapsing", funnel_stage="awareness",
        preferred_categories=("web design", "copywriting", "SEO"),
        history={"last_project": "landing page redesign", "hires": 4, "last_active_days": 210,
                 "open_hours": "9|9|14"},
    ),
    "minimal": _contact("sample-minimal", {IdentifierKind.EMAIL: "someone@example.org"}),
    "hostile": _contact(
        "sample-hostile",
        {IdentifierKind.EMAIL: "hostile@example.net", IdentifierKind.FIRST_NAME: HOSTILE_TEXT,
         IdentifierKind.LAST_NAME: '"Robert\'); DROP TABLE--', IdentifierKind.COUNTRY: "GB"},
        segment=HOSTILE_TEXT, lifecycle_stage="inactive", funnel_stage="consideration",
        preferred_categories=(HOSTILE_TEXT, "<b>bold</b>"),
        history={"last_project": HOSTILE_TEXT, "hires": 1, "last_active_days": 90},
    ),
    "hashed_names": _contact(
        "sample-hashed",
        {IdentifierKind.EMAIL: "hashed@example.com", IdentifierKind.FIRST_NAME: "a" * 64, IdentifierKind.COUNTRY: "CA"},
        lifecycle_stage="active", funnel_stage="conversion", history={"last_project": None, "hires": 0},
    ),
    "german": _contact(
        "sample-german",
        {IdentifierKind.EMAIL: "jonas@example.de", IdentifierKind.FIRST_NAME: "Jonas", IdentifierKind.COUNTRY: "DE"},
        segment="medium_potential", lifecycle_stage="loyal", funnel_stage="conversion",
        preferred_categories=("Übersetzung",), history={"last_project": "Produktvideo", "hires": 12},
    ),
}


def sample_config() -> EmailConfig:
    """An email section that fits the packaged templates: the win-back sequence of docs/email-templates.md."""
    return EmailConfig(
        from_address="Freelance Hub <winback@mail.example.com>",
        bounce_address="bounces@mail.example.com",
        unsubscribe_url="https://mail.example.com/unsubscribe",
        unsubscribe_mailto="unsubscribe@mail.example.com",
        sequences={
            "awareness": (
                StepConfig(template="we-miss-you", delay_days=0,
                           variants=(VariantConfig(name="warm"), VariantConfig(name="brief"))),
            ),
            "consideration": (StepConfig(template="success-stories", delay_days=0),),
            "conversion": (
                StepConfig(template="coupon-offer", delay_days=0),
                StepConfig(template="coupon-reminder", delay_days=5),
            ),
        },
        coupon=CouponConfig(prefix="WB100", amount=100, currency="USD", valid_days=30),
    )


def sample_context(
    contact: Contact, config: EmailConfig, *, campaign: str = "preview", stage: str | None = None, step: int = 1
) -> dict[str, Any]:
    """The context a real send would build, with preview coupon and unsubscribe values."""
    stage = stage or contact.attributes.funnel_stage or next(iter(config.sequences))
    unsubscribe = links(PREVIEW_KEY, campaign, contact.contact_id, config.unsubscribe_url, config.unsubscribe_mailbox)
    coupon = None
    if config.coupon is not None:
        code = derive_code(PREVIEW_KEY.get_secret_value().encode(), campaign, contact.contact_id, config.coupon.prefix)
        expires = (datetime.now(UTC) + timedelta(days=config.coupon.valid_days or 30)).date().isoformat()
        coupon = {"code": code, "amount": config.coupon.amount, "currency": config.coupon.currency,
                  "expires_on": expires if config.coupon.valid_days else None}
    return build_context(
        contact, campaign=campaign, stage=stage, step=step, unsubscribe_url=unsubscribe.https, coupon=coupon,
        campaign_name="Preview campaign", default_locale=config.locale, extra=config.template_values(),
    )


def with_attributes(contact: Contact, **changes: Any) -> Contact:
    """A copy of a sample with some attributes changed (lint walks segments, stages and lifecycle stages)."""
    return contact.model_copy(update={"attributes": contact.attributes.model_copy(update=changes)})
