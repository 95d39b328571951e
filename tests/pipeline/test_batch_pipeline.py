"""The batch pipeline's output is the same for any number of workers and any batch size.

Outcomes, requests, rejects, plan and holdout ledger of one process with the usual batches are compared with
two processes working on 97-record batches (results come back out of order and are applied in order), on the
bundled demo and on generated exports made messy on purpose: malformed CSV records (the fast reader hands over
to the row reader midway), repeated and missing contact ids, people behind several records, unknown countries,
consent and scores that are not yes/no or numbers, a match table, a suppression list, and JSON Lines with keys
missing. Until the row pipeline this replaced was deleted, the same tests found its outputs equal too;
`tests/spark/` compares the Spark path with these.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import crm_activation.pipeline.batch_source as batch_source
from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions
from crm_activation.state.store import StateStore

pytestmark = pytest.mark.usefixtures("sandbox_credentials")
ROOT = Path(__file__).resolve().parents[2]
_TIMINGS = {"seconds", "onboard_seconds"}


def _synth() -> Any:
    spec = importlib.util.spec_from_file_location("synth", ROOT / "bench" / "synth.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["synth"] = module
    spec.loader.exec_module(module)
    return module


def _without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if k not in _TIMINGS}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _run(campaign: Path, out: Path, workers: int = 1, audience: Any = None) -> dict[str, Any]:
    """A dry run's every output (the plan's rows sorted: channels write it concurrently).

    `audience`: another reader of the audience than the campaign's file (`Engine(audience=...)`: Spark's).
    """
    out.mkdir()
    options = RunOptions(
        dry_run=True, outbox=out / "outbox", rejects=out / "rejects.csv", plan=out / "plan.csv",
        state=str(out / "state.sqlite"), workers=workers,
    )
    summary = Engine(load_campaign(campaign), options, audience=audience).run()
    result = _without_timings(summary.to_json())
    result.pop("rejects_file"), result.pop("plan_file")
    plan = (out / "plan.csv").read_text().splitlines()
    return {
        "summary": result,
        "rejects": (out / "rejects.csv").read_text(),
        "plan": [plan[0], *sorted(plan[1:])],
        "outbox": {p.name: p.read_bytes() for p in sorted((out / "outbox").rglob("*")) if p.is_file()},
    }


def _ledger(campaign: Path, out: Path, monkeypatch: pytest.MonkeyPatch, workers: int = 1) -> list[tuple[Any, ...]]:
    """The holdout ledger a run stages, read back before it would be pushed (no platform is contacted)."""
    out.mkdir()
    captured: list[tuple[Any, ...]] = []

    def refuse_push(engine: Engine, state: StateStore, summary: Any) -> str:
        captured.extend(state.db.execute("SELECT * FROM holdout_staged ORDER BY contact_id").fetchall())
        return "stop before the push"

    monkeypatch.setattr(Engine, "_guard", refuse_push)
    options = RunOptions(
        rejects=out / "rejects.csv", state=str(out / "state.sqlite"), workers=workers
    )
    Engine(load_campaign(campaign), options).run()
    return [row[:7] for row in captured]  # without run ids


def _compare(campaign: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """One process's outputs, after checking two processes on small batches give the same."""
    one = _run(campaign, tmp_path / "one")
    with monkeypatch.context() as patch:
        patch.setattr(batch_source, "BATCH_ROWS", 97)
        parallel = _run(campaign, tmp_path / "parallel", workers=2)
        parallel_ledger = _ledger(campaign, tmp_path / "ledger-parallel", monkeypatch, workers=2)
    for part in one:
        assert parallel[part] == one[part], part
    ledger = _ledger(campaign, tmp_path / "ledger-one", monkeypatch)
    assert ledger == parallel_ledger
    assert ledger
    return one


def test_the_bundled_demo_is_routed_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "examples", folder)
    outputs = _compare(folder / "campaign.yaml", tmp_path, monkeypatch)
    assert outputs["summary"]["outcomes"]["activated"] > 0 and outputs["outbox"]


def _messy_export(folder: Path, n: int, seed: int) -> list[dict[str, str]]:
    """Generated contacts with people behind several records, repeated ids and odd values mixed in."""
    synth = _synth()
    rows = [dict(row) for row in synth.generate_contacts(n, seed=seed)]
    rng = random.Random(seed)
    extra = []
    for row in rng.sample(rows, n // 10):
        twin = dict(row, contact_id=f"T{rng.randrange(10**6):06d}")
        twin["email"] = row["email"].upper().replace("@", "+crm@", 1) if row["email"] and "@" in row["email"] else ""
        twin["phone"] = rng.choice([row["phone"], ""])
        extra.append(twin)
    for row in rng.sample(rows, n // 50):
        extra.append(dict(row))  # the same contact id again
    for row in rng.sample(rows, n // 20):
        row["consent_email"] = rng.choice(["maybe", " Yes ", "0", ""])
        row["score"] = rng.choice(["n/a", "1e3", "0.55", ""])
        row["country"] = rng.choice(["Deutschland", "Atlantis", "uk", "U.S.", ""])
        row["segment"] = rng.choice(["VIP", "", "loyal"])  # "VIP": a CRM segment the campaign does not name
    rows += extra
    rng.shuffle(rows)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "identity.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["contact_id", "maid", "uid2"])
        for row in rng.sample(rows, n // 5):
            uid2 = rng.choice(["", f"uid-{row['contact_id']}"])
            writer.writerow([row["contact_id"], f"{rng.getrandbits(128):032x}", uid2])
    (folder / "suppression.csv").write_text(
        "contact_id,email,reason\n" + "".join(f"{r['contact_id']},,asked\n" for r in rng.sample(rows, 20))
    )
    return rows


CAMPAIGN = """\
campaign: compare
audience:
  source: {{type: {kind}, path: {path}}}
  identity_table: {{type: csv, path: identity.csv, key: contact_id}}
  suppression: {{type: csv, path: suppression.csv}}
segments:
  - {{name: high, when: [{{field: score, op: ">=", value: 0.7}}]}}
  - {{name: loyal, when: [{{field: history_hires, op: ">", value: 2}}, {{field: preferred_categories, op: contains,
      value: design}}]}}
  - {{name: low}}
holdout: {{fraction: 0.4, strata: [country, segment, lifecycle_stage]}}
default_country: US
channels:
  default: [facebook]
  by_country:
    - {{countries: [US, CA, GB, AU, DE], platforms: [facebook, linkedin, dv360, amazon_dsp, xandr]}}
  by_segment:
    low: [facebook, xandr]
platforms:
  facebook: {{account: {{ad_account_id: "1234567890"}}}}
  linkedin: {{account: {{ad_account_id: "508123456", source_platform: "CRM_ACTIVATION_SANDBOX"}}}}
  dv360: {{account: {{advertiser_id: "4412345"}}}}
  amazon_dsp: {{account: {{advertiser_id: "5837261940", country_code: US}}}}
  xandr: {{account: {{member_id: 10234}}}}
"""


def test_a_messy_generated_export_is_routed_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "csv"
    rows = _messy_export(folder, 1500, seed=7)
    lines = [",".join(rows[0])]
    for row in rows:
        lines.append(",".join(row.values()))
    lines.insert(900, 'X1,"never closed,,')  # a broken record: the fast reader hands the rest over
    lines.insert(400, "")  # a blank line
    (folder / "contacts.csv").write_text("\n".join(lines) + "\n")
    (folder / "campaign.yaml").write_text(CAMPAIGN.format(kind="csv", path="contacts.csv"))
    outputs = _compare(folder / "campaign.yaml", tmp_path, monkeypatch)
    summary = outputs["summary"]
    assert summary["identity"]["multi_record_clusters"] > 100 and summary["identity"]["regrouped"] > 0
    assert summary["rejected_reasons"]["contact_id: duplicate contact_id"] > 20
    assert any("unreadable CSV record" in reason for reason in summary["rejected_reasons"])
    assert any(warning.startswith("segment 'VIP' from the CRM") for warning in summary["warnings"])


def test_json_lines_with_keys_missing_are_routed_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "jsonl"
    rows = _messy_export(folder, 600, seed=11)
    rng = random.Random(3)
    with (folder / "contacts.jsonl").open("w") as out:
        for row in rows:
            record: dict[str, Any] = {k: v for k, v in row.items() if (v and rng.random() > 0.1) or k == "contact_id"}
            if rng.random() < 0.05:
                record["score"] = rng.choice([0.9, None, True, "high"])
            out.write(json.dumps(record) + "\n")
    (folder / "campaign.yaml").write_text(CAMPAIGN.format(kind="jsonl", path="contacts.jsonl"))
    _compare(folder / "campaign.yaml", tmp_path, monkeypatch)
