"""ContactStream: rows in, accepted contacts out; every refused row counted and written where it is refused."""

from __future__ import annotations

import csv
from pathlib import Path

from crm_activation.campaign.schema import AudienceSourceConfig
from crm_activation.pipeline.contact_stream import ContactStream
from crm_activation.pipeline.rejects import RejectsWriter
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.sdk.summary import RunSummary


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_duplicates_and_unreadable_rows_are_refused_and_the_match_table_enriches(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "contacts.csv",
        [
            {"contact_id": "c1", "country": "US", "consent_email": "maybe"},
            {"contact_id": "c2", "country": "Atlantis", "consent_email": ""},
            {"contact_id": "c1", "country": "US", "consent_email": ""},
            {"contact_id": "c3", "country": "GB", "consent_email": ""},
        ],
    )
    write_csv(tmp_path / "ids.csv", [{"contact_id": "c3", "maid": "m-3"}])
    audience = AudienceSourceConfig.model_validate(
        {"source": {"type": "csv", "path": "contacts.csv"}, "identity_table": {"type": "csv", "path": "ids.csv"}}
    )
    summary = RunSummary(campaign="c", mode="incremental")
    rejects = RejectsWriter(tmp_path / "rejects.csv")
    stream = ContactStream(audience, tmp_path, "awareness", summary, rejects)

    contacts = list(stream)
    rejects.close()

    assert [c.contact_id for c in contacts] == ["c1", "c3"]
    assert contacts[1].identifiers[IdentifierKind.MAID] == "m-3"
    assert stream.identity_stats == {"maid": 1}
    assert summary.rows_read == 4 and summary.field_issues == 1
    assert summary.outcomes["rejected"] == 2
    assert summary.rejected_reasons == {
        "country: not an ISO 3166-1 country code": 1,
        "contact_id: duplicate contact_id": 1,
    }
    with (tmp_path / "rejects.csv").open() as handle:
        written = [(r["row"], r["field"], r["row_rejected"]) for r in csv.DictReader(handle)]
    assert written == [("2", "consent_email", "no"), ("3", "country", "yes"), ("4", "contact_id", "yes")]


def test_without_a_match_table_there_are_no_identity_stats(tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", [{"contact_id": "c1", "country": "US"}])
    audience = AudienceSourceConfig.model_validate({"source": {"type": "csv", "path": "contacts.csv"}})
    stream = ContactStream(audience, tmp_path, "awareness", RunSummary(campaign="c", mode="full"), RejectsWriter(None))
    assert len(list(stream)) == 1 and stream.identity_stats is None
