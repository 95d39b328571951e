"""Reading the audience: every refused row counted and written where it is refused; the match table enriches.

Driven through the engine's dry run (no platform is contacted), so what is checked is what a run reports.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.sdk.summary import RunSummary

pytestmark = pytest.mark.usefixtures("sandbox_credentials")
CAMPAIGN = """\
campaign: reading
audience:
  source: {type: csv, path: contacts.csv}
"""
PLATFORM = """\
channels: {default: [facebook]}
platforms:
  facebook: {account: {ad_account_id: "1234567890"}}
"""


def write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def dry_run(folder: Path, audience_extra: str = "") -> tuple[RunSummary, list[dict[str, str]]]:
    (folder / "campaign.yaml").write_text(CAMPAIGN + audience_extra + PLATFORM)
    options = RunOptions(
        dry_run=True, rejects=folder / "rejects.csv", state=str(folder / "state.sqlite"), outbox=folder / "outbox"
    )
    summary = Engine(load_campaign(folder / "campaign.yaml"), options).run()
    with (folder / "rejects.csv").open() as handle:
        return summary, list(csv.DictReader(handle))


def test_duplicates_and_unreadable_fields_are_refused_and_the_match_table_enriches(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "contacts.csv",
        [
            {"contact_id": "c1", "country": "US", "consent_email": "maybe", "email": "a@example.com"},
            {"contact_id": "c2", "country": "Atlantis", "consent_email": "", "email": "b@example.com"},
            {"contact_id": "c1", "country": "US", "consent_email": "", "email": "c@example.com"},
            {"contact_id": "c3", "country": "GB", "consent_email": "", "email": ""},
        ],
    )
    write_csv(tmp_path / "ids.csv", [{"contact_id": "c3", "maid": "6d92078a-8246-4ba4-ae5b-76104861e7dc"}])
    summary, rejects = dry_run(tmp_path, "  identity_table: {type: csv, path: ids.csv}\n")

    assert summary.rows_read == 4 and summary.field_issues == 2
    assert summary.outcomes["rejected"] == 1
    assert summary.rejected_reasons == {"contact_id: duplicate contact_id": 1}
    assert summary.identity_enriched == {"maid": 1}  # c3, reachable by its ad id alone
    assert summary.ineligible_reasons == {"no country": 1}  # c2 kept, without its unknown country
    assert sum(summary.outcomes.values()) == 4
    assert [(r["row"], r["field"], r["row_rejected"]) for r in rejects] == [
        ("2", "consent_email", "no"), ("3", "country", "no"), ("4", "contact_id", "yes")
    ]


def test_without_a_match_table_nothing_is_enriched(tmp_path: Path) -> None:
    write_csv(tmp_path / "contacts.csv", [{"contact_id": "c1", "country": "US", "email": "a@example.com"}])
    summary, rejects = dry_run(tmp_path)
    assert summary.rows_read == 1 and not summary.identity_enriched and not rejects


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
    summary, rejects = dry_run(tmp_path)

    assert summary.rows_read == 6 and sum(summary.outcomes.values()) == 6
    assert summary.rejected_reasons == {
        "*: wrong number of cells (the header has 3)": 2,
        "city: not valid UTF-8": 1,
        "city: unreadable CSV record: a quote is never closed": 1,
    }
    assert [(r["row"], r["field"], r["reason"]) for r in rejects] == [
        ("3", "*", "record on line 3 has 2 cells, the header has 3"),
        ("4", "*", "record on line 4 has 4 cells, the header has 3"),
        ("5", "city", "not valid UTF-8: byte 0xFC at offset 7 of line 5"),
        ("6", "city", "unreadable CSV record: a quote is never closed (the record ran over lines 6-7; "
         "only line 6 is rejected, reading resumed at line 7)"),
    ]


def test_output_paths_may_be_given_as_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A library caller writes `RunOptions(rejects="rejects.csv")`; the run writes there as with a `Path`."""
    write_csv(tmp_path / "contacts.csv", [{"contact_id": "c1", "country": "Atlantis", "email": "a@example.com"}])
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN + PLATFORM)
    monkeypatch.chdir(tmp_path)
    options = RunOptions(dry_run=True, rejects="out/rejects.csv", outbox="out/outbox", plan="out/plan.csv")  # type: ignore[arg-type]
    summary = Engine(load_campaign(tmp_path / "campaign.yaml"), options).run()
    assert summary.rejects_file == "out/rejects.csv" and summary.plan_file == "out/plan.csv"
    with (tmp_path / "out" / "rejects.csv").open() as handle:
        assert [row["field"] for row in csv.DictReader(handle)] == ["country"]
    assert (tmp_path / "out" / "plan.csv").exists()


def test_a_cluster_of_more_records_than_a_person_has_is_warned_about(tmp_path: Path) -> None:
    shared = [{"contact_id": f"c{i:03d}", "country": "US", "email": "front-desk@example.com"} for i in range(101)]
    write_csv(tmp_path / "contacts.csv", [*shared, {"contact_id": "solo", "country": "US", "email": "s@example.com"}])
    summary, _ = dry_run(tmp_path)
    assert summary.identity.largest_cluster == 101
    assert [w for w in summary.warnings if "101 records share identifiers" in w]
    write_csv(tmp_path / "contacts.csv", shared[:100])
    summary, _ = dry_run(tmp_path)
    assert not [w for w in summary.warnings if "share identifiers" in w]


def test_a_run_that_breaks_on_a_bug_is_recorded_as_failed_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not left "running" (the next run would call it killed) and with what broke, redacted like any error."""
    import json
    import sqlite3

    from crm_activation.pipeline.audience_batches import BatchResults

    def broken(self: BatchResults, routed: object) -> None:
        raise RuntimeError("a bug in applying a batch")

    monkeypatch.setattr(BatchResults, "apply", broken)
    write_csv(tmp_path / "contacts.csv", [{"contact_id": "c1", "country": "US", "email": "a@example.com"}])
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN + PLATFORM)
    options = RunOptions(state=str(tmp_path / "state.sqlite"))
    with pytest.raises(RuntimeError, match="a bug in applying a batch"):
        Engine(load_campaign(tmp_path / "campaign.yaml"), options).run()
    with sqlite3.connect(tmp_path / "state.sqlite") as db:
        status, summary = db.execute("SELECT status, summary FROM runs").fetchone()
    assert status == "failed"
    assert json.loads(summary)["error"] == "RuntimeError: a bug in applying a batch"


def test_a_repeated_id_is_refused_under_the_exports_own_column_name(tmp_path: Path) -> None:
    write_csv(
        tmp_path / "contacts.csv",
        [{"crm_id": "c1", "country": "US", "email": "a@example.com"},
         {"crm_id": "c1", "country": "US", "email": "b@example.com"}],
    )
    summary, rejects = dry_run(tmp_path, "  columns: {contact_id: crm_id}\n")
    assert summary.rejected_reasons == {"crm_id: duplicate contact_id": 1}
    assert [(r["row"], r["field"]) for r in rejects] == [("3", "crm_id")]


@pytest.mark.parametrize("change", ["reordered", "appended", "truncated"])
def test_an_export_rewritten_between_the_two_reads_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Routing takes each record's person by position from the first read: a changed file would misgroup people."""
    from crm_activation.pipeline.audience_batches import AudienceBatches
    from crm_activation.sdk.errors import InputError

    rows = [{"contact_id": f"c{i}", "country": "US", "email": f"p{i % 5}@example.com"} for i in range(20)]
    write_csv(tmp_path / "contacts.csv", rows)
    changed = {"reordered": rows[::-1], "appended": [*rows, {**rows[0], "contact_id": "new"}], "truncated": rows[:-1]}
    link = AudienceBatches.link

    def link_then_rewrite(self: AudienceBatches, *args: object, **kwargs: object) -> object:
        linked = link(self, *args, **kwargs)  # type: ignore[arg-type]
        write_csv(tmp_path / "contacts.csv", changed[change])
        return linked

    monkeypatch.setattr(AudienceBatches, "link", link_then_rewrite)
    with pytest.raises(InputError, match="changed while the run read it"):
        dry_run(tmp_path)
