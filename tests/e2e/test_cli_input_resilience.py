"""The real CLI, in a subprocess, on a contacts file with one broken record: every other contact still onboards.

A dry run writes each request to the outbox instead of sending it, so no sandbox is needed: what matters here is
what the run reads, counts, warns about and rejects.
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from crm_activation.normalization import sha256_hex

from .conftest import CLI, TOKEN

CAMPAIGN = """\
campaign: e2e-input-resilience
audience:
  source: {type: csv, path: contacts.csv}
segments:
  - {name: high, when: [{field: score, op: ">=", value: 0.7}]}
  - {name: low}
channels:
  default: [facebook]
  by_segment:
    vip: [facebook]
    high: [facebook]
platforms:
  facebook:
    account: {ad_account_id: "act_55501"}
    audiences:
      awareness: {name: "E2E awareness"}
state: {path: state.sqlite}
"""
BROKEN_LINE = 102  # the header is line 1: contacts c1-c100 are lines 2-101


def write_contacts(folder: Path) -> None:
    lines = ["contact_id,email,country,segment,score"]
    for i in range(1, 201):
        segment = "VIP" if i % 10 == 0 else ""  # a CRM segment the campaign spells "vip"
        lines.append(f"c{i},user{i}@example.com,US,{segment},0.{i % 10}")
        if i == 100:
            lines.append('c-broken,broken@example.com,US,"VIP,0.5')  # a quote never closed
    (folder / "contacts.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "campaign.yaml").write_text(CAMPAIGN, encoding="utf-8")


def run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN": TOKEN}
    return subprocess.run(
        [str(CLI), "run", "campaign.yaml", "--dry-run", "--outbox", "outbox", "--rejects", "rejects.csv", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=120,
    )


def pushed_emails(folder: Path) -> set[str]:
    """Every hashed e-mail the dry run would have sent, read from the outbox's request bodies."""
    text = "".join(path.read_text() for path in (folder / "outbox").rglob("*") if path.is_file())
    return set(re.findall(r"[0-9a-f]{64}", text))


def test_one_broken_record_loses_only_itself_and_unknown_segments_are_warned(tmp_path: Path) -> None:
    write_contacts(tmp_path)
    done = run(tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    summary: dict[str, Any] = json.loads(done.stdout)

    assert summary["rows_read"] == 201
    outcomes = summary["outcomes"]
    assert outcomes["rejected"] == 1 and outcomes["activated"] + outcomes["held_out"] == 200
    # grouped by reason: the column and what is wrong, no line number
    assert summary["rejected_reasons"] == {"segment: unreadable CSV record: a quote is never closed": 1}

    with (tmp_path / "rejects.csv").open() as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["row"], r["field"], r["row_rejected"]) for r in rejects] == [(str(BROKEN_LINE), "segment", "yes")]
    assert f"only line {BROKEN_LINE} is rejected, reading resumed at line {BROKEN_LINE + 1}" in rejects[0]["reason"]

    emails = {sha256_hex(f"user{i}@example.com"): i for i in range(1, 201)}
    pushed = pushed_emails(tmp_path)
    assert len(pushed & set(emails)) == outcomes["activated"] > 50
    assert len([h for h in pushed if emails.get(h, 0) > 100]) > 25, "the contacts after the broken one were lost"
    assert sha256_hex("broken@example.com") not in pushed

    warnings = summary["warnings"]
    assert any(w.startswith("segment 'VIP' from the CRM (20 contacts)") and "did you mean 'vip'?" in w
               for w in warnings), warnings
    assert any(w.startswith("channels.by_segment names segment 'vip', which no contact is in") for w in warnings)
    assert not any("'high'" in w for w in warnings)  # the rules put contacts in it

    shown = run(tmp_path)  # the same run, for people: the warnings are printed after the tables
    assert shown.returncode == 0, shown.stderr
    printed = " ".join(shown.stdout.split())
    assert "warning: segment 'VIP' from the CRM (20 contacts)" in printed
    assert "warning: channels.by_segment names segment 'vip'" in printed
