"""ContactStream: rows in, accepted contacts out; every refused row counted and written where it is refused."""

from __future__ import annotations

import csv
from pathlib import Path

from crm_activation.campaign.schema import AudienceSourceConfig
from crm_activation.pipeline.contact_stream import ContactStream
from crm_activation.pipeline.onboarding import ContactParser
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
    stream = ContactStream(audience, tmp_path, ContactParser(audience.columns, "awareness"), summary, rejects)

    contacts = list(stream)
    rejects.close()

    assert [c.contact_id for c in contacts] == ["c1", "c2", "c3"]  # c2 kept, without its unknown country
    assert contacts[1].country is None
    assert contacts[2].identifiers[IdentifierKind.MAID] == "m-3"
    assert stream.identity_stats == {"maid": 1}
    assert summary.rows_read == 4 and summary.field_issues == 2
    assert summary.outcomes["rejected"] == 1
    assert summary.rejected_reasons == {
        "contact_id: duplicate contact_id": 1,
    }
    with (tmp_path / "rejects.csv").open() as handle:
        written = [(r["row"], r["field"], r["row_rejected"]) for r in csv.DictReader(handle)]
    assert written == [("2", "consent_email", "no"), ("3", "country", "no"), ("4", "contact_id", "yes")]


def test_without_a_match_table_there_are_no_identity_stats(tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", [{"contact_id": "c1", "country": "US"}])
    audience = AudienceSourceConfig.model_validate({"source": {"type": "csv", "path": "contacts.csv"}})
    parser = ContactParser(audience.columns, "awareness")
    stream = ContactStream(audience, tmp_path, parser, RunSummary(campaign="c", mode="full"), RejectsWriter(None))
    assert len(list(stream)) == 1 and stream.identity_stats is None


def test_summary_groups_rejections_by_reason_while_the_rejects_file_keeps_each_rows_particulars(
    tmp_path: Path,
) -> None:
    (tmp_path / "contacts.csv").write_bytes(
        b"contact_id,country,city\n"
        b"c1,US,Bern\n"
        b"c2,US\n"  # line 3: too few cells
        b"c3,US,Bern,extra\n"  # line 4: too many
        b"c4,US,Z\xfcrich\n"  # line 5: not UTF-8, in column city
        b'c5,US,"never closed\n'  # line 6: only this line is lost
        b"c6,GB,Bern\n"
    )
    audience = AudienceSourceConfig.model_validate({"source": {"type": "csv", "path": "contacts.csv"}})
    summary = RunSummary(campaign="c", mode="incremental")
    rejects = RejectsWriter(tmp_path / "rejects.csv")
    contacts = list(ContactStream(audience, tmp_path, ContactParser(audience.columns, "awareness"), summary, rejects))
    rejects.close()

    assert [c.contact_id for c in contacts] == ["c1", "c6"]
    assert summary.rejected_reasons == {
        "*: wrong number of cells (the header has 3)": 2,
        "city: not valid UTF-8": 1,
        "city: unreadable CSV record: a quote is never closed": 1,
    }
    with (tmp_path / "rejects.csv").open() as handle:
        written = [(r["row"], r["field"], r["reason"]) for r in csv.DictReader(handle)]
    assert written == [
        ("3", "*", "record on line 3 has 2 cells, the header has 3"),
        ("4", "*", "record on line 4 has 4 cells, the header has 3"),
        ("5", "city", "not valid UTF-8: byte 0xFC at offset 7 of line 5"),
        ("6", "city", "unreadable CSV record: a quote is never closed (the record ran over lines 6-7; "
         "only line 6 is rejected, reading resumed at line 7)"),
    ]
