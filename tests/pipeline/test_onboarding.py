from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from crm_activation.campaign.schema import SourceConfig
from crm_activation.pipeline.onboarding import ContactParser, FieldIssue, country_code, parse_bool, typed_value
from crm_activation.pipeline.sources import SourceRow, open_rows
from crm_activation.sdk.identifier_kinds import IdentifierKind as K

PII = ("ann@example.com", "+1 415 555 0100", "Ann", "Lee")


def row(fields: dict[str, Any], number: int = 7, error: str | None = None) -> SourceRow:
    return SourceRow("crm.csv", number, fields, error)


def parser(columns: dict[str, str] | None = None) -> ContactParser:
    return ContactParser(columns or {}, default_stage="awareness")


def full_row(**overrides: Any) -> dict[str, Any]:
    fields = {
        "contact_id": " c-1 ",
        "email": " ann@example.com ",
        "phone": "+1 415 555 0100",
        "first_name": "Ann",
        "last_name": "Lee",
        "city": "",
        "country": "us",
        "maid": "",
        "segment": "",
        "lifecycle_stage": "active",
        "funnel_stage": "",
        "preferred_categories": "web development| design ;;writing",
        "score": "0.75",
        "consent_ad_user_data": "Yes",
        "consent_ad_personalization": "denied",
        "consent_email": "",
        "email_unsubscribed": "",
        "history_hires": "3",
        "history_last_project": "logo design",
        "history_ratio": "-0.5",
        "plan": "pro",
        "account_no": "00123",
        "visits": "12",
    }
    fields.update(overrides)
    return fields


def test_full_row_becomes_a_typed_contact() -> None:
    parsed = parser().parse(row(full_row()))
    assert parsed.issues == ()
    contact = parsed.contact
    assert contact is not None
    assert contact.contact_id == "c-1"
    assert contact.identifiers == {
        K.EMAIL: "ann@example.com",
        K.PHONE: "+1 415 555 0100",
        K.FIRST_NAME: "Ann",
        K.LAST_NAME: "Lee",
        K.COUNTRY: "US",
    }
    attrs = contact.attributes
    assert attrs.segment is None
    assert attrs.lifecycle_stage == "active"
    assert attrs.funnel_stage == "awareness"  # blank → the default stage
    assert attrs.preferred_categories == ("web development", "design", "writing")
    assert attrs.consent.ad_user_data is True
    assert attrs.consent.ad_personalization is False
    assert attrs.consent.email_marketing is None
    assert attrs.email_unsubscribed is False
    assert attrs.history == {"hires": 3, "last_project": "logo design", "ratio": -0.5}
    assert attrs.extra == {"score": 0.75, "plan": "pro", "account_no": "00123", "visits": 12}
    assert attrs.value("score") == 0.75 and attrs.value("hires") == 3
    assert (contact.source, contact.row) == ("crm.csv", 7)


def test_column_mapping_and_renames() -> None:
    columns = {"contact_id": "crm_id", "email": "Email Address", "history_hires": "Hires", "tier": "Plan"}
    fields = {"crm_id": "42", "Email Address": "a@b.example", "email": "ignored-as-extra", "Hires": "2", "Plan": "x"}
    contact = parser(columns).parse(row(fields)).contact
    assert contact is not None
    assert contact.contact_id == "42"
    assert contact.identifiers == {K.EMAIL: "a@b.example"}
    assert contact.attributes.history == {"hires": 2}
    assert contact.attributes.extra == {"email": "ignored-as-extra", "tier": "x"}
    assert parser(columns).missing_columns(["crm_id", "Email Address"]) == ["Hires", "Plan"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("FALSE", False), ("yes", True), ("No", False), ("y", True), ("N", False), ("1", True),
     ("0", False), ("granted", True), ("Denied", False), ("", None), ("  ", None), (True, True), (0, False),
     (None, None)],
)
def test_booleans(text: Any, expected: bool | None) -> None:
    assert parse_bool(text) is expected
    parsed = parser().parse(row({"contact_id": "c", "consent_email": text}))
    assert parsed.contact is not None and parsed.contact.attributes.consent.email_marketing is expected


def test_unparseable_consent_is_a_non_fatal_issue_naming_the_field() -> None:
    parsed = parser({"consent_ad_user_data": "AdConsent"}).parse(row({"contact_id": "c", "AdConsent": "maybe"}))
    assert parsed.contact is not None
    assert parsed.contact.attributes.consent.ad_user_data is None
    assert parsed.issues == (FieldIssue("crm.csv", 7, "AdConsent", "not a yes/no value; not recorded", False),)
    assert "maybe" not in str(parsed.issues[0])
    with pytest.raises(ValueError):
        parse_bool("maybe")


def test_unparseable_unsubscribe_fails_safe() -> None:
    parsed = parser().parse(row({"contact_id": "c", "email_unsubscribed": "perhaps"}))
    assert parsed.contact is not None and parsed.contact.attributes.email_unsubscribed is True
    (issue,) = parsed.issues
    assert (issue.field, issue.fatal) == ("email_unsubscribed", False)
    assert parser().parse(row({"contact_id": "c", "email_unsubscribed": "Y"})).contact.attributes.email_unsubscribed


def test_bad_score_is_non_fatal() -> None:
    parsed = parser().parse(row({"contact_id": "c", "score": "high"}))
    assert parsed.contact is not None and parsed.contact.attributes.extra == {"score": None}
    assert [(i.field, i.fatal) for i in parsed.issues] == [("score", False)]


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        ({"contact_id": "  "}, "contact_id", "missing contact id"),
        ({"email": "ann@example.com"}, "contact_id", "missing contact id"),
    ],
)
def test_fatal_issues_name_file_row_and_field(fields: dict[str, Any], field: str, reason: str) -> None:
    parsed = parser().parse(row({**fields, "first_name": "Ann", "email": "ann@example.com"}, number=12))
    assert parsed.contact is None
    assert parsed.issues == (FieldIssue("crm.csv", 12, field, reason, True),)
    assert str(parsed.issues[0]) == f"crm.csv:12: {field}: {reason}"


def test_mapped_contact_id_issue_names_the_source_column() -> None:
    parsed = parser({"contact_id": "crm_id"}).parse(row({"email": "x"}))
    assert [(i.field, i.fatal) for i in parsed.issues] == [("crm_id", True)]


def test_malformed_source_row_is_one_fatal_issue() -> None:
    parsed = parser().parse(row({"contact_id": "c"}, error="wrong number of cells (the header has 2)"))
    assert parsed.contact is None
    assert parsed.issues == (FieldIssue("crm.csv", 7, "*", "wrong number of cells (the header has 2)", True),)


def test_malformed_source_row_names_the_column_the_source_blames_and_keeps_its_detail() -> None:
    bad = SourceRow("crm.csv", 9, {}, "not valid UTF-8", "city", "not valid UTF-8: byte 0xFC at offset 4 of line 9")
    (issue,) = parser().parse(bad).issues
    assert (issue.field, issue.reason, issue.fatal) == ("city", "not valid UTF-8", True)
    assert str(issue) == "crm.csv:9: city: not valid UTF-8: byte 0xFC at offset 4 of line 9"


def test_all_issues_of_a_row_are_reported_and_no_reason_holds_pii() -> None:
    fields = full_row(contact_id="", country="Narnia", consent_email="sometimes", score="n/a")
    parsed = parser().parse(row(fields))
    assert parsed.contact is None
    assert sorted((i.field, i.fatal) for i in parsed.issues) == [
        ("consent_email", False),
        ("contact_id", True),
        ("country", False),
        ("score", False),
    ]
    text = " ".join(str(i) for i in parsed.issues)
    for value in (*PII, "Narnia", "sometimes", "n/a"):
        assert value not in text


def test_countries() -> None:
    assert country_code("gb") == "GB"
    assert country_code(" United Kingdom ") == "GB"
    assert country_code("U.K.") == "GB"
    assert country_code("DEU") == "DE"
    assert country_code("NO") == "NO"
    assert country_code("XX") is None and country_code("EU") is None


def test_identifiers_are_only_trimmed_and_empties_dropped() -> None:
    fields = {"contact_id": 17, "email": "  Ann@Example.COM ", "maid": "  ", "uid2": None, "rampid": "XY123"}
    contact = parser().parse(row(fields)).contact
    assert contact is not None
    assert contact.contact_id == "17"
    assert contact.identifiers == {K.EMAIL: "Ann@Example.COM", K.RAMPID: "XY123"}


def test_jsonl_native_values() -> None:
    fields = {
        "contact_id": "c",
        "preferred_categories": ["design", " video "],
        "consent_ad_user_data": True,
        "score": 0.4,
        "history_projects": ["a", "b"],
        "nested": {"k": 1},
        "funnel_stage": "conversion",
    }
    contact = parser().parse(row(fields)).contact
    assert contact is not None
    assert contact.attributes.preferred_categories == ("design", "video")
    assert contact.attributes.consent.ad_user_data is True
    assert contact.attributes.history == {"projects": ["a", "b"]}
    assert contact.attributes.extra == {"score": 0.4, "nested": {"k": 1}}
    assert contact.attributes.funnel_stage == "conversion"
    json_list = parser().parse(row({"contact_id": "c", "preferred_categories": '["a", "b|c"]'})).contact
    assert json_list is not None and json_list.attributes.preferred_categories == ("a", "b|c")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12", 12), ("-3", -3), ("0", 0), ("0.25", 0.25), ("-.5", -0.5), ("1e3", 1000.0), ("1.5E-2", 0.015),
     ("007", "007"), ("1_000", "1_000"), ("12a", "12a"), (" 4 ", 4), ("", None), ("٣", "٣"), ("+5", "+5")],
)
def test_typed_values(text: str, expected: Any) -> None:
    result = typed_value(text)
    assert result == expected and type(result) is type(expected)


def test_end_to_end_from_a_csv_file(tmp_path: Path) -> None:
    (tmp_path / "crm.csv").write_text(
        "contact_id,email,country,consent_email\nc1,a@x.example,US,yes\nc2,b@x.example,US\n,c@x.example,GB,no\n",
        encoding="utf-8",
    )
    p = parser()
    results = [p.parse(r) for r in open_rows(SourceConfig(type="csv", path="crm.csv"), tmp_path)]
    assert [r.contact.contact_id if r.contact else None for r in results] == ["c1", None, None]
    assert [i.row for r in results for i in r.issues] == [3, 4]
    assert results[1].issues[0].field == "*"
