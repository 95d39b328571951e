"""Which platforms a contact may get: country and segment rules, then consent and suppression.

The campaign's channel rules say which platforms a country and a segment get (the *treatment* a contact is
offered — recorded for both holdout groups so measurement compares like with like). Consent, unsubscribes,
the suppression list and plugin vetoes then take platforms away from individual contacts; those removals are
counted as "suppressed", distinct from "ineligible" (not offered, or unreachable).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pluggy

from ..campaign.schema import ChannelsConfig
from ..sdk.contact import Contact
from ..sdk.identifier_kinds import IdentifierKind
from ..sdk.plugins import make_plugin_manager


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
        self._offers: dict[tuple[str | None, str | None], tuple[tuple[str, ...], str | None]] = {}

    def offered(self, contact: Contact) -> tuple[tuple[str, ...], str | None]:
        """The platforms a contact's country and segment are offered, or () with the reason."""
        return self.offered_for(contact.country, contact.attributes.segment)

    def offered_for(self, country: str | None, segment: str | None) -> tuple[tuple[str, ...], str | None]:
        """The platforms a country and segment are offered, or () with the reason (decided once per pair)."""
        key = (country, segment)
        known = self._offers.get(key)
        if known is None:
            if len(self._offers) >= 100_000:  # a free-text CRM segment column: keep the memory bounded
                self._offers.clear()
            known = self._offers[key] = self._offer(country, segment)
        return known

    def _offer(self, country: str | None, segment: str | None) -> tuple[tuple[str, ...], str | None]:
        if country is None:
            return (), "no country"
        if self.allowed_countries is not None and country not in self.allowed_countries:
            return (), f"country {country} is not in the campaign"
        platforms = self.by_country.get(country, self.default)
        segment_platforms = self.by_segment.get(segment or "")
        if segment_platforms is not None:
            platforms = tuple(p for p in platforms if p in segment_platforms)
        platforms = tuple(p for p in platforms if p in self.enabled)
        if not platforms:
            return (), f"no channel for country {country} and segment {segment}"
        return platforms, None


#: A plugin veto: (contact, platform) → reason or None.
Veto = Callable[[Contact, str], str | None]


class PluginVeto:
    """The installed plugins' `eligibility_veto` hook as a `Veto`.

    Sent to another process (a Spark executor) it travels without its plugin manager, which cannot be pickled,
    and loads the plugins installed there from their entry points: the same plugins when the job's environment
    is the driver's, as a cluster's Python environment is.
    """

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def __call__(self, contact: Contact, platform: str) -> str | None:
        """The first plugin's reason to keep the contact off the platform, or None."""
        return self.pm.hook.eligibility_veto(contact=contact, platform=platform)

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.pm = make_plugin_manager()


class ContactGate:
    """Per-contact suppression: consent, unsubscribes, the suppression list and plugin vetoes."""

    def __init__(
        self,
        email_platforms: set[str],
        suppression: Callable[[str, str | None], str | None] | None = None,
        veto: Veto | None = None,
    ) -> None:
        self.email_platforms = email_platforms
        self.suppression = suppression
        self.veto = veto

    def contact_reason(self, contact: Contact) -> str | None:
        """A reason that keeps the contact off every platform (the suppression list)."""
        if self.suppression is None:
            return None
        return self.suppression(contact.contact_id, contact.identifiers.get(IdentifierKind.EMAIL))

    def platform_reason(self, contact: Contact, platform: str) -> str | None:
        """A reason that keeps the contact off this platform (consent, unsubscribe, plugin veto)."""
        consent = contact.attributes.consent
        reason = self.consent_reason(
            platform, (consent.ad_user_data, consent.ad_personalization, consent.email_marketing),
            contact.attributes.email_unsubscribed,
        )
        return reason or (self.veto(contact, platform) if self.veto else None)

    def consent_reason(
        self, platform: str, consent: tuple[bool | None, bool | None, bool | None], unsubscribed: bool
    ) -> str | None:
        """`platform_reason` but the plugin veto, from the values: (ad user data, ad personalization, e-mail)."""
        if platform in self.email_platforms:
            if unsubscribed:
                return "unsubscribed from email"
            if consent[2] is False:
                return "no email marketing consent"
        elif consent[0] is False or consent[1] is False:
            return "no consent for ad personalization"
        return None


def first_reason(reasons: Mapping[str, str]) -> str:
    """A stable single reason from per-platform reasons (for the one-outcome-per-row summary)."""
    return sorted(reasons.values())[0] if reasons else ""
