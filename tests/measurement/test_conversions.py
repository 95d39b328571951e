"""Conversion rows: every row counted or rejected with a reason naming the file, row and field."""

from __future__ import annotations

import csv
import json

from crm_activation.campaign.loader import load_campaign
from crm_activation.campaign.schema import SourceConfig
from crm_activation.measurement.commands import measurement_config, read_ledger
from crm_activation.measurement.conversions import ConversionReader, parse_timestamp
from crm_activation.pipeline.rejects import RejectsWriter
from crm_activation.pipeline.sources import open_rows

from .conftest import BASE_YAML, START, iso, write_ledger


def _read(loaded, tmp_path, source: SourceConfig):
    config = measurement_config(loaded)
    ledger = read_ledger(loaded, None)
    rejects = RejectsWriter(tmp_path / "rejects.csv")
    data = ConversionReader(ledger, config.kpis, config.window_days, rejects, config.columns).read(
        open_rows(source, loaded.base_dir)
    )
    rejects.close()
    with (tmp_path / "rejects.csv").open(newline="") as handle:
        return data, list(csv.DictReader(handle))


def test_bad_rows_are_rejected_with_file_row_and_field(small_campaign, tmp_path):
    lines = [
        "contact_id,event,timestamp,value",
        f"c0,account_created,{iso(1)},",  # 2: counted
        f"c0,signup,{iso(3)},",  # 3: counted (second event of the same KPI, first day stays 1)
        f"c2,hire,{iso(2.5)},450.5",  # 4: counted with a value
        f"stranger,hire,{iso(2)},",  # 5: not in the experiment
        f"c1,newsletter_open,{iso(2)},",  # 6: unknown event
        "c1,hire,last tuesday,",  # 7: unparseable timestamp
        f"c1,hire,{iso(31)},",  # 8: after the 30-day window
        f"c1,hire,{iso(-1)},",  # 9: before the contact entered
        f",hire,{iso(2)},",  # 10: missing contact id
        f"c3,hire,{iso(4)},lots",  # 11: counted, value ignored (not a number)
        "c3,hire",  # 12: malformed record
        f"c4,,{iso(4)},",  # 13: missing event
    ]
    (tmp_path / "conversions.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data, rejects = _read(small_campaign, tmp_path, SourceConfig(type="csv", path=str(tmp_path / "conversions.csv")))

    assert data.rows_read == 12 and data.accounted()
    assert data.accepted == 4 and data.not_in_experiment == 1
    assert data.first_day == {"account_created": {"c0": 1}, "hire": {"c2": 2, "c3": 4}}
    assert data.value["hire"] == {"c2": 450.5}
    by_row = {int(r["row"]): r for r in rejects}
    assert all(r["source"] == "conversions.csv" for r in rejects)
    expected = {
        5: ("contact_id", "contact not in the experiment"),
        6: ("event", "unknown event name"),
        7: ("timestamp", "unparseable timestamp"),
        8: ("timestamp", "after the 30-day measurement window"),
        9: ("timestamp", "before the contact entered the experiment"),
        10: ("contact_id", "missing contact id"),
        11: ("value", "not a number; value ignored"),
        12: ("", "has 2 cells, the header has 4"),
        13: ("event", "missing event name"),
    }
    assert set(by_row) == set(expected)
    for row, (field, reason) in expected.items():
        assert by_row[row]["field"] == field and reason in by_row[row]["reason"], row
    assert by_row[11]["row_rejected"] == "no" and by_row[5]["row_rejected"] == "yes"
    assert sum(data.rejected.values()) == 6  # all but the stranger, the early row (counted apart) and the value
    assert data.before_entry == 1 and data.after_report == 0
    written = (tmp_path / "rejects.csv").read_text()
    assert "450.5" not in written and "stranger" not in written  # reasons name fields, never values


def test_json_lines_and_renamed_columns(tmp_path):
    write_ledger(tmp_path, [("a", "test", "US", "s", "email", "email", "x"), ("b", "control", "US", "s", "", "", "x")])
    campaign = tmp_path / "campaign.yaml"
    campaign.write_text(
        BASE_YAML + "measurement:\n  kpis: [{name: hire}]\n  columns: {contact_id: user, event: name, timestamp: at}\n",
        encoding="utf-8",
    )
    loaded = load_campaign(campaign)
    events = [
        {"user": "a", "name": "hire", "at": START + 3600},
        {"user": "b", "name": "hire", "at": iso(2)},
        ["not", "an", "object"],
        {"user": "a", "name": "hire", "at": True},
    ]
    (tmp_path / "events.jsonl").write_text("\n".join(json.dumps(e) for e in events) + "\n{broken\n", encoding="utf-8")
    data, rejects = _read(loaded, tmp_path, SourceConfig(type="jsonl", path=str(tmp_path / "events.jsonl")))
    assert data.first_day == {"hire": {"a": 0, "b": 2}}
    assert [(r["row"], r["field"]) for r in rejects] == [("3", ""), ("4", "at"), ("5", "")]
    assert data.accounted()


def test_timestamps():
    assert parse_timestamp("2026-09-21T00:00:00Z") == parse_timestamp("2026-09-21T02:00:00+02:00")
    assert parse_timestamp("2026-09-21 00:00:00") == parse_timestamp("2026-09-21T00:00:00+00:00")  # naive = UTC
    assert parse_timestamp("1790000000") == 1_790_000_000.0 == parse_timestamp(1_790_000_000)
    for bad in ("", "soon", None, True, "nan", float("inf"), "2026-13-01"):
        assert parse_timestamp(bad) is None, bad
