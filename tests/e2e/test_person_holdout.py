"""The holdout holds per person, on every platform and in every inbox, whatever the CRM export looks like.

Hypothesis writes messy exports: several records of one person, each carrying some of the person's
identifiers in a random spelling (case, spaces, Gmail dots, `+tags`, googlemail.com, national and international
phones, pre-hashed values, mobile ad ids with or without hyphens), duplicate contact ids and rows without one.
The bundled campaign then runs against all the platform sandboxes and the SMTP relay at once. No identifier of
a control record, in any spelling a platform matches, may appear in any request, and no message may go to a
control record's mailbox.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import random
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_activation.campaign.loader import LoadedCampaign, load_campaign
from crm_activation.cli.local_sandboxes import start_sandboxes
from crm_activation.email.smtp_relay import SmtpSandbox
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.holdout import Group
from crm_activation.sdk.errors import InvalidIdentifier
from crm_activation.sdk.normalization import email_amazon, email_google, email_mailbox, phone_e164, sha256_hex
from crm_activation.sdk.plugins import collect_connectors, make_plugin_manager

from .conftest import ROOT
from .test_demo import sandbox_env

PEOPLE = 4
COLUMNS = ["contact_id", "email", "phone", "maid", "external_id", "country", "score", "consent_ad_user_data",
           "consent_ad_personalization", "consent_email"]


@dataclasses.dataclass(frozen=True)
class Person:
    email: str
    phone: str  # national US digits, e.g. "2015550107"
    maid: str
    external_id: str


def person(i: int) -> Person:
    domain = "gmail.com" if i % 2 else "example.com"
    maid = str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4))
    return Person(f"pat.{i}.lee@{domain}", f"20155501{i:02d}", maid, f"crm-{i:04d}-x")


def email_spelling(email: str, how: int) -> str:
    local, _, domain = email.partition("@")
    gmail = domain == "gmail.com"
    return [
        email,
        f"  {email.upper()} ",
        f"{local.replace('.', '')}@{domain}" if gmail else email.title(),
        f"{local}+news@{domain}",
        f"{local}@googlemail.com" if gmail else f"{local}+x@{domain.upper()}",
        sha256_hex(email.lower()),
    ][how]


def phone_spelling(digits: str, how: int) -> str:
    return [
        f"({digits[:3]}) {digits[3:6]}-{digits[6:]}",
        f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
        f"001-{digits}",
        f"1{digits}",
        sha256_hex(f"1{digits}"),
        sha256_hex(f"+1{digits}"),
    ][how]


def maid_spelling(maid: str, how: int) -> str:
    return [maid, maid.upper(), maid.replace("-", ""), maid.upper().replace("-", "")][how]


record = st.fixed_dictionaries(
    {
        "id": st.integers(0, 59).map(lambda n: f"R{n:02d}" if n < 56 else ""),  # duplicates and blanks too
        "person": st.integers(0, PEOPLE - 1),
        "email": st.one_of(st.none(), st.integers(0, 5)),
        "phone": st.one_of(st.none(), st.integers(0, 5)),
        "maid": st.one_of(st.none(), st.integers(0, 3)),
        "external_id": st.booleans(),
        "country": st.sampled_from(["US", "US", "US", "GB", "FR"]),
    }
)


def to_row(draw: dict[str, Any]) -> dict[str, str]:
    who = person(draw["person"])
    return {
        "contact_id": draw["id"],
        "email": "" if draw["email"] is None else email_spelling(who.email, draw["email"]),
        "phone": "" if draw["phone"] is None else phone_spelling(who.phone, draw["phone"]),
        "maid": "" if draw["maid"] is None else maid_spelling(who.maid, draw["maid"]),
        "external_id": who.external_id if draw["external_id"] else "",
        "country": draw["country"],
        "score": "0.9",
        "consent_ad_user_data": "yes",
        "consent_ad_personalization": "yes",
        "consent_email": "yes",
    }


def matched_spellings(row: dict[str, str]) -> set[str]:
    """Every form in which a platform could receive one of the row's identifiers (lower case)."""
    values: set[str] = set()
    email, phone, maid = row["email"].strip(), row["phone"].strip(), row["maid"].strip()
    if len(email) == 64:
        values.add(email.lower())
    elif email:
        forms = (email_google, email_mailbox, email_amazon)
        values |= {sha256_hex(email.lower()), *(sha256_hex(form(email, None)) for form in forms)}
    if len(phone) == 64:
        values.add(phone.lower())
    elif phone:
        try:
            e164 = phone_e164(phone, row["country"] or None)
            values |= {sha256_hex(e164), sha256_hex(e164[1:])}
        except InvalidIdentifier:
            pass
    if maid:
        hex32 = maid.lower().replace("-", "")
        values |= {hex32, str(uuid.UUID(hex32))}
    if row["external_id"]:
        values.add(row["external_id"].lower())
    return values


@pytest.fixture(scope="module")
def platforms() -> Iterator[tuple[LoadedCampaign, dict[str, Any], SmtpSandbox]]:
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in sandbox_env().items() if k.startswith("CRM_ACTIVATION_")})
    loaded = load_campaign(ROOT / "examples" / "campaign.yaml")
    servers = start_sandboxes(
        collect_connectors(make_plugin_manager()), list(loaded.campaign.platforms), dict(loaded.campaign.platforms)
    )
    relay = SmtpSandbox().start()
    try:
        yield loaded, servers, relay
    finally:
        relay.stop()
        for server in servers.values():
            server.stop()
        os.environ.clear()
        os.environ.update(saved)


def campaign_on(loaded: LoadedCampaign, contacts: Path) -> LoadedCampaign:
    audience = loaded.campaign.audience
    source = audience.source.model_copy(update={"path": str(contacts)})
    audience = audience.model_copy(update={"source": source, "identity_table": None, "suppression": None})
    return dataclasses.replace(loaded, campaign=loaded.campaign.model_copy(update={"audience": audience}))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draws=st.lists(record, min_size=4, max_size=30))
def test_no_control_person_is_reached_on_any_platform_or_by_email(draws, platforms, tmp_path_factory):
    loaded, servers, relay = platforms
    for server in servers.values():
        server.app.reset()
    mail_before = len(relay.received)
    folder: Path = tmp_path_factory.mktemp("people")
    rows = [to_row(draw) for draw in draws]
    with (folder / "contacts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    options = RunOptions(
        state=folder / "state.sqlite",
        base_urls={slug: server.url for slug, server in servers.items()},
        smtp=(relay.host, relay.port),
        allow_large_changes=True,  # the drawn rows are often mostly rejects: the guardrails are not under test here
    )
    summary = Engine(campaign_on(loaded, folder / "contacts.csv"), options).run()
    assert summary.status == "succeeded", {slug: p.error for slug, p in summary.platforms.items() if p.error}
    assert summary.rows_read == sum(summary.outcomes.values()) == len(rows)

    with sqlite3.connect(folder / "state.sqlite") as ledger:
        groups = dict(ledger.execute("SELECT contact_id, grp FROM holdout"))
    control_ids = {cid for cid, group in groups.items() if group == Group.CONTROL.value}
    control_rows = [row for row in rows if row["contact_id"] in control_ids]
    forbidden = set().union(*(matched_spellings(row) for row in control_rows)) if control_rows else set()
    sent = "\n".join(r["body"] or "" for server in servers.values() for r in server.app.requests).lower()
    assert not [value for value in forbidden if value in sent], "a control person reached an ad platform"

    control_mailboxes = {email_mailbox(r["email"], None) for r in control_rows if "@" in r["email"]}
    recipients = [to for mail in relay.received[mail_before:] for to in mail.recipients]
    assert not {email_mailbox(to, None) for to in recipients} & control_mailboxes, "a control person got e-mail"
    assert len({email_mailbox(to, None) for to in recipients}) == len(recipients), "a mailbox got two messages"

    accepted = {row["contact_id"]: row for row in reversed(rows) if row["contact_id"]}  # a repeated id is rejected
    test_rows = [row for cid, row in accepted.items() if groups.get(cid) == Group.TEST.value]
    if any(row["email"] and len(row["email"].strip()) != 64 for row in test_rows):
        assert recipients, "test contacts with an address got no e-mail: the check above could not fail"
