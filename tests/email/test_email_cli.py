"""Issue 13 through the real console script: `crm-activation email lint | render | preview` in a subprocess.

Lint catches a block the layout does not define and every undefined variable of a file (with the closest
name); render picks one contact of a file whose other rows are broken and shows the planned send time; preview
serves real contacts of a campaign's source, a phone view, the local/UTC send time and reloads on change.
"""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_activation.email.rendering import packaged_templates

from .conftest import free_port

CLI = Path(sys.executable).with_name("crm-activation")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CLI), "email", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(packaged_templates(), folder)
    return folder


# -- lint ----------------------------------------------------------------------------------------------------
def test_lint_catches_a_block_the_layout_does_not_define(templates, tmp_path):
    html = templates / "we-miss-you" / "body.html.j2"
    html.write_text(html.read_text(encoding="utf-8").replace("{% block content %}", "{% block contnet %}"),
                    encoding="utf-8")
    result = cli("lint", "--templates", str(templates), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("we-miss-you/body.html.j2:4: block 'contnet' is not defined by _layout/base.html.j2 "
            "(which has: content, cta, preheader, title), so its content is never shown; did you mean 'content'?"
            ) in result.stderr
    assert "1 problem(s) in 1440 renders" in result.stderr  # one file, reported once for its three variants


def test_lint_reports_every_undefined_variable_of_a_file_with_the_closest_name(templates, tmp_path):
    (templates / "coupon-offer" / "subject.txt.j2").write_text(
        "{{ first_nam }}: {{ coupon.amout }} off\n{% if histroy %}{{ brnad }}{% endif %}\n", encoding="utf-8")
    result = cli("lint", "--templates", str(templates), cwd=tmp_path)
    assert result.returncode == 1
    err = result.stderr
    assert "coupon-offer/subject.txt.j2:1: undefined variable 'first_nam' ('first_nam' is undefined); " \
           "did you mean 'first_name'?" in err
    assert "coupon-offer/subject.txt.j2:1: undefined variable 'amout'" in err and "did you mean 'amount'?" in err
    assert "coupon-offer/subject.txt.j2:2: undefined variable 'histroy'" in err and "did you mean 'history'?" in err
    assert "'brnad'" not in err  # inside a false `if`: never evaluated, so not a problem of this render
    assert "3 problem(s) in 1440 renders" in err


def test_lint_reports_an_undefined_value_a_filter_trips_on(templates, tmp_path):
    (templates / "coupon-offer" / "subject.txt.j2").write_text(
        "{{ frist_name }} {{ history.hirez|pluralize('hire') }} {{ (coupon.amount * 2)|money }}\n",
        encoding="utf-8")
    config = tmp_path / "email.yaml"
    config.write_text("email:\n  from_address: a@mail.example.com\n  bounce_address: b@mail.example.com\n"
                      "  unsubscribe_url: https://mail.example.com/u\n  unsubscribe_mailto: u@mail.example.com\n"
                      "  sequences: {conversion: [{template: coupon-offer}]}\n", encoding="utf-8")
    result = cli("lint", "--templates", str(templates), "--config", str(config), "--stage", "conversion",
                 cwd=tmp_path)
    assert result.returncode == 1
    assert "coupon-offer/subject.txt.j2:1: undefined variable 'frist_name'" in result.stderr
    assert "did you mean 'first_name'?" in result.stderr
    assert "undefined variable 'amount'" in result.stderr  # no coupon configured: `coupon` is None


def test_render_suggests_the_closest_name_too(templates, tmp_path):
    (templates / "coupon-offer" / "body.txt.j2").write_text("{{ unsubscribe_ulr }}\n", encoding="utf-8")
    result = cli("render", "coupon-offer", "--templates", str(templates), cwd=tmp_path)
    assert result.returncode == 2
    assert "coupon-offer/body.txt.j2:1: undefined variable 'unsubscribe_ulr'" in result.stderr
    assert "did you mean 'unsubscribe_url'?" in result.stderr


# -- render --------------------------------------------------------------------------------------------------
def test_render_picks_its_contact_although_other_rows_are_broken(tmp_path):
    (tmp_path / "contacts.csv").write_text(
        "contact_id,email,first_name,country,funnel_stage,timezone\n"
        ",nobody@example.com,Nobody,US,awareness,\n"          # no id: the whole file used to be refused
        "T1,t@example.jp,Hana,JP,conversion,Asia/Tokyo\n"
        "B2,b@example.com,Bad,US,awareness,\n",
        encoding="utf-8",
    )
    (tmp_path / "contacts.jsonl").write_text(
        '{"contact_id": "J0", "email": "j0@example.com"\n'  # truncated JSON
        '{"contact_id": "J1", "email": "j1@example.com", "first_name": "kim", "funnel_stage": "conversion"}\n',
        encoding="utf-8",
    )
    result = cli("render", "coupon-offer", "--contact", "contacts.csv", "--contact-id", "T1",
                 "--send-date", "2026-12-01", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Subject: Hana, ")
    assert "Send: 10:00 Asia/Tokyo (timezone) = 01:00 UTC on 2026-12-01 (default)" in result.stderr
    jsonl = cli("render", "coupon-offer", "--contact", "contacts.jsonl", "--contact-id", "J1", cwd=tmp_path)
    assert jsonl.returncode == 0 and "Hi Kim," in jsonl.stdout, jsonl.stderr
    bad = cli("render", "coupon-offer", "--contact", "contacts.jsonl", "--contact-id", "J0", cwd=tmp_path)
    assert bad.returncode == 2 and "no contact with id 'J0'" in bad.stderr
    missing = cli("render", "coupon-offer", "--contact", "contacts.csv", "--contact-id", "nope", cwd=tmp_path)
    assert missing.returncode == 2 and "no contact with id 'nope'" in missing.stderr


def test_render_send_time_follows_daylight_saving_and_ignores_a_bad_timezone(tmp_path):
    (tmp_path / "c.csv").write_text(
        "contact_id,email,first_name,country,funnel_stage,timezone,history_best_hour\n"
        "N1,n@example.com,Ann,US,awareness,,\n"
        "N2,m@example.com,Bo,US,awareness,Mars/Olympus,\n"
        "H1,h@example.com,Cy,US,awareness,,7\n",
        encoding="utf-8",
    )

    def send(contact: str, day: str) -> str:
        result = cli("render", "we-miss-you", "--contact", "c.csv", "--contact-id", contact, "--send-date", day,
                     cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return next(line for line in result.stderr.splitlines() if line.startswith("Send: "))

    assert send("N1", "2026-01-15") == "Send: 10:00 America/New_York (country US) = 15:00 UTC on 2026-01-15 (default)"
    assert send("N1", "2026-07-15") == "Send: 10:00 America/New_York (country US) = 14:00 UTC on 2026-07-15 (default)"
    assert send("N2", "2026-07-15") == ("Send: 10:00 America/New_York (timezone 'Mars/Olympus' is not an IANA zone; "
                                        "country US) = 14:00 UTC on 2026-07-15 (default)")
    assert send("H1", "2026-07-15") == "Send: 07:00 UTC on 2026-07-15 (best_hour, a UTC hour from history)"


# -- preview -------------------------------------------------------------------------------------------------
CAMPAIGN = """\
campaign: preview-test
audience:
  source: {type: csv, path: contacts.csv}
holdout: {fraction: 0.2}
channels:
  default: [email]
email:
  from_address: "Acme <hello@mail.example.com>"
  bounce_address: bounces@mail.example.com
  unsubscribe_url: https://mail.example.com/unsubscribe
  unsubscribe_mailto: unsubscribe@mail.example.com
  templates: templates
  default_send_hour: 9
  coupon: {prefix: PV100, amount: 100, currency: USD, valid_days: 30}
  sequences:
    awareness:
      - template: we-miss-you
platforms: {}
"""


@pytest.fixture
def campaign(tmp_path: Path, templates: Path) -> Path:
    (tmp_path / "campaign.yaml").write_text(CAMPAIGN, encoding="utf-8")
    rows = ["contact_id,email,first_name,country,funnel_stage,timezone",
            ",broken@example.com,Broken,US,awareness,",  # a bad row elsewhere in the source
            "P1,p1@example.com,Paula,US,awareness,",
            "P2,p2@example.jp,Hiro,JP,awareness,",
            "P3,p3@example.de,Jonas,DE,awareness,Europe/Berlin"]
    rows += [f"S{i:02d},s{i}@example.com,Sam,GB,awareness," for i in range(20)]
    (tmp_path / "contacts.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path / "campaign.yaml"


@pytest.fixture
def start_preview(tmp_path: Path) -> Iterator:
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> str:
        port = free_port()
        proc = subprocess.Popen([str(CLI), "email", "preview", "--port", str(port), *args], cwd=tmp_path,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # printed once the socket listens
        assert f"email preview at http://127.0.0.1:{port}/" in line, line + proc.stderr.read()
        return f"http://127.0.0.1:{port}/"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=30)


def fetch(url: str) -> tuple[str, dict[str, str]]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode("utf-8"), dict(response.headers)


def test_preview_shows_chosen_contacts_of_the_campaign_with_their_send_time(campaign, start_preview):
    url = start_preview("--campaign", str(campaign), "--contact-id", "P1", "--contact-id", "P2",
                        "--contact-id", "P3", "--send-date", "2026-07-15")
    page, _ = fetch(url)
    templates = 4 + 2  # four templates, two variants of we-miss-you
    assert f"Email preview: {templates * 3} renders" in page
    assert page.count("contact: contact P1") == templates and "contact: contact P3" in page
    assert "Hi Paula," in page and "Hi Hiro," in page and "Hi Jonas," in page
    assert "p1@example.com" not in page  # addresses are not shown
    assert "Send: 09:00 America/New_York (country US) = 13:00 UTC on 2026-07-15 (default)" in page
    assert "Send: 09:00 Asia/Tokyo (country JP) = 00:00 UTC on 2026-07-15 (default)" in page
    assert "Send: 09:00 Europe/Berlin (timezone) = 07:00 UTC on 2026-07-15 (default)" in page
    assert "class=\"err\"" not in page


def test_preview_samples_n_contacts_and_refuses_unknown_ids(campaign, start_preview, tmp_path):
    page, _ = fetch(start_preview("--campaign", str(campaign), "--sample", "2"))
    labels = set(re.findall(r"contact: (contact \w+)</small>", page))
    assert len(labels) == 2 and "Email preview: 12 renders" in page
    again, _ = fetch(start_preview("--campaign", str(campaign), "--sample", "2"))
    assert set(re.findall(r"contact: (contact \w+)</small>", again)) == labels  # the same two every time
    result = subprocess.run([str(CLI), "email", "preview", "--campaign", str(campaign), "--contact-id", "ZZ"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "no contact with id 'ZZ'" in result.stderr


def test_preview_phone_view(start_preview):
    url = start_preview()
    desktop, _ = fetch(url)
    phone, _ = fetch(url + "?view=phone")
    assert 'data-view="desktop"' in desktop and "iframe{width:620px" in desktop and 'href="/?view=phone"' in desktop
    assert 'data-view="phone"' in phone and "iframe{width:375px" in phone and "<b>phone</b>" in phone
    assert phone.count("<iframe sandbox") == desktop.count("<iframe sandbox") > 0


def test_preview_reloads_when_a_template_changes(templates, start_preview):
    url = start_preview("--templates", str(templates))
    page, headers = fetch(url)
    version, _ = fetch(url + "version")
    assert f'data-version="{version}"' in page
    # the reload script is the only script, and the page's CSP allows exactly it
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 1 and "fetch('/version'" in scripts[0] and "location.reload()" in scripts[0]
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in headers["Content-Security-Policy"]
    assert "connect-src 'self'" in headers["Content-Security-Policy"]
    assert fetch(url + "version")[0] == version  # nothing changed: no reload
    subject = templates / "success-stories" / "subject.txt.j2"
    subject.write_text("Brand new subject line for {{ first_name|first_name }}\n", encoding="utf-8")
    deadline = time.monotonic() + 30  # mtime granularity: wait until the fingerprint moves (it must)
    while fetch(url + "version")[0] == version and time.monotonic() < deadline:
        subject.write_text(subject.read_text(encoding="utf-8") + " ", encoding="utf-8")
    assert fetch(url + "version")[0] != version
    assert "Brand new subject line for Maria" in fetch(url)[0]
