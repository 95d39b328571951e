"""The `crm-activation` command: run a campaign, list connectors, start the local sandboxes.

Exit codes: 0 success; 1 the run finished but a platform failed; 2 the campaign, an input or a credential is
wrong (nothing was pushed); 3 another run of the campaign holds the lock; 4 the run was refused by a guardrail
(too many rows rejected or members removed, or a --strict warning; nothing was pushed); 130 interrupted
(Ctrl-C); 141 standard output was closed early (`... | head`).

Ordinary events (Ctrl-C, a closed pipe, a busy port) end with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from contextlib import ExitStack
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path

import pluggy
from pydantic import ValidationError
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..campaign.loader import LoadedCampaign, load_campaign
from ..campaign.schema import EMAIL_CHANNEL
from ..email.smtp_relay import SmtpSandbox
from ..pipeline.channel_plan import enabled_platforms
from ..pipeline.engine import Engine, RunOptions, RunProgress
from ..sdk.errors import ConfigError, CrmActivationError, RunInterrupted
from ..sdk.plugins import collect_connectors, make_plugin_manager, missing_connector_error, plugin_problems
from ..sdk.redaction import PROCESS_REDACTOR, get_logger
from ..sdk.sandbox import FaultPlan
from ..state.database import LOCK_WAIT_SECONDS, StateLockedError
from .display import print_connectors, print_summary
from .email import add_email_commands
from .local_sandboxes import bind_error, start_sandboxes, supply_test_credentials
from .measurement import add_measurement_commands, report, simulate
from .options import STATE_HELP, available_cores, default_rejects, positive_int, state_target
from .runs import add_runs_command, runs
from .scaffold import add_scaffold_command, new_connector
from .validate import add_validate_command, validate

log = get_logger("crm_activation.cli")


class RichRunProgress(RunProgress):
    """Progress bars: rows linked into people, rows onboarded (with their total), then each channel's push."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.link_task = progress.add_task("linking records into people", total=None)
        self.linked_rows = 0
        self.rows_task: TaskID | None = None
        self.platform_tasks: dict[str, TaskID] = {}

    def linked(self, n: int) -> None:
        """Advance the linking counter."""
        self.linked_rows += n
        self.progress.advance(self.link_task, n)

    def rows_total(self, total: int) -> None:
        """The first pass is done: close its bar and open the onboarding bar with its total."""
        self.progress.update(self.link_task, total=self.linked_rows)
        self.rows_task = self.progress.add_task("onboarding rows", total=total)

    def rows(self, n: int) -> None:
        """Advance the onboarding counter."""
        if self.rows_task is None:  # a caller that never linked: a bar without a total
            self.rows_task = self.progress.add_task("onboarding rows", total=None)
        self.progress.advance(self.rows_task, n)

    def platform_started(self, platform: str, total: int) -> None:
        """Add a bar for the platform."""
        self.platform_tasks[platform] = self.progress.add_task(f"pushing {platform}", total=total)

    def pushed(self, platform: str, n: int) -> None:
        """Advance the platform's bar."""
        self.progress.advance(self.platform_tasks[platform], n)


EPILOG = """\
exit codes:
  0    success
  1    the run finished but a platform failed
  2    the campaign, an input, a credential or an option is wrong (nothing was pushed)
  3    another run of the campaign holds the lock
  4    refused by a guardrail (too many rejects or removals, or a --strict warning; nothing was pushed)
  130  interrupted (Ctrl-C)
  141  standard output closed early (e.g. piped into head)

example:
  crm-activation validate examples/campaign.yaml
  crm-activation run examples/campaign.yaml --sandbox        # local sandboxes, test credentials supplied
  crm-activation run campaign.yaml --state out/state.sqlite -v

Relative paths given on the command line are relative to the current folder; paths inside the campaign file
are relative to the campaign file's folder.
"""
VERBOSE_HELP = "log retries and details (also accepted after the command)"


def _version() -> str:
    try:
        return installed_version("crm-activation")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _accept_global_flags(parser: argparse.ArgumentParser) -> None:
    """Let `-v` follow any subcommand too (`run campaign.yaml -v`), as people type it.

    The sub-parsers' default is SUPPRESS, so an absent flag there never resets one given before the command.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in {id(p): p for p in action.choices.values()}.values():
                sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
                _accept_global_flags(sub)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crm-activation", description=__doc__.splitlines()[0], epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the installed version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    run.add_argument(
        "--workers", type=positive_int, default=available_cores(), metavar="N",
        help="processes that parse, hash and route the audience's batches (default: this machine's cores, "
        f"{available_cores()}); the output is the same for any N",
    )
    run.add_argument("--json", action="store_true", help="print the summary as JSON")

    connectors = commands.add_parser("connectors", help="list installed connectors and their capabilities")
    connectors.add_argument("--json", action="store_true", help="print the connectors and skipped plugins as JSON")

    sandbox = commands.add_parser("sandbox", help="serve the platform sandboxes until interrupted")
    sandbox.add_argument("--platform", action="append", help="only these platforms (default: all with a sandbox)")
    sandbox.add_argument("--port-base", type=int, default=8800, help="first port; one port per platform")
    sandbox.add_argument("--log-dir", type=Path, help="folder for JSON-lines request logs")
    sandbox.add_argument("--faults", type=_fault_plan, help='fault plan as JSON, e.g. {"throttle_rate": 0.1}')
    add_measurement_commands(commands)
    add_email_commands(commands)
    add_validate_command(commands)
    add_runs_command(commands)
    add_scaffold_command(commands)
    _accept_global_flags(parser)
    return parser


def _endpoint(spec: str) -> tuple[str, str]:
    platform, _, url = spec.partition("=")
    if not platform or not url.startswith(("http://", "https://")):
        raise ConfigError(f"--endpoint expects PLATFORM=http(s)://host:port, got {spec!r}")
    return platform, url


def _fault_plan(text: str) -> FaultPlan:
    """`--faults`: a JSON fault plan; a typo or an unknown field is a usage error, not a traceback."""
    try:
        return FaultPlan.model_validate_json(text)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'JSON'}: {e['msg']}" for e in error.errors())
        raise argparse.ArgumentTypeError(f"not a fault plan ({problems})") from None


def _check_platforms(loaded: LoadedCampaign, manager: pluggy.PluginManager, platforms: Sequence[str]) -> None:
    """Before anything runs: every platform has a connector (else: which broken plugin), and valid settings.

    The account settings are checked here, where the campaign file's lines are known, so a mistake in
    `platforms.<slug>.account` reads `FILE:LINE: platforms.<slug>.account.<field>: message` like the loader's.
    """
    installed = collect_connectors(manager)
    for slug in platforms:
        cls = installed.get(slug)
        if cls is None:
            raise missing_connector_error(manager, slug, installed)
        account = loaded.campaign.platforms[slug].account
        loaded.validate_section(("platforms", slug, "account"), cls.account_model, account)


def _run(args: argparse.Namespace, console: Console) -> int:
    loaded = load_campaign(args.campaign)
    manager = make_plugin_manager()
    platforms = enabled_platforms(loaded.campaign, tuple(args.platform or ()) or None)  # e-mail: below
    _check_platforms(loaded, manager, platforms)
    with ExitStack() as stack:
        base_urls = dict(_endpoint(spec) for spec in args.endpoint)
        smtp: tuple[str, int] | None = None
        if args.sandbox:
            with_email = bool(loaded.campaign.email) and (not args.platform or EMAIL_CHANNEL in args.platform)
            supplied = supply_test_credentials(
                collect_connectors(manager), platforms, dict(loaded.campaign.platforms), email=with_email
            )
            if supplied:
                log.info("--sandbox: using the sandboxes' test credentials for %s", ", ".join(supplied))
            servers = start_sandboxes(
                collect_connectors(manager), platforms, dict(loaded.campaign.platforms), log_dir=args.sandbox_log
            )
            for server in servers.values():
                stack.callback(server.stop)
            base_urls |= {slug: server.url for slug, server in servers.items()}
            if with_email:
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
            workers=args.workers,
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
    manager = make_plugin_manager()
    described = [{**cls.describe(), "module": cls.__module__} for cls in collect_connectors(manager).values()]
    problems = [problem.to_json() for problem in plugin_problems(manager)]  # also warned on stderr
    if args.json:
        print(json.dumps({"connectors": described, "skipped_plugins": problems}, indent=2))
    else:
        print_connectors(described, console)
    return 0


def _sandbox(args: argparse.Namespace, console: Console) -> int:
    connectors = collect_connectors(make_plugin_manager())
    platforms = args.platform or [slug for slug, cls in connectors.items() if cls.sandbox is not None]
    faults = args.faults
    supply_test_credentials(connectors, platforms)  # a standalone sandbox accepts the same test values as `run`
    servers = start_sandboxes(connectors, platforms, log_dir=args.log_dir, faults=faults, port_base=args.port_base)
    for slug, server in servers.items():
        console.print(f"{slug:<12} {server.url}   (state: {server.url}/_sandbox/state)")
    relay_port = args.port_base + len(servers) if args.port_base else 0
    try:
        relay = SmtpSandbox(relay_port).start()
    except OSError as error:
        for server in servers.values():
            server.stop()
        raise ConfigError(bind_error("email", relay_port, error)) from None
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
    """Entry point of the console script: ordinary events (Ctrl-C, a closed pipe) end without a traceback."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, so a closed pipe is noticed inside the handler rather than at exit
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (`| head`) has what it wanted. Point stdout at /dev/null so the interpreter's final flush
        # does not complain again, and exit as a process killed by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _main(argv: Sequence[str] | None) -> int:
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
                "simulate-conversions": simulate, "simulate": simulate, "validate": validate, "runs": runs,
                "new-connector": new_connector}
    try:
        return commands[args.command](args, console)
    except StateLockedError as error:  # a scheduler can tell "still running" from "broken"
        print(f"error: {PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)
        return 3
    except RunInterrupted as error:  # Ctrl-C in a run: recorded and closed by the engine; no traceback
        print(f"{PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)
        return 130
    except CrmActivationError as error:
        print(f"error: {PROCESS_REDACTOR.redact(str(error))}", file=sys.stderr)  # unwrapped: file:line stays greppable
        return 2


if __name__ == "__main__":
    sys.exit(main())
