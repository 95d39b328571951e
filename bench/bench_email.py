"""Benchmark: email renders per second per core, and messages per second delivered to a local SMTP server.

Usage: python bench/bench_email.py [--renders N] [--messages N] [--processes P]

1. Rendering: subject + text + HTML of the packaged templates for the sample contacts, in one process (one
   core), then in P processes to show how it scales.
2. Delivery to a local aiosmtpd server running in its own process (so server and client do not share a GIL):
   the bare SMTP transport on prebuilt messages (one reused connection), then the whole channel per contact
   (suppression, enrollment, due step, variant, ledger claim and mark in SQLite, coupon, render, MIME, SMTP).
Timings are printed, never asserted.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from pydantic import SecretStr

from crm_activation.campaign.email_settings import EmailCredentials
from crm_activation.email.channel import EmailChannel
from crm_activation.email.message import build_message
from crm_activation.email.rendering import TemplateRenderer
from crm_activation.email.samples import SAMPLE_CONTACTS, sample_config, sample_context
from crm_activation.email.smtp import SmtpTransport
from crm_activation.email.unsubscribe import links
from crm_activation.sdk.contact import Attributes, Consent, Contact
from crm_activation.sdk.identifier_kinds import IdentifierKind

SERVER = """
import sys, threading
from aiosmtpd.controller import Controller
class Sink:
    count = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.count += 1
        return "250 OK"
c = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("ready", flush=True)
sys.stdin.readline()
print(Sink.count, flush=True)
c.stop()
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
        return sock.getsockname()[1]


def contact(i: int) -> Contact:
    return Contact(
        contact_id=f"B{i:07d}",
        identifiers={IdentifierKind.EMAIL: f"b{i}@example.com", IdentifierKind.FIRST_NAME: "Sam",
                     IdentifierKind.COUNTRY: "US"},
        attributes=Attributes(funnel_stage=("awareness", "consideration", "conversion")[i % 3],
                              preferred_categories=("design", "video"), history={"last_project": "logo", "hires": 2},
                              consent=Consent(email_marketing=True)),
    )


def bench_delivery(n: int) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        creds = EmailCredentials(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False,
                                 coupon_key=SecretStr("bench-coupon-key-0123456789"),
                                 unsubscribe_key=SecretStr("bench-unsub-key-0123456789"))
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
            db = sqlite3.connect(Path(folder) / "state.sqlite", isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            channel = EmailChannel(config, creds, db, smtp, campaign="bench", renderer=renderer)
            now = datetime(2026, 11, 2, 23, 0, tzinfo=UTC)
            contacts = [contact(i) for i in range(n)]
            start = time.perf_counter()
            outcomes = [channel.deliver(c, now=now).status for c in contacts]
            seconds = time.perf_counter() - start
            assert outcomes.count("sent") == n, {s: outcomes.count(s) for s in set(outcomes)}
            print(f"whole channel:      {n / seconds:8,.0f} contacts/s (ledger + coupon + render + MIME + SMTP)")
            db.close()
    finally:
        assert server.stdin is not None
        server.stdin.write("\n")
        server.stdin.flush()
        print(f"server received {server.communicate(timeout=30)[0].strip()} messages")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=5_000)
    parser.add_argument("--messages", type=int, default=2_000)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPU(s), Python {sys.version.split()[0]}")
    bench_render(args.renders, args.processes)
    bench_delivery(args.messages)


if __name__ == "__main__":
    main()
