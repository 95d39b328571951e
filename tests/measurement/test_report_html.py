"""The HTML report renders offline in headless Chromium (Debian's package) with no console errors.

Chromium is a system package: `make test` installs it (scripts/install-system-deps). Without it these tests
fail (they do not skip): a report nobody checked in a browser is not tested.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.measurement.commands import build_report, simulate_campaign
from crm_activation.state.store import StateStore

from .conftest import CAMPAIGN_ID, write_campaign

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = '<script>console.error("xss")</script>"quoted"'


def render(page: Path, work: Path) -> tuple[str, str, Path]:
    """Open a page in headless Chromium: the rendered DOM, Chromium's log, and a 1280x2000 screenshot."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps (installs Debian's chromium package)")
    shot = work / f"{page.stem}.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={work / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         "--enable-logging=stderr", "--v=0", "--dump-dom", page.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr, shot


def console_messages(log: str) -> list[str]:
    """Lines where the page wrote to the console or threw (Chromium logs them as INFO:CONSOLE)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    loaded = load_campaign(write_campaign(folder, "measurement:\n  kpis: [{name: account_created}, {name: hire}]\n"))
    simulate_campaign(loaded, 8000, folder / "state.sqlite", folder / "conversions.csv", seed=4)
    store = StateStore(folder / "state.sqlite")  # a segment name a CRM export could carry
    run = store.db.execute("SELECT run_id FROM runs").fetchone()[0]
    store.record_holdout(CAMPAIGN_ID, run, [(f"h{i}", ("test", "control")[i % 2], "US", HOSTILE, "email", "email",
                                             "awareness") for i in range(40)])
    store.close()
    built = build_report(loaded, folder / "out", folder / "conversions.csv", folder / "state.sqlite")
    return built.files["html"]


def test_report_renders_in_chromium_without_console_errors(report_page, tmp_path):
    dom, log, shot = render(report_page, tmp_path)
    assert console_messages(log) == []
    charts = re.findall(r'<svg class="chart"', dom)
    # Per KPI: cumulative and daily series, forests by segment, treatment and country (+ pairs when large).
    assert len(charts) >= 2 * 5
    assert dom.count('class="band always-valid"') >= 2 and dom.count('class="band fixed-horizon"') >= 2
    assert dom.count('class="estimate"') >= 2
    assert "Always-valid" in dom and "Fixed-horizon" in dom and "Spend ranking" in dom
    assert "&lt;script&gt;" in dom and '<script>console.error("xss")' not in dom
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    _, _, blank_shot = render(blank, tmp_path)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and (int.from_bytes(png[16:20]), int.from_bytes(png[20:24])) == (1280, 2000)
    assert len(png) > 10 * blank_shot.stat().st_size  # charts and tables drawn, not an empty page


def test_report_is_self_contained(report_page):
    html = report_page.read_text(encoding="utf-8")
    assert "<script" not in html.replace("&lt;script", "") and "<link" not in html and "<img" not in html
    external = re.findall(r'(?:src|href)="([^"#][^"]*)"', html) + re.findall(r"url\(", html)
    assert external == []
    assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", html) == []  # only the SVG namespace name


def test_the_console_check_can_fail(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text("<html><body><script>undefined_function()</script></body></html>", encoding="utf-8")
    _, log, _ = render(page, tmp_path)
    assert any("Uncaught ReferenceError" in line for line in console_messages(log))
