"""Which platforms a contact may get: country and segment rules, then consent and suppression.

The campaign's channel rules say which platforms a country and a segment get (the *treatment* a contact is
offered — recorded for both holdout groups so measurement compares like with like). Consent, unsubscribes,
the suppression list and plugin vetoes then take platforms away from individual contacts; those removals are
counted as "suppressed", distinct from "ineligible" (not offered, or unreachable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..campaign.schema import ChannelsConfig
from ..sdk.contact import Contact


class ChannelRules:
    """The campaign's channel rules, precomputed per country for speed."""

    def __init__(self, channels: ChannelsConfig, enabled_platforms: set[str]) -> None:
        self.allowed_countries = set(channels.countries) if channels.countries is not None else None
        self.by_country: dict[str, tuple[str, ...]] = {}
        for rule in channels.by_country:
            for country in rule.countries:
                self.by_country.setdefault(country, rule.platforms)
        self.default = channels.default
        self.by_segment = channels.by_segment
        self.enabled = enabled_platforms

    def offered(self, contact: Contact) -> tuple[tuple[str, ...], str | None]:
        """The platforms a contact's country and segment are offered, or () with the reason."""
        country = contact.country
        if country is None:
            return (), "no country"
        if self.allowed_countries is not None and country not in self.allowed_countries:
            return (), f"country {country} is not in the campaign"
        platforms = self.by_country.get(country, self.default)
        segment_platforms = self.by_segment.get(contact.attributes.segment or "")
        if segment_platforms is not None:
            platforms = tuple(p for p in platforms if p in segment_platforms)
        platforms = tuple(p for p in platforms if p in self.enabled)
        if not platforms:
            return (), f"no channel for country {country} and segment {contact.attributes.segment}"
        return platforms, None


#: A plugin veto: (contact, platform) → reason or None.
Veto = Callable[[Contact, str], str | None]


class ContactGate:
    """Per-contact suppression: consent, unsubscribes, the suppression list and plugin vetoes."""

    def __init__(
        self,
        email_platforms: set[str],
        suppression: Callable[[Contact], str | None] | None = None,
        veto: Veto | None = None,
    ) -> None:
        self.email_platforms = email_platforms
        self.suppression = suppression
        self.veto = veto

    def contact_reason(self, contact: Contact) -> str | None:
        """A reason that keeps the contact off every platform (the suppression list)."""
        return self.suppression(contact) if self.suppression else None

    def platform_reason(self, contact: Contact, platform: str) -> str | None:
        """A reason that keeps the contact off this platform (consent, unsubscribe, plugin veto)."""
        consent = contact.attributes.consent
        if platform in self.email_platforms:
            if contact.attributes.email_unsubscribed:
                return "unsubscribed from email"
            if consent.email_marketing is False:
                return "no email marketing consent"
        elif consent.ad_user_data is False or consent.ad_personalization is False:
            return "no consent for ad personalization"
        return self.veto(contact, platform) if self.veto else None


def first_reason(reasons: Mapping[str, str]) -> str:
    """A stable single reason from per-platform reasons (for the one-outcome-per-row summary)."""
    return sorted(reasons.values())[0] if reasons else ""
