"""The contact: what onboarding produces from one input row and every later step reads.

Frozen pydantic models, because a contact crosses the plugin boundary (eligibility vetoes, templates) and must
not be changed behind the engine's back.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .identifier_kinds import IdentifierKind


class Consent(BaseModel):
    """Consent signals as the CRM recorded them; `None` means not recorded (treated per platform rules)."""

    model_config = ConfigDict(frozen=True)

    ad_user_data: bool | None = None
    ad_personalization: bool | None = None
    email_marketing: bool | None = None


class Attributes(BaseModel):
    """What the campaign knows about a contact besides how to reach them."""

    model_config = ConfigDict(frozen=True)

    segment: str | None = None
    lifecycle_stage: str | None = None
    funnel_stage: str | None = None
    preferred_categories: tuple[str, ...] = ()
    history: dict[str, Any] = Field(default_factory=dict)
    consent: Consent = Consent()
    email_unsubscribed: bool = False
    extra: dict[str, Any] = Field(default_factory=dict)

    def value(self, name: str) -> Any:
        """Look an attribute up by name, in the declared fields first, then history, then extra columns.

        Segmentation and eligibility rules name attributes as strings in the campaign file; this is the one
        place that decides what such a name means.
        """
        if name in type(self).model_fields and name not in {"history", "extra"}:
            return getattr(self, name)
        if name in self.history:
            return self.history[name]
        return self.extra.get(name)


class Contact(BaseModel):
    """One CRM contact after onboarding; identifiers are raw (or pre-hashed) values, not yet normalized."""

    model_config = ConfigDict(frozen=True)

    contact_id: str
    identifiers: dict[IdentifierKind, str] = Field(default_factory=dict)
    attributes: Attributes = Attributes()
    source: str = ""
    row: int = 0

    @property
    def country(self) -> str | None:
        """The ISO 3166-1 alpha-2 country in upper case, as eligibility rules and phone parsing need it."""
        value = self.identifiers.get(IdentifierKind.COUNTRY)
        return value.upper() if value else None
