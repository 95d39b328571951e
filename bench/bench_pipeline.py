"""Benchmark: onboarding throughput, push throughput into the Facebook sandbox, and peak memory.

Usage: python bench/bench_pipeline.py [N] [--skip-push]

Generates N synthetic contacts (bench/synth.py), then runs the real engine on them twice:
1. onboarding only (parse, identity join, segment, holdout, eligibility, normalize + SHA-256, stage in SQLite),
   by running with no platform enabled but Facebook's rules in play through a dry run whose outbox is discarded;
2. a real push into the Facebook sandbox running in a separate process (`crm-activation sandbox`).
Prints contacts/s for each phase and the process's peak RSS. Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from synth import generate_contacts

from crm_activation.campaign_file import load_campaign
from crm_activation.engine import Engine, RunOptions

TOKEN = "bench-facebook-token-0123456789"
CAMPAIGN = """
campaign: bench
audience:
  source: {{type: csv, path: {contacts}}}
segments:
  - {{name: high, when: [{{field: score, op: ">=", value: 0.7}}]}}
  - {{name: medium, when: [{{field: score, op: ">=", value: 0.4}}]}}
  - {{name: low}}
channels:
  default: []
  by_country:
    - {{countries: [US, CA, GB, AU, DE, FR, ES, IT, NL, BE, SE, NO, DK, FI, IE, PT, PL, AT, CH, IN, BR, MX, JP, SG, NZ],
        platforms: [facebook]}}
platforms:
  facebook:
    account: {{ad_account_id: "1234567890", base_url: "{base_url}", requests_per_second: 1000}}
state: {{path: {state}}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--skip-push", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    os.environ["CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN"] = TOKEN
    try:
        contacts = work / "contacts.csv"
        started = time.perf_counter()
        rows = generate_contacts(args.n, seed=1)
        first = next(rows)
        with contacts.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(first))
            writer.writeheader()
            writer.writerow(first)
            writer.writerows(rows)
        size = contacts.stat().st_size / 2**20
        print(f"generated {args.n:,} contacts in {time.perf_counter() - started:.1f}s ({size:.0f} MiB)")

        port = free_port()
        campaign_file = work / "campaign.yaml"
        campaign_file.write_text(
            CAMPAIGN.format(contacts=contacts, base_url=f"http://127.0.0.1:{port}", state=work / "state.sqlite")
        )
        loaded = load_campaign(campaign_file)

        # 1. onboarding: a dry run stages everything but sends nothing
        rss_before = peak_rss_mib()
        options = RunOptions(dry_run=True, outbox=work / "outbox", state_path=work / "dry.sqlite")
        summary = Engine(loaded, options).run()
        onboard, n = summary.onboard_seconds, summary.rows_read
        print(f"onboarding: {n:,} rows in {onboard:.1f}s = {n / onboard:,.0f} contacts/s (one core)")
        print(f"  outcomes {summary.outcomes}; dry-run outbox written in {summary.seconds - onboard:.1f}s")
        print(f"peak RSS after onboarding: {peak_rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)")
        if args.skip_push:
            return

        # 2. push into the Facebook sandbox, served by another process
        sandbox = subprocess.Popen(
            [str(Path(sys.executable).with_name("crm-activation")), "sandbox", "--platform", "facebook",
             "--port-base", str(port)],
            stdout=subprocess.DEVNULL,
        )
        try:
            deadline = time.time() + 20
            while time.time() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            summary = Engine(loaded).run()
            fb = summary.platforms["facebook"]
            pushed = sum(s.added for s in fb.stages.values())
            print(f"push: {pushed:,} members to the Facebook sandbox in {fb.seconds:.1f}s = "
                  f"{pushed / fb.seconds:,.0f} records/s ({fb.requests} requests, status {summary.status})")
            started = time.perf_counter()
            again = Engine(loaded).run()
            print(f"rerun with nothing changed: {again.platforms['facebook'].requests} requests "
                  f"(onboarding {again.onboard_seconds:.1f}s, total {time.perf_counter() - started:.1f}s)")
            print(f"peak RSS overall: {peak_rss_mib():.0f} MiB")
        finally:
            sandbox.terminate()
            sandbox.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
