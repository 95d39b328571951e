"""When a step goes out: the contact's hour, in the contact's time zone, as a UTC instant for the send date.

The campaign's `default_send_hour` is a hint about people ("mid-morning"), so it is read as the *contact's*
local hour: 10 means 10:00 in Tokyo for a Tokyo contact and 10:00 in Lisbon for a Lisbon one, not 10:00 UTC
for everyone (which reaches Tokyo at 19:00). The zone is, in order:

1. a `timezone` column of the CRM export (onboarding keeps unknown columns in `attributes.extra`), when it is
   an IANA name the tz database knows (`Asia/Tokyo`); anything else is ignored and reported in the source;
2. the main zone of the contact's country, from the tz database's `zone.tab` (shipped by the `tzdata`
   package, so it is updated with the package rather than copied here). A country with one zone has it; for
   the few with several, `MAIN_ZONES` names the most populous one (US → New York, RU → Moscow, BR → São
   Paulo, …) where `zone.tab`'s first row is not it;
3. UTC.

Hours learned from history (`best_hour`, `open_hours`) were recorded in UTC, so they stay UTC hours.
`default_send_hour: null` in the config means "no preferred hour": a step goes out as soon as it is due.

The UTC instant is computed for the actual date (`ZoneInfo` applies that day's offset), so 10:00 in New York is
15:00 UTC in winter and 14:00 UTC in summer. A local hour that does not exist that day (the spring-forward gap)
is read with the offset before the change (`fold=0` in `zoneinfo`): 02:00 on a spring-forward night in New York
is 07:00 UTC, 03:00 local.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from ..sdk.contact import Contact
from .sequences import send_hour

#: Countries with several zones whose first `zone.tab` row is not where most people live.
MAIN_ZONES = {
    "AU": "Australia/Sydney", "BR": "America/Sao_Paulo", "CA": "America/Toronto", "PS": "Asia/Hebron",
    "RU": "Europe/Moscow", "UA": "Europe/Kyiv", "UZ": "Asia/Tashkent", "UM": "Pacific/Wake", "AQ": "UTC",
}


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


@functools.cache
def country_zones() -> dict[str, str]:
    """Country code → its main IANA zone: `MAIN_ZONES`, else the first `zone.tab` row of the country."""
    table = (files("tzdata") / "zoneinfo" / "zone.tab").read_text(encoding="utf-8")
    zones: dict[str, str] = {}
    for line in table.splitlines():
        fields = line.split("\t")
        if line.startswith("#") or len(fields) < 3:
            continue
        zones.setdefault(fields[0].strip().upper(), fields[2].strip())
    zones.update(MAIN_ZONES)
    return zones


def valid_zone(name: Any) -> str | None:
    """The IANA zone name when `name` is one the tz database knows (`Asia/Tokyo`, `UTC`), else None."""
    if not isinstance(name, str):
        return None
    name = name.strip()
    return name if name in _known_zones() else None


def contact_zone(contact: Contact) -> tuple[str, str]:
    """The contact's zone name and where it came from.

    The source is `timezone`, `country XX` or `no zone: UTC`, after a note when a `timezone` value was not an
    IANA name (a typo there must not silently move a send by hours).
    """
    raw = contact.attributes.extra.get("timezone")
    zone = valid_zone(raw)
    if zone is not None:
        return zone, "timezone"
    note = f"timezone {str(raw)[:40]!r} is not an IANA zone; " if raw not in (None, "") else ""
    country = contact.country or ""
    by_country = country_zones().get(country)
    if by_country is not None:
        return by_country, f"{note}country {country}"
    return "UTC", f"{note}no zone: UTC"


@dataclass(frozen=True, slots=True)
class SendPlan:
    """The planned send of one step: local hour and zone, the UTC instant on the send date, and why.

    `hour` is None when the campaign has no default hour and history gives none: the step goes out when due.
    """

    hour: int | None
    zone: str
    at: datetime | None  # UTC
    source: str  # best_hour, open_hours, default, or none
    zone_source: str

    @property
    def utc_hour(self) -> int | None:
        """The UTC hour recorded in the send ledger."""
        return self.at.hour if self.at is not None else None

    @property
    def ledger_source(self) -> str:
        """`hour_source` in the send ledger: the source, with the zone when the hour was a local one."""
        return f"{self.source} {self.zone}" if self.source == "default" else self.source

    def describe(self) -> str:
        """For people: `10:00 Asia/Tokyo (country JP) = 01:00 UTC on 2026-12-01 (default)`."""
        if self.at is None or self.hour is None:
            return "as soon as due (no send hour)"
        utc = f"{self.at:%H:%M} UTC on {self.at.date().isoformat()}"
        if self.source != "default":
            return f"{utc} ({self.source}, a UTC hour from history)"
        return f"{self.hour:02d}:00 {self.zone} ({self.zone_source}) = {utc} (default)"


def plan_send(history: Mapping[str, Any], default_hour: int | None, contact: Contact, on: date) -> SendPlan:
    """Where and when a step due on `on` goes out (see the module docstring for the rules)."""
    hour, source = send_hour(history, 0 if default_hour is None else default_hour)
    if source == "default" and default_hour is None:
        return SendPlan(None, "UTC", None, "none", "")
    if source != "default":
        return SendPlan(hour, "UTC", datetime.combine(on, time(hour), tzinfo=UTC), source, "history (UTC)")
    zone, zone_source = contact_zone(contact)
    local = datetime.combine(on, time(hour), tzinfo=ZoneInfo(zone))
    return SendPlan(hour, zone, local.astimezone(UTC), source, zone_source)


def send_due(plan: SendPlan, now: datetime) -> bool:
    """Whether the step goes out in this run: its instant has come (run the job hourly to honour hours).

    A job run once a day still sends everything due, at most a day late: the instant is fixed, so a later run
    always passes it, and nothing is starved.
    """
    return plan.at is None or now >= plan.at
