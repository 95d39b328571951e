"""Benchmark: onboarding throughput, push throughput into each platform's sandbox, and peak memory.

Usage: python bench/bench_pipeline.py [N] [--platforms facebook,linkedin,...] [--skip-push] [--postgres]

Generates N synthetic contacts (bench/synth.py), then runs the real engine on them:
1. a dry run: onboarding (parse, identity join, segment, holdout, eligibility, normalize + SHA-256 per
   platform, stage in the state database) is timed on its own; the dry-run outbox is written after it;
2. a real push into the sandboxes, served by a separate process (`crm-activation sandbox`), timed per platform;
3. a rerun with nothing changed, which must send no membership change.
Prints contacts/s, records/s per platform and the process's peak RSS. Timings are printed, never asserted.
State is a SQLite file, or with --postgres a throwaway local PostgreSQL server (tests/postgres_server.py; needs
Debian's postgresql package), so both backends are measured the same way.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from synth import generate_contacts

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.engine import Engine, RunOptions

ROOT = Path(__file__).resolve().parents[1]
ACCOUNTS = {
    "facebook": '{ad_account_id: "1234567890"}',
    "linkedin": '{ad_account_id: "508123456", source_platform: "CRM_ACTIVATION_SANDBOX"}',
    "dv360": '{advertiser_id: "4412345"}',
    "amazon_dsp": '{advertiser_id: "5837261940", country_code: US}',
    "xandr": "{member_id: 10234}",
    "google_data_manager": (
        '{account_type: GOOGLE_ADS, account_id: "123-456-7890", customer_match_terms_accepted: true}'
    ),
}
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
        platforms: [{platforms}]}}
platforms:
{accounts}
state: {state}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int) -> None:
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"sandbox on port {port} did not start")


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--platforms", default="facebook", help="comma-separated slugs (default facebook)")
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--postgres", action="store_true", help="keep state in a throwaway PostgreSQL server")
    args = parser.parse_args()
    platforms = args.platforms.split(",")
    work = Path(tempfile.mkdtemp(prefix="crm-bench-"))
    server = start_postgres() if args.postgres else None
    for line in (ROOT / "examples" / "sandbox.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            os.environ[name] = value
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

        ports = {slug: free_port() for slug in platforms}
        campaign_file = work / "campaign.yaml"
        accounts = "\n".join(f"  {slug}:\n    account: {ACCOUNTS[slug]}" for slug in platforms)
        campaign_file.write_text(
            CAMPAIGN.format(contacts=contacts, platforms=", ".join(platforms), accounts=accounts,
                            state=state_of(server, work, "state"))
        )
        loaded = load_campaign(campaign_file)
        endpoints = {slug: f"http://127.0.0.1:{port}" for slug, port in ports.items()}

        # 1. onboarding: a dry run stages everything but sends nothing
        rss_before = peak_rss_mib()
        options = RunOptions(dry_run=True, outbox=work / "outbox", state=state_target(server, work, "dry"))
        summary = Engine(loaded, options).run()
        onboard, n = summary.onboard_seconds, summary.rows_read
        print(f"onboarding: {n:,} rows in {onboard:.1f}s = {n / onboard:,.0f} contacts/s (one core)")
        print(f"  outcomes {summary.outcomes}; dry-run outbox written in {summary.seconds - onboard:.1f}s")
        print(f"peak RSS after onboarding: {peak_rss_mib():.0f} MiB (before: {rss_before:.0f} MiB)")
        if args.skip_push:
            return

        # 2. push into the sandboxes, served by other processes (one each, as separate platforms would be)
        cli = str(Path(sys.executable).with_name("crm-activation"))
        sandboxes = [
            subprocess.Popen([cli, "sandbox", "--platform", slug, "--port-base", str(port)], stdout=subprocess.DEVNULL)
            for slug, port in ports.items()
        ]
        try:
            for port in ports.values():
                wait_for(port)
            options = RunOptions(base_urls=endpoints)
            summary = Engine(loaded, options).run()
            print(f"push (status {summary.status}):")
            for slug, platform in summary.platforms.items():
                pushed = sum(s.added for s in platform.stages.values())
                print(f"  {slug:<11} {pushed:>9,} members in {platform.seconds:6.1f}s = "
                      f"{pushed / max(platform.seconds, 1e-9):>9,.0f} records/s ({platform.requests} requests)")
            started = time.perf_counter()
            again = Engine(loaded, options).run()
            changes = sum(s.added + s.removed for p in again.platforms.values() for s in p.stages.values())
            requests = sum(p.requests for p in again.platforms.values())
            print(f"rerun with nothing changed: {changes} membership changes, {requests} requests (checks, lookups); "
                  f"onboarding {again.onboard_seconds:.1f}s, total {time.perf_counter() - started:.1f}s")
            print(f"peak RSS overall: {peak_rss_mib():.0f} MiB")
        finally:
            for sandbox in sandboxes:
                sandbox.terminate()
                sandbox.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if server is not None:
            server.stop()


def start_postgres() -> Any:
    spec = importlib.util.spec_from_file_location("postgres_server", ROOT / "tests" / "postgres_server.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["postgres_server"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    bindir = module.find_bindir()
    if bindir is None:
        raise SystemExit("--postgres needs PostgreSQL's server binaries (Debian package postgresql)")
    os.environ["PGPASSWORD"] = module.PASSWORD
    server = module.PostgresServer.start(bindir)
    print(f"state: PostgreSQL on 127.0.0.1:{server.port} (throwaway, fsync off)")
    return server


def state_target(server: Any, work: Path, name: str) -> str | Path:
    """A fresh state database: a SQLite file in the work folder, or a new database on the server."""
    return server.url(server.create_database()) if server is not None else work / f"{name}.sqlite"


def state_of(server: Any, work: Path, name: str) -> str:
    target = state_target(server, work, name)
    return f"{{url: '{target}'}}" if server is not None else f"{{path: {target}}}"


if __name__ == "__main__":
    main()
