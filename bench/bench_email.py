"""Benchmark: e-mail renders per core, SMTP delivery, and the whole channel end to end at CRM scale.

Usage: python bench/bench_email.py [--renders N] [--messages N] [--contacts N] [--processes P]
                                    [--connections C] [--postgres] [--skip-sequential]

1. Rendering: subject + text + HTML of the packaged templates for the sample contacts, in one process (one
   core), then in P processes to show how it scales.
2. Delivery to a local aiosmtpd relay running in its own process (so relay and client do not share a GIL):
   the bare SMTP transport on prebuilt messages (one reused connection), then the per-contact
   `EmailChannel.deliver` loop (one connection, everything in this process) for `--messages` contacts.
3. The channel end to end as `crm-activation run` drives it (`email.delivery.deliver`: batched decisions and
   ledger writes, render + MIME in worker processes, several SMTP connections) for `--contacts` contacts
   (default 100,000), first with 1 connection and 1 process, then with C connections and P processes (default:
   the campaign default, 4, and one process per core). A fresh relay process and state database each time.
4. The ledger window: for every message, the time from the relay returning its 250 (stamped in the relay
   process) to the client's commit of `sent` returning (stamped in this process; both on CLOCK_MONOTONIC).
   A kill inside that window leaves a delivered message in doubt. Printed for each run of 2 and 3.

State is a SQLite file, or with --postgres a throwaway local PostgreSQL server (tests/postgres_server.py).
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

sys.path.insert(0, str(Path(__file__).parent))
from bench_pipeline import start_postgres  # the same throwaway PostgreSQL server as the pipeline bench

from crm_activation.campaign.email_settings import EmailConfig, EmailCredentials
from crm_activation.campaign.loader import LoadedCampaign
from crm_activation.campaign.schema import Campaign
from crm_activation.email.channel import EmailChannel
from crm_activation.email.delivery import deliver
from crm_activation.email.message import build_message
from crm_activation.email.rendering import TemplateRenderer
from crm_activation.email.samples import SAMPLE_CONTACTS, sample_config, sample_context
from crm_activation.email.smtp import SmtpTransport
from crm_activation.email.unsubscribe import links
from crm_activation.sdk.contact import Attributes, Consent, Contact
from crm_activation.sdk.identifier_kinds import IdentifierKind
from crm_activation.sdk.summary import PlatformSummary
from crm_activation.state.database import Database, open_database

NOW = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)

#: The relay: accepts everything; stamps each 250 on CLOCK_MONOTONIC per recipient; prints the stamps at the end.
SERVER = """
import json, sys, time
from aiosmtpd.controller import Controller
stamps = {}
class Sink:
    async def handle_DATA(self, server, session, envelope):
        stamps[envelope.rcpt_tos[0]] = time.monotonic()
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.readline()
c.stop()
print(json.dumps(stamps), flush=True)
"""


def _jobs() -> list[tuple[str, str | None, str]]:
    renderer = TemplateRenderer()
    return [(t, v, s) for t in renderer.templates() for v in [None, *renderer.variants(t)] for s in SAMPLE_CONTACTS]


def render_worker(n: int) -> float:
    renderer = TemplateRenderer()
    config = sample_config()
    jobs = _jobs()
    contexts = {s: sample_context(c, config) for s, c in SAMPLE_CONTACTS.items()}
    for template, variant, sample in jobs:  # compile every file before timing
        renderer.render_message(template, variant, contexts[sample])
    start = time.perf_counter()
    for i in range(n):
        template, variant, sample = jobs[i % len(jobs)]
        renderer.render_message(template, variant, contexts[sample])
    return time.perf_counter() - start


def bench_render(n: int, processes: int) -> None:
    seconds = render_worker(n)
    print(f"render, 1 process:  {n / seconds:8,.0f} messages/s (subject + text + HTML) = per core")
    if processes > 1:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            rates = [n / seconds for seconds in pool.map(render_worker, [n] * processes)]
        print(f"render, {processes} processes: {sum(rates):8,.0f} messages/s in total "
              f"({', '.join(f'{r:,.0f}' for r in rates)} per process, timed loops only)")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def contact(i: int) -> Contact:
    return Contact(
        contact_id=f"B{i:07d}",
        identifiers={IdentifierKind.EMAIL: f"b{i}@example.com", IdentifierKind.FIRST_NAME: "Sam",
                     IdentifierKind.COUNTRY: "US"},
        attributes=Attributes(funnel_stage=("awareness", "consideration", "conversion")[i % 3],
                              preferred_categories=("design", "video"), history={"last_project": "logo", "hires": 2},
                              consent=Consent(email_marketing=True)),
    )


def contacts(n: int) -> Iterator[Contact]:
    """Built while the run reads them, as the engine parses staged contacts."""
    return (contact(i) for i in range(n))


class Relay:
    """The aiosmtpd relay in its own process."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(self.port)], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def credentials(self) -> EmailCredentials:
        return EmailCredentials(smtp_host="127.0.0.1", smtp_port=self.port, smtp_starttls=False,
                                coupon_key=SecretStr("bench-coupon-key-0123456789"),
                                unsubscribe_key=SecretStr("bench-unsub-key-0123456789"))

    def stop(self) -> dict[str, float]:
        """Stop it; the CLOCK_MONOTONIC stamp of each recipient's 250."""
        assert self.process.stdin is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        return dict(json.loads(self.process.communicate(timeout=120)[0].strip()))


class CommitStamps:
    """Stamps, in this process, the moment each `sent` commit returns (the database's class, one method more)."""

    def __init__(self, db: Database) -> None:
        self.stamps: dict[str, float] = {}
        stamps = self.stamps
        base = type(db)

        class Stamped(base):  # type: ignore[valid-type, misc]
            def execute(self, sql: str, params: Any = ()) -> Any:
                cursor = super().execute(sql, params)
                if sql.startswith("UPDATE email_sends SET status=?") and params[0] == "sent":
                    stamps[f"b{int(params[5][1:])}@example.com"] = time.monotonic()
                return cursor

        db.__class__ = Stamped


def window(relay: dict[str, float], commits: dict[str, float]) -> str:
    gaps = sorted((commits[r] - at) * 1e6 for r, at in relay.items() if r in commits)
    if not gaps:
        return "no message"
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    return (f"250 → committed: median {statistics.median(gaps):,.0f} µs, p99 {p99:,.0f} µs, "
            f"max {gaps[-1]:,.0f} µs ({len(gaps):,} messages)")


def open_state(folder: str, postgres: Any) -> Database:
    if postgres is None:
        return open_database(Path(folder) / "state.sqlite")
    name = f"bench_{time.monotonic_ns()}"
    admin = open_database(postgres.url())
    admin.execute(f"CREATE DATABASE {name}")
    admin.close()
    return open_database(postgres.url(name))


def bench_delivery(n: int, postgres: Any) -> None:
    relay = Relay()
    creds = relay.credentials()
    config = sample_config()
    renderer = TemplateRenderer()
    rendered = renderer.render_message("coupon-offer", None, sample_context(SAMPLE_CONTACTS["typical"], config))
    key = creds.unsubscribe_key
    messages = [
        build_message(rendered, from_address=config.from_address, to_address=f"r{i}@example.com",
                      message_id=f"<bench{i}@mail.example.com>",
                      unsubscribe=links(key, "bench", str(i), config.unsubscribe_url, config.unsubscribe_mailbox))
        for i in range(n)
    ]
    with SmtpTransport(creds) as smtp:
        start = time.perf_counter()
        for i, message in enumerate(messages):
            smtp.send(message, config.bounce_envelope, f"r{i}@example.com")
        seconds = time.perf_counter() - start
        print(f"SMTP transport:     {n / seconds:8,.0f} messages/s over {smtp.connections} connection(s)")
    with tempfile.TemporaryDirectory() as folder, SmtpTransport(creds) as smtp:
        db = open_state(folder, postgres)
        commits = CommitStamps(db)
        channel = EmailChannel(config, creds, db, smtp, campaign="bench", renderer=renderer)
        start = time.perf_counter()
        outcomes = [channel.deliver(c, now=NOW).status for c in contacts(n)]
        seconds = time.perf_counter() - start
        assert outcomes.count("sent") == n, {s: outcomes.count(s) for s in set(outcomes)}
        print(f"EmailChannel.deliver per contact: {n / seconds:8,.0f} contacts/s (one connection, one process)")
        db.close()
    print(f"  ledger window: {window(relay.stop(), commits.stamps)}")


def bench_channel(n: int, connections: int, processes: int, postgres: Any) -> None:
    relay = Relay()
    config = sample_config().model_copy(update={"smtp_connections": connections, "render_processes": processes,
                                                "default_send_hour": None})  # the run's clock is now: all due
    campaign = Campaign.model_validate({"campaign": "bench", "audience": {"source": {"type": "csv",
                                        "path": "contacts.csv"}}, "holdout": {"fraction": 0.1}, "platforms": {},
                                        "channels": {"default": ["email"]}, "email": config.model_dump(mode="json")})
    with tempfile.TemporaryDirectory() as folder:
        loaded = LoadedCampaign(campaign, Path(folder) / "campaign.yaml", Path(folder))
        db = open_state(folder, postgres)
        commits = CommitStamps(db)
        summary = PlatformSummary()
        cpu = os.times()
        start = time.perf_counter()
        deliver(loaded, config, relay.credentials(), db, contacts(n), summary, "bench-run")
        seconds = time.perf_counter() - start
        used = os.times()
        db.close()
    assert summary.messages == {"sent": n}, summary.messages
    own = (used.user - cpu.user) + (used.system - cpu.system)
    children = (used.children_user - cpu.children_user) + (used.children_system - cpu.children_system)
    print(f"channel end to end, {connections} connection(s), {processes} process(es): {n / seconds:8,.0f} "
          f"messages/s ({n:,} contacts in {seconds:,.1f} s; CPU here {own / n * 1e6:,.0f} µs/message, "
          f"in workers {children / n * 1e6:,.0f} µs/message)")
    print(f"  ledger window: {window(relay.stop(), commits.stamps)}")


def main() -> None:
    default = EmailConfig.model_fields["smtp_connections"].default
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=5_000)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--connections", type=int, default=default)
    parser.add_argument("--postgres", action="store_true", help="keep state in a throwaway PostgreSQL server")
    parser.add_argument("--skip-sequential", action="store_true", help="only the end-to-end channel runs")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, {threading.active_count()} thread(s)")
    postgres = start_postgres() if args.postgres else None
    try:
        if not args.skip_sequential:
            bench_render(args.renders, args.processes)
            bench_delivery(args.messages, postgres)
        bench_channel(args.contacts, 1, 1, postgres)
        bench_channel(args.contacts, args.connections, args.processes, postgres)
    finally:
        if postgres is not None:
            postgres.stop()


if __name__ == "__main__":
    main()
