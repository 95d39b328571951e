"""The default send hour is the contact's local hour: zone from a `timezone` column, else the country's main zone.

Clocks are injected (`now=`); the UTC instant is computed for the step's date, so daylight saving moves it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from crm_activation.email.channel import EmailChannel
from crm_activation.email.samples import sample_config
from crm_activation.email.send_time import contact_zone, country_zones, plan_send, send_due, valid_zone
from crm_activation.email.smtp import SmtpTransport

from .conftest import make_contact


def channel(db, server, **config) -> EmailChannel:
    creds = server.credentials()
    smtp = SmtpTransport(creds, sleep=lambda _: None, initial_wait=0.001, max_attempts=2)
    return EmailChannel(sample_config().model_copy(update=config), creds, db, smtp, campaign="wb")


def test_a_tokyo_contact_gets_the_default_hour_in_tokyo(db, smtp_server):
    chan = channel(db, smtp_server, default_send_hour=10)
    tokyo = make_contact("t1", identifiers={"country": "JP"}, extra={"timezone": "Asia/Tokyo"})
    early = chan.deliver(tokyo, now=datetime(2026, 12, 1, 0, 59, tzinfo=UTC))
    assert early.status == "waiting_hour"
    assert early.detail == "10:00 Asia/Tokyo (timezone) = 01:00 UTC on 2026-12-01 (default)"
    assert chan.deliver(tokyo, now=datetime(2026, 12, 1, 1, 0, tzinfo=UTC)).status == "sent"  # 10:00 in Tokyo
    row = db.execute("SELECT scheduled_hour, hour_source FROM email_sends WHERE contact_id='t1'").fetchone()
    assert tuple(row) == (1, "default Asia/Tokyo")


def test_the_utc_hour_follows_daylight_saving_on_the_send_date(db, smtp_server):
    chan = channel(db, smtp_server, default_send_hour=10)
    winter, summer = make_contact("w1"), make_contact("s1")  # country US: America/New_York
    assert chan.deliver(winter, now=datetime(2026, 1, 15, 14, 59, tzinfo=UTC)).status == "waiting_hour"
    assert chan.deliver(winter, now=datetime(2026, 1, 15, 15, 0, tzinfo=UTC)).status == "sent"  # EST, UTC-5
    assert chan.deliver(summer, now=datetime(2026, 7, 15, 13, 59, tzinfo=UTC)).status == "waiting_hour"
    assert chan.deliver(summer, now=datetime(2026, 7, 15, 14, 0, tzinfo=UTC)).status == "sent"  # EDT, UTC-4


def test_history_hours_stay_utc_and_no_default_sends_when_due(db, smtp_server):
    chan = channel(db, smtp_server, default_send_hour=None)
    learned = make_contact("h1", history={"best_hour": 9}, extra={"timezone": "Asia/Tokyo"})
    assert chan.deliver(learned, now=datetime(2026, 12, 1, 8, 0, tzinfo=UTC)).status == "waiting_hour"
    assert chan.deliver(learned, now=datetime(2026, 12, 1, 9, 0, tzinfo=UTC)).status == "sent"
    assert chan.deliver(make_contact("n1"), now=datetime(2026, 12, 1, 0, 0, tzinfo=UTC)).status == "sent"
    rows = dict(db.execute("SELECT contact_id, hour_source FROM email_sends").fetchall())
    assert rows == {"h1": "best_hour", "n1": "none"}


def test_a_once_a_day_job_is_never_starved():
    contact = make_contact("late", extra={"timezone": "America/Los_Angeles"})
    plan = plan_send({}, 23, contact, date(2026, 12, 1))  # 23:00 in LA = 07:00 UTC the next day
    assert plan.at == datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
    assert not send_due(plan, datetime(2026, 12, 2, 6, 0, tzinfo=UTC))
    assert send_due(plan, datetime(2026, 12, 3, 6, 0, tzinfo=UTC))  # a day later it goes, whatever the hour


@pytest.mark.parametrize(("value", "expected"), [
    ("Asia/Tokyo", "Asia/Tokyo"), (" Europe/Berlin ", "Europe/Berlin"), ("UTC", "UTC"),
    ("Mars/Olympus", None), ("../../etc/passwd", None), ("", None), (None, None), (9, None), ("asia/tokyo", None),
])
def test_only_iana_zone_names_are_taken(value, expected):
    assert valid_zone(value) == expected


def test_country_main_zones_come_from_the_tz_database():
    zones = country_zones()
    assert len(zones) > 240
    assert (zones["JP"], zones["DE"], zones["US"], zones["IN"]) == ("Asia/Tokyo", "Europe/Berlin",
                                                                    "America/New_York", "Asia/Kolkata")
    # several zones: the most populous one, not zone.tab's first row
    assert (zones["AU"], zones["BR"], zones["CA"], zones["RU"]) == ("Australia/Sydney", "America/Sao_Paulo",
                                                                    "America/Toronto", "Europe/Moscow")
    assert all(valid_zone(zone) for zone in zones.values())
    assert contact_zone(make_contact("x", identifiers={"country": "BR"})) == ("America/Sao_Paulo", "country BR")
    assert contact_zone(make_contact("y", extra={"timezone": "Nope"}, identifiers={"country": ""}))[0] == "UTC"
