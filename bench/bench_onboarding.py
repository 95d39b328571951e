"""Benchmark: onboarding throughput against issue 12's targets, each measured in its own process.

Usage: python bench/bench_onboarding.py [N] [--big M] [--skip-big]

Onboarding is the engine's staging phase of a dry run with a state database: read, parse, link records into
people, normalize and hash, holdout, route, stage (`RunSummary.onboard_seconds`). Printed, never asserted:

1. e-mail-only contacts (id, email, country, segment), N rows, one worker, against the raw `hashlib.sha256`
   rate of the same e-mails measured here (target: at least 0.5x);
2. five-identifier contacts (e-mail, phone, first and last name, zip, country), N rows, one worker
   (target: at least 50,000 contacts/s);
3. the same with two workers against one (target: at least 1.7x);
4. M e-mail-only contacts (default 10,000,000), two workers: the run's peak RSS, worker processes included
   (target: at most 400 MB), unless --skip-big.

Each run is a fresh `python` process, so its peak RSS is its own; the campaign offers Facebook in every country.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import generate_contacts

ROOT = Path(__file__).resolve().parents[1]
COUNTRIES = [
    "US", "CA", "GB", "AU", "DE", "FR", "ES", "IT", "NL", "BE", "SE", "NO", "DK",
    "FI", "IE", "PT", "PL", "AT", "CH", "IN", "BR", "MX", "JP", "SG", "NZ",
]
CAMPAIGN = """
campaign: bench
audience:
  source: {{type: csv, path: {contacts}}}
segments:
  - {{name: high, when: [{{field: score, op: ">=", value: 0.7}}]}}
  - {{name: low}}
channels:
  default: [facebook]
platforms:
  facebook:
    account: {{ad_account_id: "1234567890"}}
state: {{path: {state}}}
"""


def email_only(path: Path, n: int) -> None:
    """N e-mail-only contacts, written straight to the file."""
    with path.open("w", newline="") as out:
        out.write("contact_id,email,country,segment\n")
        for i in range(n):
            country = COUNTRIES[(i * 7919) % len(COUNTRIES)]
            segment = ("high", "low", "")[i % 3]
            out.write(f"C{i:09d},First.Last{i}@Mail{i % 97}.Example.com,{country},{segment}\n")


def five_identifiers(path: Path, n: int) -> None:
    """N contacts with e-mail, phone, first and last name, zip and country (bench/synth.py's, projected)."""
    columns = ["contact_id", "email", "phone", "first_name", "last_name", "zip", "country", "score"]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in generate_contacts(n, seed=1):
            writer.writerow([row[c] for c in columns])


def hash_rate(path: Path) -> float:
    """E-mails hashed per second by `hashlib.sha256` alone: the e-mails of the file, read beforehand."""
    with path.open() as handle:
        next(handle)
        emails = [line.split(",", 2)[1] for line in handle]
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for email in emails:
        sha256(email.encode()).hexdigest()
    return len(emails) / (time.perf_counter() - started)


def measure(contacts: Path, workers: int) -> dict[str, float]:
    """One dry run in a fresh process: rows, onboarding seconds, peak RSS of the run's process and of its largest
    worker (MiB; forked workers share the pages they did not change, so the two overlap)."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", str(contacts), str(workers)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def one(contacts: Path, workers: int) -> None:
    """The child: run the engine's dry run once and print its figures as JSON."""
    from crm_activation.campaign.loader import load_campaign
    from crm_activation.pipeline.engine import Engine, RunOptions

    for line in (ROOT / "examples" / "sandbox.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            os.environ[name] = value
    work = Path(tempfile.mkdtemp(prefix="crm-bench-run-"))
    campaign = work / "campaign.yaml"
    campaign.write_text(CAMPAIGN.format(contacts=contacts, state=work / "state.sqlite"))
    options = RunOptions(dry_run=True, outbox=work / "outbox", plan=None, workers=workers)
    summary = Engine(load_campaign(campaign), options).run()
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"rows": summary.rows_read, "seconds": summary.onboard_seconds, "rss": own, "worker": worker}))


def memory(figures: dict[str, float]) -> str:
    worker = f", largest worker {figures['worker']:.0f} MiB" if figures["worker"] else ""
    return f"{figures['rss']:.0f} MiB{worker}"


def rate(figures: dict[str, float]) -> float:
    return figures["rows"] / figures["seconds"]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        one(Path(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--big", type=int, default=10_000_000, help="rows of the peak-RSS run (default 10M)")
    parser.add_argument("--skip-big", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    emails, full = work / "emails.csv", work / "five.csv"
    email_only(emails, args.n)
    five_identifiers(full, args.n)
    reference = hash_rate(emails)
    print(f"hashlib.sha256 alone: {reference:,.0f} e-mails/s (one core)")

    figures = measure(emails, 1)
    print(f"1. e-mail-only, {args.n:,} rows, one worker: {rate(figures):,.0f} contacts/s = "
          f"{rate(figures) / reference:.2f}x the hashing rate (target >= 0.5x); peak RSS {memory(figures)}")
    one_worker = measure(full, 1)
    print(f"2. five identifiers, {args.n:,} rows, one worker: {rate(one_worker):,.0f} contacts/s (target >= 50,000)"
          f"; peak RSS {memory(one_worker)}")
    two_workers = measure(full, 2)
    print(f"3. five identifiers, two workers: {rate(two_workers):,.0f} contacts/s = "
          f"{rate(two_workers) / rate(one_worker):.2f}x one worker (target >= 1.7x)")
    if not args.skip_big:
        big = work / "big.csv"
        email_only(big, args.big)
        figures = measure(big, 2)
        print(f"4. e-mail-only, {args.big:,} rows, two workers: peak RSS {memory(figures)} (target <= 400 MB); "
              f"{rate(figures):,.0f} contacts/s")


if __name__ == "__main__":
    main()
