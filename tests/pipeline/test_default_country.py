"""The campaign's `default_country`: normalization of country-less contacts falls back to it, nothing else does.

Also the payload rules around pre-hashed values (whole-value fields pass through, part-of-value fields such as
Meta's FI and DOBY are left out, clear fields say the value is hashed) and onboarding's country handling.
"""

from __future__ import annotations

import csv
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from crm_activation import Contact, IdentifierKind, SandboxServer
from crm_activation.campaign.loader import CampaignFileError, load_campaign
from crm_activation.connectors.dv360 import Dv360Connector
from crm_activation.connectors.facebook import FacebookConnector
from crm_activation.connectors.facebook.sandbox import FacebookSandbox
from crm_activation.connectors.facebook.settings import FacebookCredentials
from crm_activation.email.delivery import EMAIL_PAYLOAD
from crm_activation.normalization import sha256_hex
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.pipeline.onboarding import ContactParser
from crm_activation.pipeline.payload import NormalizationCache, PayloadBuilder
from crm_activation.pipeline.sources import SourceRow

TOKEN = "EAAGdefaultCountryTOKEN0123456789"


def facebook(default_country: str | None = None) -> PayloadBuilder:
    return PayloadBuilder(
        "facebook", FacebookConnector.identifier_rules, FacebookConnector.match_keys, default_country=default_country
    )


def contact(**identifiers: str) -> Contact:
    return Contact(contact_id="c1", identifiers={IdentifierKind(k): v for k, v in identifiers.items()})


def test_a_contact_without_country_is_normalized_with_the_campaigns_default() -> None:
    person = contact(phone="020 7946 0958", state="California", zip="2134")
    assert facebook().build(person, NormalizationCache()).member is None  # no country: a national number is refused
    built = facebook("US").build(contact(phone="(415) 555-0123", state="California", zip="2134"), NormalizationCache())
    assert built.member is not None and not built.problems
    fields = built.member.fields
    assert fields["PHONE"] == sha256_hex("14155550123")
    assert fields["ST"] == sha256_hex("ca") and fields["ZIP"] == sha256_hex("02134")
    assert "COUNTRY" not in fields and built.member.country is None  # eligibility keeps the contact's own (none)
    gb = facebook("GB").build(person, NormalizationCache()).member
    assert gb is not None and gb.fields["PHONE"] == sha256_hex("442079460958")


def test_the_contacts_own_country_wins_over_the_default() -> None:
    member = facebook("GB").build(contact(phone="(415) 555-0123", country="US"), NormalizationCache()).member
    assert member is not None and member.fields["PHONE"] == sha256_hex("14155550123") and member.country == "US"


def test_meta_gets_gen_dob_and_fi_and_part_fields_are_left_out_for_pre_hashed_values() -> None:
    raw = contact(email="ann@example.com", gender="Female", date_of_birth="1985-07-04", first_name="Ann")
    member = facebook().build(raw, NormalizationCache()).member
    assert member is not None
    expected = {"GEN": "f", "DOBY": "1985", "DOBM": "07", "DOBD": "04", "FN": "ann", "FI": "a"}
    assert {key: member.fields[key] for key in expected} == {key: sha256_hex(v) for key, v in expected.items()}
    digests = {kind: sha256_hex(kind) for kind in ("date_of_birth", "first_name", "gender")}
    hashed = facebook().build(contact(email="ann@example.com", **digests), NormalizationCache())
    assert hashed.member is not None and not hashed.problems
    fields = hashed.member.fields
    assert fields["FN"] == digests["first_name"] and fields["GEN"] == digests["gender"]  # whole values pass
    assert not {"FI", "DOBY", "DOBM", "DOBD"} & set(fields)  # nothing to take from a digest


def test_a_pre_hashed_email_is_not_called_malformed_by_clear_rules() -> None:
    digest = sha256_hex("ann@example.com")
    built = EMAIL_PAYLOAD.build(contact(email=digest.upper()), NormalizationCache())
    assert built.member is None
    assert [p.reason for p in built.problems] == ["email is already SHA-256 hashed; email needs it in clear"]
    dv360 = PayloadBuilder("dv360", Dv360Connector.identifier_rules, Dv360Connector.match_keys)
    member = dv360.build(contact(email=digest, zip=sha256_hex("94103")), NormalizationCache())
    assert member.member is not None and member.member.fields["hashedEmails"] == digest
    assert [p.reason for p in member.problems] == ["zip is already SHA-256 hashed; dv360 needs it in clear"]


# -- onboarding: country names, unknown countries ------------------------------------------------------------------
def parse(country: str) -> tuple[Contact | None, list[tuple[str, bool]]]:
    parsed = ContactParser({}, "awareness").parse(SourceRow("crm.csv", 5, {"contact_id": "c1", "country": country}))
    return parsed.contact, [(issue.field, issue.fatal) for issue in parsed.issues]


@pytest.mark.parametrize(("text", "code"), [("Deutschland", "DE"), ("U.S.", "US"), ("England", "GB"), ("fra", "FR")])
def test_onboarding_stores_country_names_as_codes(text: str, code: str) -> None:
    parsed, issues = parse(text)
    assert parsed is not None and parsed.country == code and issues == []


def test_an_unknown_country_drops_the_field_never_the_contact() -> None:
    parsed, issues = parse("Atlantis")
    assert parsed is not None and parsed.country is None
    assert issues == [("country", False)]


# -- the campaign key, through a whole run -------------------------------------------------------------------------
CAMPAIGN = """\
campaign: default-country
default_country: {default}
audience:
  source: {{type: csv, path: contacts.csv}}
holdout: {{fraction: 0.01, salt: all-test}}
channels:
  default: [facebook]
platforms:
  facebook:
    account: {{ad_account_id: "act_777", base_url: "{url}", requests_per_second: 500}}
    audiences:
      awareness: {{name: "DC awareness"}}
state: {{path: state.sqlite}}
http: {{max_attempts: 2, initial_wait: 0.001, max_wait: 0.01, read_timeout: 5}}
"""


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FacebookSandbox, SandboxServer]]:
    monkeypatch.setenv("CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN", TOKEN)
    app = FacebookSandbox(FacebookCredentials(access_token=SecretStr(TOKEN)))
    with SandboxServer(app) as server:
        yield app, server


def test_default_country_is_validated_and_upper_cased(tmp_path: Path) -> None:
    path = tmp_path / "campaign.yaml"
    path.write_text(CAMPAIGN.format(default="gb", url="http://127.0.0.1:9"))
    (tmp_path / "contacts.csv").write_text("contact_id\n")
    assert load_campaign(path).campaign.default_country == "GB"
    for bad in ("UK", "XX", "Germany", "DEU"):
        path.write_text(CAMPAIGN.format(default=bad, url="http://127.0.0.1:9"))
        with pytest.raises(CampaignFileError, match=r"default_country: .*alpha-2"):
            load_campaign(path)


def test_in_a_run_eligibility_still_goes_by_the_contacts_own_country(
    tmp_path: Path, sandbox: tuple[FacebookSandbox, SandboxServer]
) -> None:
    app, server = sandbox
    rows = [
        {"contact_id": "uk-1", "phone": "020 7946 0958", "country": ""},  # no country: not offered any channel
        {"contact_id": "us-1", "phone": "(415) 555-0123", "country": "United States"},  # its own country wins
        {"contact_id": "xx-1", "phone": "07911 123456", "country": "Atlantis"},  # unknown: dropped, row kept
    ]
    with (tmp_path / "contacts.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["contact_id", "phone", "country"])
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "campaign.yaml").write_text(textwrap.dedent(CAMPAIGN.format(default="GB", url=server.url)))

    summary = Engine(load_campaign(tmp_path / "campaign.yaml"), RunOptions(rejects=tmp_path / "rejects.csv")).run()

    assert summary.status == "succeeded", summary.error
    assert (summary.outcomes["rejected"], summary.outcomes["ineligible"]) == (0, 2)
    assert summary.ineligible_reasons == {"no country": 2}
    sent = [json.loads(r["body"])["payload"] for r in app.requests if r["path"].endswith("/users")]
    assert [p["schema"] for p in sent] == [["PHONE", "COUNTRY"]]
    assert sent[0]["data"] == [[sha256_hex("14155550123"), sha256_hex("us")]]  # the default is nobody's country
    with (tmp_path / "rejects.csv").open() as handle:
        assert [(r["row"], r["field"], r["row_rejected"]) for r in csv.DictReader(handle)] == [("4", "country", "no")]
