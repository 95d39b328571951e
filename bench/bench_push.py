"""Benchmark: the push phase against Meta's own SDK, to the same minimal Graph stub, in the same run.

Usage: python bench/bench_push.py [N] [--in-flight K] [--rate R] [--churn 0.01] [--no-sdk] [--diff-only]

A minimal local Graph stub runs in its own process (so it does not share a GIL with the pusher). It validates
nothing: it reads each body, counts its rows and answers as Graph's `POST /{audience_id}/users` does. Then:
(a) the `facebook-business` SDK's `CustomAudience(id).add_users(EMAIL_SHA256, ..., pre_hashed=True)` pushes N
    pre-hashed e-mails in batches of 10,000 (a bench-only dependency: `pip install facebook-business`; when it
    is missing the bench says so and measures ours only);
(b) our push phase: the same N contacts staged in a SQLite state database (one EMAIL field each, as staged by a
    run; onboarding excluded), then the real `PlatformChannel.push` (plan, ensure the audience, send, record
    every acknowledged batch) through the real Facebook connector to the same stub; timed from the push on;
(c) a resync: 1% of the contacts changed (a third removed, a third with a new e-mail, a third new contacts),
    staged and pushed again: records sent (by the stub's count) as a share of N, and time against (b);
(d) the full pipeline, CSV to pushed: N e-mail-only contacts (id, e-mail, country) in a CSV file, run by the
    engine (read, link, normalize, hash, holdout, route, stage, diff, push, record) on every core, against (a);
(e) its resync: the CSV with 1% of the contacts changed, run again: records sent and time against (d).
Timings are printed, never asserted; the record counts are checked against the stub's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from crm_activation.campaign.loader import load_campaign
from crm_activation.pipeline.channel_plan import build_connectors
from crm_activation.pipeline.platform_channel import PlatformChannel
from crm_activation.pipeline.run_options import RunOptions
from crm_activation.sdk.plugins import make_plugin_manager
from crm_activation.sdk.redaction import Redactor
from crm_activation.sdk.summary import PlatformSummary
from crm_activation.sdk.types import Member
from crm_activation.state.store import StateStore, encode_member

TOKEN = "bench-token-0123456789"
ACCOUNT = "1234567890"
BATCH = 10_000  # Meta's maximum rows per request, as our connector sends
SDK_AUDIENCE = "900000000000001"
CAMPAIGN = """
campaign: bench
audience:
  source: {{type: csv, path: contacts.csv}}
channels:
  default: [facebook]
platforms:
  facebook:
    account: {{ad_account_id: "{account}", base_url: "{url}", requests_per_second: {rate}{in_flight}}}
state: {{path: {state}}}
"""


# -- the stub (its own process) ---------------------------------------------------------------------------
class _Stub(BaseHTTPRequestHandler):
    """Answers like Graph: the account, audience lookups and creation, and `/users` with a row count."""

    protocol_version = "HTTP/1.1"
    audiences: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = {"POST": 0, "DELETE": 0, "requests": 0}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, body: dict[str, Any], status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _rows(self, body: bytes, query: str) -> int:
        """Rows of a `/users` payload: a JSON body (ours), a form body (the SDK's POST), or the query (DELETE)."""
        if body[:1] == b"{":
            payload = json.loads(body)["payload"]
        else:
            form = parse_qs(body.decode() if body else query)
            payload = json.loads(form["payload"][0])
        return len(payload["data"])

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")[1:]  # without the API version
        if segments == ["stats"]:
            with self.lock:
                return self._answer(dict(self.counts))
        if len(segments) == 1 and segments[0].startswith("act_"):
            return self._answer({"id": segments[0], "name": "bench"})
        if len(segments) == 2 and segments[1] == "customaudiences":
            return self._answer({"data": list(self.audiences.values()), "paging": {}})
        if len(segments) == 1 and segments[0] in self.audiences:
            return self._answer(self.audiences[segments[0]])
        return self._answer({"error": {"message": "unknown object", "code": 100, "error_subcode": 33}}, 400)

    def _users(self, method: str) -> None:
        parts = urlsplit(self.path)
        segments = parts.path.strip("/").split("/")[1:]
        body = self._body()
        if len(segments) == 2 and segments[1] == "customaudiences" and method == "POST":
            spec = json.loads(body) if body[:1] == b"{" else {k: v[0] for k, v in parse_qs(body.decode()).items()}
            with self.lock:
                audience_id = str(800000000000000 + len(self.audiences))
                self.audiences[audience_id] = {
                    "id": audience_id, "name": spec.get("name", ""), "description": spec.get("description", ""),
                    "subtype": "CUSTOM",
                }
            return self._answer({"id": audience_id})
        if len(segments) == 2 and segments[1] == "users":
            rows = self._rows(body, parts.query)
            with self.lock:
                self.counts[method] += rows
                self.counts["requests"] += 1
            return self._answer({
                "audience_id": segments[0], "session_id": str(self.counts["requests"]), "num_received": rows,
                "num_invalid_entries": 0, "invalid_entry_samples": {},
            })
        return self._answer({"error": {"message": "unsupported", "code": 100}}, 400)

    def do_POST(self) -> None:
        self._users("POST")

    def do_DELETE(self) -> None:
        self._users("DELETE")


def serve(port: int) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", port), _Stub)
    server.daemon_threads = True
    print("ready", flush=True)
    server.serve_forever()


class StubProcess:
    """The stub in a child process, and its counters."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit("the Graph stub did not start")

    def stats(self) -> dict[str, int]:
        import requests

        return dict(requests.get(f"{self.url}/v25.0/stats", timeout=30).json())

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


# -- the contacts ---------------------------------------------------------------------------------------
def email_hash(i: int, version: int = 0) -> str:
    return hashlib.sha256(f"user{i}.{version}@example.com".encode()).hexdigest()


def staged_rows(members: dict[str, str]) -> list[tuple[str, str, str, str, str]]:
    """`(platform, audience_key, contact_id, fingerprint, payload)` as a run stages an e-mail-only contact."""
    rows = []
    for contact_id, digest in members.items():
        payload, fingerprint = encode_member(Member(contact_id, {"EMAIL": digest}, "US", {}))
        rows.append(("facebook", "bench/awareness", contact_id, fingerprint, payload))
    return rows


def churned(members: dict[str, str], n: int, fraction: float) -> tuple[dict[str, str], int, int, int]:
    """The membership with `fraction` of n changed: a third removed, a third re-hashed, a third new."""
    changed = max(3, round(n * fraction))
    step = max(1, n // changed)
    picked = [f"c{i:09d}" for i in range(0, n, step)][:changed]
    removed, edited = picked[0::3], picked[1::3]
    added = len(picked) - len(removed) - len(edited)
    result = dict(members)
    for contact_id in removed:
        del result[contact_id]
    for contact_id in edited:
        result[contact_id] = email_hash(int(contact_id[1:]), version=1)
    for i in range(n, n + added):
        result[f"c{i:09d}"] = email_hash(i)
    return result, len(removed), len(edited), added


# -- (a) the SDK ----------------------------------------------------------------------------------------
def push_with_sdk(url: str, hashes: list[str]) -> float | None:
    """Seconds the SDK's add_users takes for every hash, in batches of BATCH; None when it is not installed."""
    try:
        from facebook_business.adobjects.customaudience import CustomAudience
        from facebook_business.api import FacebookAdsApi
        from facebook_business.session import FacebookSession
    except ImportError:
        return None
    session = FacebookSession(access_token=TOKEN)
    session.GRAPH = url
    api = FacebookAdsApi(session, api_version="v25.0")
    audience = CustomAudience(SDK_AUDIENCE, api=api)
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(hashes), BATCH):
        audience.add_users(CustomAudience.Schema.email_hash, hashes[start : start + BATCH], pre_hashed=True)
    seconds = time.perf_counter() - started
    print(f"    SDK process CPU: {time.process_time() - cpu:.2f}s")
    return seconds


# -- (b), (c) ours --------------------------------------------------------------------------------------
class OurPush:
    """Our push phase over one state database: the real channel, connector and state, staged by hand."""

    def __init__(self, work: Path, url: str, rate: float, in_flight: int | None) -> None:
        os.environ["CRM_ACTIVATION_FACEBOOK_ACCESS_TOKEN"] = TOKEN
        extra = f", requests_in_flight: {in_flight}" if in_flight else ""
        campaign_file = work / "campaign.yaml"
        campaign_file.write_text(
            CAMPAIGN.format(account=ACCOUNT, url=url, rate=rate, in_flight=extra, state=work / "state.sqlite")
        )
        self.loaded = load_campaign(campaign_file)
        self.campaign = self.loaded.campaign
        self.state = StateStore(self.loaded.open_state(None))
        self.pm = make_plugin_manager()
        self.requests = 0  # requests the last push sent
        self.in_flight = 0  # requests in flight the last push allowed
        self.cpu_seconds = 0.0  # CPU seconds of this process (every thread) during the last push

    def push(self, members: dict[str, str]) -> tuple[float, PlatformSummary]:
        """Stage the membership (untimed), then push it; return the push's seconds and the summary."""
        state = self.state
        state.reset_desired()
        state.stage_desired(staged_rows(members))
        redactor = Redactor()
        connector = build_connectors(self.campaign, RunOptions(), self.pm, redactor)["facebook"]
        channel = PlatformChannel(
            "facebook", connector, self.campaign, hooks=self.pm.hook, redactor=redactor, dry_run=False
        )
        run_id = state.start_run(self.campaign.campaign, "incremental")
        summary = PlatformSummary()
        started, cpu = time.perf_counter(), time.process_time()
        channel.push(state, summary, run_id)
        seconds = time.perf_counter() - started
        self.cpu_seconds = time.process_time() - cpu
        self.requests = channel.requests
        self.in_flight = connector.requests_in_flight
        state.finish_run(run_id, "failed" if summary.error else "succeeded", {})
        state.close()  # releases the campaign lock for the next run
        self.state = StateStore(self.loaded.open_state(None))
        if summary.error:
            raise SystemExit(f"our push failed: {summary.error}")
        return seconds, summary

    def stored(self) -> int:
        return int(self.state.db.execute("SELECT COUNT(*) FROM memberships").fetchone()[0])


def diff_at_scale(n: int, churn: float, work: Path) -> None:
    """Only the diff: N acknowledged members and a staged membership with `churn` of them changed; time `plan`.

    Rows are generated and written in chunks, so the bench's own memory stays flat: the peak RSS printed is the
    diff's (SQLite's page cache and temporary tables), not the data set's.
    """
    state = StateStore(work / "diff.sqlite")
    step = max(1, round(1 / churn))
    started = time.perf_counter()

    def chunks(rows: Iterator[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        chunk: list[tuple[Any, ...]] = []
        for row in rows:
            chunk.append(row)
            if len(chunk) == size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def acknowledged() -> Iterator[tuple[Any, ...]]:
        for i in range(n):
            payload, fingerprint = encode_member(Member(f"c{i:09d}", {"EMAIL": email_hash(i)}, "US", {}))
            yield ("facebook", "bench/awareness", f"c{i:09d}", "bench", fingerprint, payload, 0.0)

    def desired() -> Iterator[tuple[Any, ...]]:
        """Every step-th member changes, in turn removed, given a new e-mail, or replaced by a new contact."""
        for i in range(n + n // step // 3):
            change = (i // step) % 3 if i < n and i % step == 0 else None
            if change == 0:
                continue  # removed
            version = 1 if change == 1 else 0  # a new e-mail
            payload, fingerprint = encode_member(Member(f"c{i:09d}", {"EMAIL": email_hash(i, version)}, "US", {}))
            yield ("facebook", "bench/awareness", f"c{i:09d}", fingerprint, payload)

    for chunk in chunks(acknowledged()):
        with state.transaction():
            state.db.executemany("INSERT INTO memberships VALUES (?, ?, ?, ?, ?, ?, ?)", chunk)
    state.reset_desired()
    for chunk in chunks(desired()):
        state.stage_desired(chunk)
    written = time.perf_counter() - started
    print(f"diff only: {n:,} acknowledged members, {churn:.0%} of them changed, written in {written:.0f}s")
    started, cpu = time.perf_counter(), time.process_time()
    planned = state.plan("bench", "facebook", full=False)
    seconds = time.perf_counter() - started
    removes, adds = planned.get(("bench/awareness", "remove"), 0), planned.get(("bench/awareness", "add"), 0)
    print(f"  plan: {removes:,} removes and {adds:,} adds in {seconds:.2f}s (CPU {time.process_time() - cpu:.2f}s) "
          f"= {n / seconds:,.0f} members diffed/s; peak RSS {peak_rss_mib():.0f} MiB")
    state.close()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("n", type=int, nargs="?", default=1_000_000)
    parser.add_argument("--in-flight", type=int, default=4, help="the account's requests_in_flight (0: the default)")
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second allowed (as in the sandbox)")
    parser.add_argument("--churn", type=float, default=0.01)
    parser.add_argument("--no-sdk", action="store_true", help="measure ours only")
    parser.add_argument("--diff-only", action="store_true", help="time only the diff of N members (e.g. 10,000,000)")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve)
    work = Path(tempfile.mkdtemp(prefix="crm-bench-push-"))
    try:
        if args.diff_only:
            return diff_at_scale(args.n, args.churn, work)
        stub = StubProcess()
        try:
            run(args, stub, work)
        finally:
            stub.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, stub: StubProcess, work: Path) -> None:
    n = args.n
    members = {f"c{i:09d}": email_hash(i) for i in range(n)}
    print(f"{n:,} pre-hashed e-mails; Graph stub at {stub.url} (own process); batches of {BATCH:,}")

    sdk = None if args.no_sdk else push_with_sdk(stub.url, list(members.values()))
    received = stub.stats()["POST"]
    if sdk is None:
        print("(a) facebook-business SDK: not measured" + ("" if args.no_sdk else
              " (not installed: pip install facebook-business, or pip install -e '.[bench]')"))
    else:
        assert received == n, f"the stub received {received:,} rows from the SDK, not {n:,}"
        print(f"(a) SDK CustomAudience.add_users: {n:,} records in {sdk:.2f}s = {n / sdk:,.0f} records/s")

    ours = OurPush(work, stub.url, args.rate, args.in_flight)
    first, _ = ours.push(members)
    stats = stub.stats()
    sent = stats["POST"] - received
    assert sent == n and ours.stored() == n, f"ours: the stub received {sent:,}, the state holds {ours.stored():,}"
    print(f"(b) our push phase ({ours.in_flight} requests in flight, at most {args.rate:g}/s; plan, ensure, send, "
          f"record; {ours.requests} requests): {n:,} records in {first:.2f}s = {n / first:,.0f} records/s "
          f"(process CPU {ours.cpu_seconds:.2f}s)")
    if sdk is not None:
        print(f"    ours / SDK: {sdk / first:.2f} x  (target >= 1.0)")

    changed, removed, edited, added = churned(members, n, args.churn)
    again, _ = ours.push(changed)
    after = stub.stats()
    records = after["POST"] + after["DELETE"] - stats["POST"] - stats["DELETE"]
    expected = removed + 2 * edited + added  # a new e-mail is a remove of the old payload and an add of the new
    assert records == expected, f"resync sent {records:,} records, the change is {expected:,}"
    assert ours.stored() == len(changed)
    contacts = removed + edited + added
    print(f"(c) resync, {contacts:,} contacts changed ({contacts / n:.2%} of N: {removed:,} removed, {edited:,} with "
          f"a new e-mail, {added:,} new): {records:,} records sent = {records / n:.2%} of N, exactly the change "
          f"({removed:,} + 2 x {edited:,} + {added:,}; a new e-mail is a remove and an add)")
    print(f"    contacts sent {contacts / n:.2%} of N (target <= 1.1%); resync {again:.2f}s = "
          f"{again / first:.3f} x the first sync (target <= 0.2)")
    full_pipeline(n, stub, work, args, sdk)


def write_contacts(path: Path, n: int, changed: frozenset[int] = frozenset()) -> None:
    """N e-mail-only contacts; those in `changed` get a new address, every third of them is left out instead."""
    with path.open("w") as out:
        out.write("contact_id,email,country\n")
        for i in range(n):
            version = 0
            if i in changed:
                if i % 3 == 0:
                    continue
                version = 1
            out.write(f"c{i:09d},User{i}.{version}@Example.com,US\n")


def full_pipeline(n: int, stub: StubProcess, work: Path, args: argparse.Namespace, sdk: float | None) -> None:
    """(d) and (e): the engine's whole run from a CSV file, first sync then a resync with 1% changed."""
    from crm_activation.cli.options import available_cores
    from crm_activation.pipeline.engine import Engine

    folder = work / "full"
    folder.mkdir()
    extra = f", requests_in_flight: {args.in_flight}" if args.in_flight else ""
    (folder / "campaign.yaml").write_text(
        CAMPAIGN.format(account=ACCOUNT, url=stub.url, rate=args.rate, in_flight=extra, state=folder / "state.sqlite")
    )
    write_contacts(folder / "contacts.csv", n)
    workers = available_cores()

    def run() -> tuple[float, int, int]:
        before = stub.stats()
        started = time.perf_counter()
        summary = Engine(load_campaign(folder / "campaign.yaml"), RunOptions(workers=workers)).run()
        seconds = time.perf_counter() - started
        if summary.status != "succeeded":
            raise SystemExit(f"the full run {summary.status}: {summary.error}")
        after = stub.stats()
        sent = after["POST"] + after["DELETE"] - before["POST"] - before["DELETE"]
        return seconds, summary.outcomes["activated"], sent

    first, activated, sent = run()
    print(f"(d) full pipeline, CSV to pushed, {workers} workers: {n:,} contacts in {first:.1f}s = {n / first:,.0f} "
          f"contacts/s ({activated:,} in the test group pushed, {sent:,} records)")
    if sdk:
        print(f"    contacts/s over the SDK's records/s: {(n / first) / (n / sdk):.2f} x  (target >= 0.5)")
    step = max(1, round(1 / args.churn))
    changed = frozenset(range(0, n, step))
    write_contacts(folder / "contacts.csv", n, changed)
    again, _, records = run()
    print(f"(e) full resync, {len(changed):,} contacts changed ({len(changed) / n:.2%}): {records:,} records sent "
          f"= {records / n:.2%} of N; {again:.1f}s = {again / first:.2f} x the first full run (target <= 0.2; the "
          "whole file is read, linked and routed again)")


if __name__ == "__main__":
    main()
