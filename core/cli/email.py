"""`crm-activation email render | lint | preview`: the arguments and the printing for e-mail teams.

What each command does is in `crm_activation.email.commands`; this module parses, dispatches and prints.
Exit codes: 0 fine, 1 lint found problems, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime
from pathlib import Path

from ..campaign.email_settings import EmailConfig
from ..email.commands import (
    campaign_contacts,
    campaign_email,
    lint,
    load_contacts,
    load_email_config,
    render_for_contact,
)
from ..email.rendering import TemplateRenderer
from ..email.samples import SAMPLE_CONTACTS, SEGMENTS
from ..email.send_time import plan_send
from ..sdk.errors import CrmActivationError, InputError


def add_email_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `email render|lint|preview` to the CLI's sub-parsers (sets `handler` on the parsed args)."""
    email = subparsers.add_parser("email", help="email templates: render, lint, preview")
    email.set_defaults(handler=run_email_command)
    commands = email.add_subparsers(dest="email_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--templates", type=Path, help="templates folder (default: the config's, or the packaged)")
    common.add_argument("--config", type=Path, help="YAML/JSON email section (EmailConfig); default: the sample")

    render = commands.add_parser("render", parents=[common], help="render one template for one contact")
    render.add_argument("template", help="template folder name")
    render.add_argument("--contact", type=Path, help="JSON, JSON Lines or CSV file (default: a sample contact)")
    render.add_argument("--contact-id", help="which contact of the file (default: the first)")
    render.add_argument("--sample", choices=sorted(SAMPLE_CONTACTS), default="typical",
                        help="which built-in sample contact, without --contact (default: typical)")
    render.add_argument("--variant", help="the template variant to render (default: the base template)")
    render.add_argument("--stage", help="funnel stage (default: the contact's)")
    render.add_argument("--step", type=int, default=1, help="the sequence step (default 1)")
    render.add_argument("--out", type=Path, help="write subject.txt, body.txt, body.html here instead of stdout")

    lint_cmd = commands.add_parser("lint", parents=[common], help="render every combination; report every error")
    lint_cmd.add_argument("--segment", action="append", help="segments to try (default: the sample segments)")
    lint_cmd.add_argument("--stage", action="append", help="funnel stages to try (default: the sequences')")

    preview = commands.add_parser("preview", parents=[common], help="serve a local page of rendered templates")
    preview.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    preview.add_argument("--port", type=int, default=8025, help="port to serve on (default 8025)")
    preview.add_argument("--campaign", type=Path,
                         help="campaign file: its email section, and real contacts of its audience source")
    who = preview.add_mutually_exclusive_group()
    who.add_argument("--contact-id", action="append", help="preview this contact of the campaign (repeatable)")
    who.add_argument("--sample", type=int, metavar="N", help="preview N contacts of the campaign's source")
    for command in (render, preview):
        command.add_argument("--send-date", type=date.fromisoformat, metavar="YYYY-MM-DD",
                             help="the day whose send hours are shown (default: today, UTC)")


def _setup(args: argparse.Namespace) -> tuple[TemplateRenderer, EmailConfig]:
    campaign = getattr(args, "campaign", None)
    config = campaign_email(campaign)[0] if campaign is not None and args.config is None else load_email_config(
        args.config)
    return TemplateRenderer(args.templates or config.templates, auto_reload=args.email_command == "preview"), config


def _render(args: argparse.Namespace, renderer: TemplateRenderer, config: EmailConfig) -> int:
    contact = SAMPLE_CONTACTS[args.sample]
    if args.contact is not None:
        contact = load_contacts(args.contact, contact_id=args.contact_id)[0]
    rendered = render_for_contact(renderer, config, args.template, args.variant, contact, args.stage, args.step)
    on = args.send_date or datetime.now(UTC).date()
    plan = plan_send(contact.attributes.history, config.default_send_hour, contact, on)
    print(f"Send: {plan.describe()}", file=sys.stderr)  # metadata apart from the email on stdout
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in (("subject.txt", rendered.subject + "\n"), ("body.txt", rendered.text),
                           ("body.html", rendered.html)):
            (args.out / name).write_text(text, encoding="utf-8")
        print(f"wrote subject.txt, body.txt, body.html to {args.out}")
    else:
        print(f"Subject: {rendered.subject}\n\n{rendered.text}\n----- HTML -----\n{rendered.html}")
    return 0


def run_email_command(args: argparse.Namespace) -> int:
    """Run `email render|lint|preview`; exit 0, 1 (lint found problems) or 2 (bad input)."""
    try:
        renderer, config = _setup(args)
        if args.email_command == "render":
            return _render(args, renderer, config)
        if args.email_command == "lint":
            report = lint(renderer, config, args.segment or SEGMENTS, args.stage)
            for line in report.lines():
                print(line, file=sys.stdout if not report.problems else sys.stderr)
            return 1 if report.problems else 0
        from ..email.preview import serve_forever

        contacts = None
        if args.contact_id or args.sample:
            if args.campaign is None:
                raise InputError("--contact-id and --sample preview real contacts: name the campaign with --campaign")
            contacts = campaign_contacts(campaign_email(args.campaign)[1], args.contact_id or (), args.sample or 0)
        return serve_forever(renderer, config, args.host, args.port, contacts, args.send_date)
    except CrmActivationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
