"""`crm-activation validate` (alias `check`): a campaign's every problem at once, before a run; nothing pushed.

The checks are in `crm_activation.pipeline.preflight`; this module parses, starts sandboxes for `--connect
--sandbox`, and prints. Exit codes: 0 valid (warnings allowed), 2 not valid — the same 2 a run exits with
when the campaign, an input or a credential is wrong, so a pipeline can gate the run on it.
"""

from __future__ import annotations

import argparse
import json
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ..campaign.loader import CampaignFileError, load_campaign
from ..pipeline.preflight import DEFAULT_SAMPLE, Preflight, check_connections, ready_platforms, validate_campaign
from ..sdk.errors import CrmActivationError
from ..sdk.plugins import collect_connectors, make_plugin_manager
from ..sdk.redaction import PROCESS_REDACTOR
from .local_sandboxes import start_sandboxes

_MARKS = {"error": "[red]error[/red]", "warning": "[yellow]warning[/yellow]", "ok": "[green]ok[/green]"}


def add_validate_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `validate` (and its alias `check`) to the CLI's sub-parsers."""
    validate = commands.add_parser(
        "validate", aliases=["check"], help="check a campaign (credentials, source, segments, templates); push nothing"
    )
    validate.add_argument("campaign", type=Path, help="the campaign YAML file")
    validate.add_argument("--platform", action="append", help="only these platforms (repeatable), as with `run`")
    validate.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, metavar="ROWS",
        help=f"parse this many source rows with the run's parser (default {DEFAULT_SAMPLE}; 0: none)",
    )
    validate.add_argument("--connect", action="store_true", help="also call each platform's credential check")
    validate.add_argument("--sandbox", action="store_true", help="with --connect: check against local sandboxes")
    validate.add_argument("--json", action="store_true", help="print the findings as JSON (errors too)")
    validate.set_defaults(command="validate")


def validate(args: argparse.Namespace, console: Console) -> int:
    """`crm-activation validate`: 0 when the campaign is valid, 2 when not (every problem listed)."""
    try:
        loaded = load_campaign(args.campaign)
    except CampaignFileError as error:
        result = Preflight()
        for issue in error.issues:
            where = f"{issue.file}:{issue.line}" if issue.line is not None else issue.file
            result.add("error", "campaign", where, f"{issue.path}: {issue.message}" if issue.path else issue.message)
        return _report(args, console, None, result)
    except CrmActivationError as error:
        result = Preflight()
        result.add("error", "campaign", str(args.campaign), PROCESS_REDACTOR.redact(str(error)))
        return _report(args, console, None, result)
    manager = make_plugin_manager()
    platforms = tuple(args.platform) if args.platform else None
    result = validate_campaign(loaded, manager, platforms=platforms, sample=max(0, args.sample))
    if args.connect:
        ready = ready_platforms(result)
        with ExitStack() as stack:
            base_urls: dict[str, str] = {}
            if args.sandbox:
                try:
                    servers = start_sandboxes(collect_connectors(manager), ready, dict(loaded.campaign.platforms))
                except CrmActivationError as error:
                    result.add("error", "connect", "--sandbox", str(error))
                    ready = []
                else:
                    for server in servers.values():
                        stack.callback(server.stop)
                    base_urls = {slug: server.url for slug, server in servers.items()}
            check_connections(loaded, manager, ready, result, base_urls)
    return _report(args, console, loaded.campaign.campaign, result)


def _report(args: argparse.Namespace, console: Console, campaign: str | None, result: Preflight) -> int:
    if args.json:
        print(json.dumps({"campaign": campaign, "file": str(args.campaign), **result.to_json()}, indent=2))
    else:
        for finding in result.findings:
            where = f" {escape(finding.where)}:" if finding.where else ""
            console.print(f"{_MARKS[finding.level]} {finding.check}:{where} {escape(finding.message)}", soft_wrap=True)
        errors, warnings = len(result.errors), sum(f.level == "warning" for f in result.findings)
        verdict = "[green]valid[/green]" if result.valid else f"[red]not valid[/red]: {errors} error(s)"
        console.print(f"{escape(str(args.campaign))}: {verdict}, {warnings} warning(s)")
    return 0 if result.valid else 2
