"""The `crm-activation` command: run a campaign, list connectors, start the local sandboxes.

Exit codes: 0 success; 1 the run finished but a platform failed; 2 the campaign, an input or a credential is
wrong (nothing was pushed); 3 another run of the campaign holds the lock; 4 the run was refused by a guardrail
(too many rows rejected or members removed, or a --strict warning; nothing was pushed).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..campaign.loader import load_campaign
from ..campaign.schema import EMAIL_CHANNEL
from ..email.smtp_relay import SmtpSandbox
from ..pipeline.channel_plan import enabled_platforms
from ..pipeline.engine import Engine, RunOptions, RunProgress
from ..sdk.errors import ConfigError, CrmActivationError, RunInterrupted
from ..sdk.plugins import collect_connectors, make_plugin_manager
from ..sdk.redaction import PROCESS_REDACTOR, get_logger
from ..sdk.sandbox import FaultPlan
from ..state.database import LOCK_WAIT_SECONDS, StateLockedError
from .display import print_connectors, print_summary
from .email import add_email_commands
from .local_sandboxes import start_sandboxes
from .measurement import add_measurement_commands, report, simulate
from .options import STATE_HELP, default_rejects, state_target
from .runs import add_runs_command, runs
from .validate import add_validate_command, validate

log = get_logger("crm_activation.cli")


class RichRunProgress(RunProgress):
    """Progress bars: rows onboarded, then member operations per platform."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.rows_task = progress.add_task("onboarding rows", total=None)
        self.platform_tasks: dict[str, TaskID] = {}

    def rows(self, n: int) -> None:
        """Advance the onboarding counter."""
        self.progress.advance(self.rows_task, n)

    def platform_started(self, platform: str, total: int) -> None:
        """Add a bar for the platform."""
        self.platform_tasks[platform] = self.progress.add_task(f"pushing {platform}", total=total)

    def pushed(self, platform: str, n: int) -> None:
        """Advance the platform's bar."""
        self.progress.advance(self.platform_tasks[platform], n)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-activation", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log retries and details")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="onboard, hold out, and push a campaign")
    run.add_argument("campaign", type=Path, help="the campaign YAML file")
    run.add_argument("--dry-run", action="store_true", help="write the requests to --outbox instead of sending")
    run.add_argument("--outbox", type=Path, default=Path("outbox"), help="dry-run output folder (JSON lines)")
    run.add_argument(
        "--rejects", type=Path,
        help="CSV of rejected rows, identifiers and platform refusals (default: <campaign>-rejects.csv next to the "
        "SQLite state, or in the current folder for a PostgreSQL state)",
    )
    run.add_argument("--plan", type=Path, help="dry run: CSV of planned changes per record (default: OUTBOX/plan.csv)")
    run.add_argument("--state", type=state_target, help=STATE_HELP)
    run.add_argument(
        "--lock-wait", type=float, default=LOCK_WAIT_SECONDS, metavar="SECONDS",
        help="wait this long for a previous run of the campaign to finish before exiting 3 (default 10)",
    )
    run.add_argument("--mode", choices=["incremental", "full"], help="override the campaign's sync mode")
    run.add_argument(
        "--platform", action="append",
        help="only these channels (repeatable; an unknown name exits 2); the holdout ledger keeps the whole plan",
    )
    run.add_argument(
        "--allow-large-changes", action="store_true",
        help="push this once although more rows are rejected or members removed than the campaign's sync."
        "max_reject_fraction / max_remove_fraction allow (otherwise nothing is pushed and the run exits 4)",
    )
    run.add_argument(
        "--strict", action="store_true",
        help="a segment rule on a field the source lacks, or a country alias in the channel rules, exits 4 "
        "with nothing pushed instead of warning",
    )
    run.add_argument("--sandbox", action="store_true", help="start local sandboxes and push to them")
    run.add_argument(
        "--endpoint", action="append", default=[], metavar="PLATFORM=URL",
        help="send a platform's calls to URL instead (a running `crm-activation sandbox`, a staging proxy)",
    )
    run.add_argument("--sandbox-log", type=Path, help="with --sandbox: folder for the sandboxes' request logs")
    run.add_argument(
        "--resend-in-doubt", action="store_true",
        help="e-mail: re-send steps a killed run left in doubt (maybe delivered; same Message-ID): at least once",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    connectors = commands.add_parser("connectors", help="list installed connectors and their capabilities")
    connectors.add_argument("--json", action="store_true")

    sandbox = commands.add_parser("sandbox", help="serve the platform sandboxes until interrupted")
    sandbox.add_argument("--platform", action="append", help="only these platforms (default: all with a sandbox)")
    sandbox.add_argument("--port-base", type=int, default=8800, help="first port; one port per platform")
    sandbox.add_argument("--log-dir", type=Path, help="folder for JSON-lines request logs")
    sandbox.add_argument("--faults", help='fault plan as JSON, e.g. {"throttle_rate": 0.1}')
    add_measurement_commands(commands)
    add_email_commands(commands)
    add_validate_command(commands)
    add_runs_command(commands)
    return parser


def _endpoint(spec: str) -> tuple[str, str]:
    platform, _, url = spec.partition("=")
    if not platform or not url.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint expects PLATFORM=http(s)://host:port, got {spec!r}")
    return platform, url


def _run(args: argparse.Namespace, console: Console) -> int:
    loaded = load_campaign(args.campaign)
    manager = make_plugin_manager()
    with ExitStack() as stack:
        base_urls = dict(_endpoint(spec) for spec in args.endpoint)
        smtp: tuple[str, int] | None = None
        if args.sandbox:
            platforms = enabled_platforms(loaded.campaign, tuple(args.platform or ()) or None)  # e-mail: below
            servers = start_sandboxes(
                collect_connectors(manager), platforms, dict(loaded.campaign.platforms), log_dir=args.sandbox_log
            )
            for server in servers.values():
                stack.callback(server.stop)
            base_urls |= {slug: server.url for slug, server in servers.items()}
            if loaded.campaign.email and (not args.platform or EMAIL_CHANNEL in args.platform):
                relay = SmtpSandbox().start()
                stack.callback(relay.stop)
                smtp = (relay.host, relay.port)
        options = RunOptions(
            dry_run=args.dry_run,
            outbox=args.outbox,
            rejects=args.rejects or default_rejects(loaded, args.state),
            plan=(args.plan or args.outbox / "plan.csv") if args.dry_run else None,
            state=args.state,
            lock_wait=args.lock_wait,
            base_urls=base_urls,
            mode=args.mode,
            platforms=tuple(args.platform) if args.platform else None,
            smtp=smtp,
            resend_in_doubt=args.resend_in_doubt,
            allow_large_changes=args.allow_large_changes,
            strict=args.strict,
        )
        quiet = args.json or not console.is_terminal
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=Console(stderr=True), disable=quiet, transient=True,
        ) as progress:
            engine = Engine(loaded, options, manager, RichRunProgress(progress))
            summary = engine.run()
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_summary(summary, console)
    if summary.status == "refused":  # said on stderr too: with --json the figures would be in stdout only
        print(f"error: run refused: {summary.error}", file=sys.stderr)
        return 4
    return 0 if summary.status == "succeeded" else 1


def _connectors(args: argparse.Namespace, console: Console) -> int:
    described = [
        {**cls.describe(), "module": cls.__module__} for cls in collect_connectors(make_plugin_manager()).values()
    ]
    if args.json:
        print(json.dumps(described, indent=2))
    else:
        print_connectors(described, console)
    return 0


def _sandbox(args: argparse.Namespace, console: Console) -> int:
    connectors = collect_connectors(make_plugin_manager())
    platforms = args.platform or [slug for slug, cls in connectors.items() if cls.sandbox is not None]
    faults = FaultPlan.model_validate_json(args.faults) if args.faults else None
    servers = start_sandboxes(connectors, platforms, log_dir=args.log_dir, faults=faults, port_base=args.port_base)
    for slug, server in servers.items():
        console.print(f"{slug:<12} {server.url}   (state: {server.url}/_sandbox/state)")
    relay = SmtpSandbox(args.port_base + len(servers) if args.port_base else 0).start()
    console.print(f"{'email':<12} {relay.url}   (an SMTP relay that accepts and keeps every message)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        relay.stop()
        for server in servers.values():
            server.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # logs and CI: keep the summary tables readable, not squeezed to 80
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=Console(stderr=True), show_path=False)],
    )
    if args.command == "email":
        return int(args.handler(args))
    commands = {"run": _run, "connectors": _connectors, "sandbox": _sandbox, "report": report,
                "simulate-conversions": simulate, "simulate": simulate, "validate": validate, "runs": runs}
    try:
        return commands[args.command](args, console)
    except StateLockedError as error:  # a scheduler can tell "still running" from "broken"
        print(f"error: {PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)
        return 3
    except RunInterrupted as error:  # Ctrl-C in a run: recorded and closed by the engine; no traceback
        print(f"{PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except CrmActivationError as error:
        print(f"error: {PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)  # unwrapped: file:line stays greppable
        return 2


if __name__ == "__main__":
    sys.exit(main())
