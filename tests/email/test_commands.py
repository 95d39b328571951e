"""`email render | lint` for email teams, through the argparse commands the CLI will mount."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from crm_activation.cli.email import add_email_commands
from crm_activation.email.commands import lint
from crm_activation.email.rendering import TemplateRenderer, packaged_templates
from crm_activation.email.samples import sample_config

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="crm-activation")
    add_email_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_lint_passes_on_the_packaged_templates(capsys):
    assert run(["email", "lint"]) == 0
    out = capsys.readouterr().out
    assert "0 problem(s) in 1440 renders" in out  # 6 template/variant pairs × 5 samples × 4 × 3 × 4


def test_lint_reports_every_problem_at_once(tmp_path, capsys):
    folder = tmp_path / "templates"
    shutil.copytree(packaged_templates(), folder)
    (folder / "we-miss-you" / "warm" / "subject.txt.j2").write_text("{{ first_nam }}, hi\n", encoding="utf-8")
    html = folder / "success-stories" / "body.html.j2"
    html.write_text(html.read_text(encoding="utf-8").replace("{{ first_name|first_name }}", "{{ first_name|safe }}"),
                    encoding="utf-8")
    text = folder / "coupon-reminder" / "body.txt.j2"
    text.write_text(text.read_text(encoding="utf-8").replace('{% include "_layout/footer.txt.j2" %}', ""),
                    encoding="utf-8")
    (folder / "coupon-offer" / "body.txt.j2").write_text("{% if %}\n", encoding="utf-8")
    assert run(["email", "lint", "--templates", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "we-miss-you/warm/subject.txt.j2:1: undefined variable 'first_nam'" in err
    assert "success-stories/-: contact data reaches the HTML unescaped" in err
    assert "coupon-reminder/-: the text part has no visible unsubscribe link" in err
    assert "coupon-offer/body.txt.j2:1: syntax error" in err
    assert "success-stories/-: the HTML loads scripts" in err  # the hostile sample's <script> got through
    assert "5 problem(s) in 1440 renders" in err


def test_lint_checks_the_config_against_the_templates(tmp_path):
    from crm_activation.campaign.email_settings import StepConfig

    config = sample_config().model_copy(update={"sequences": {"awareness": (StepConfig(template="typo"),)}})
    report = lint(TemplateRenderer(), config, segments=["s"], stages=["awareness"], lifecycle=["lapsing"])
    assert any("template 'typo' not found" in line for line in report.lines())


def test_render_one_contact_from_csv_to_stdout(tmp_path, capsys):
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "contact_id,email,first_name,country,funnel_stage,preferred_categories,history_last_project,history_hires\n"
        "C1,a@example.com,zoe,GB,consideration,design|video,brand film,3\n"
        "C2,b@example.com,Li,US,awareness,,,\n",
        encoding="utf-8",
    )
    assert run(["email", "render", "success-stories", "--contact", str(contacts), "--contact-id", "C1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Subject: Ready for your next brand film project?")
    assert "Hi Zoe," in out and "you have made 3 hires with us" in out and "----- HTML -----" in out


def test_render_from_json_to_files(tmp_path, capsys):
    contact = tmp_path / "contact.json"
    contact.write_text(json.dumps({"contact_id": "J1", "email": "j@example.de", "first_name": "Jonas", "country": "DE",
                                   "funnel_stage": "conversion"}), encoding="utf-8")
    assert run(["email", "render", "coupon-offer", "--contact", str(contact), "--out", str(tmp_path / "out")]) == 0
    subject = (tmp_path / "out" / "subject.txt").read_text(encoding="utf-8")
    assert subject == "Jonas, 100\u00a0$ off your next hire is yours\n"  # German number style
    assert "WB100-" in (tmp_path / "out" / "body.txt").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "body.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_render_errors_exit_2_with_the_location(tmp_path, capsys):
    folder = tmp_path / "t" / "x"
    folder.mkdir(parents=True)
    for part in ("subject.txt.j2", "body.txt.j2"):
        (folder / part).write_text("ok", encoding="utf-8")
    (folder / "body.html.j2").write_text("<p>\n{{ coupon.cod }}</p>", encoding="utf-8")
    assert run(["email", "render", "x", "--templates", str(tmp_path / "t")]) == 2
    assert "error: x/body.html.j2:2: undefined variable 'cod'" in capsys.readouterr().err


def test_config_file_errors_name_the_field(tmp_path, capsys):
    config = tmp_path / "email.yaml"
    config.write_text("email:\n  from_address: nobody\n", encoding="utf-8")
    assert run(["email", "lint", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "email.yaml" in err and "from_address" in err and "bounce_address" in err


@pytest.mark.parametrize("name", ["money", "date", "first_name", "join_categories", "pluralize", "track", "one_line"])
def test_every_filter_is_documented(name):
    docs = (ROOT / "docs" / "email-templates.md").read_text(encoding="utf-8")
    assert f"`{name}" in docs
