"""The report page's layout in headless Chromium at a 1280-px window and a 390-px phone: measured, not eyeballed.

A campaign manager reads the report in a browser, so the checks run in one (Debian's `chromium`, installed by
scripts/install-system-deps; the tests fail, not skip, without it). The report itself has no script; the test
renders a copy with a probe script appended that measures the laid-out page (`getBoundingClientRect`) and
writes its findings into the DOM, which `--dump-dom` returns. No driver or DevTools client is needed. Headless
Chromium's window is at least 500 px wide, so the phone width is a 390-px `srcdoc` iframe (same origin: the
probe inside writes to the top document) in a wider window: inside it the viewport and media queries are 390 px.

Checked from the rendered DOM: the summary comes first (before every KPI section, at the top of the window);
in every chart no text box is clipped by its chart or overlaps another text, no off-scale arrow covers a text,
every value label starts with its sign (or is 0% / n/e), every forest label ends with its contact count; the
page does not scroll horizontally. Screenshots are saved next to each test's tmp dir for a human look.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path

import pytest

from crm_activation.campaign.loader import load_campaign
from crm_activation.measurement.commands import build_report, simulate_campaign
from crm_activation.state.store import StateStore

CHROMIUM = Path("/usr/bin/chromium")
#: Headless Chromium does not make a window narrower than this.
MIN_WINDOW = 500
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "campaign.yaml"
LONG_SEGMENT = "returning-enterprise-clients-with-three-or-more-past-contracts-in-emea"

PROBE = r"""
<pre id="layout-probe" hidden></pre>
<script>
(function () {
  const out = {width: window.innerWidth, scrollWidth: document.documentElement.scrollWidth, problems: [],
               texts: 0, labels: 0, values: 0, marks: 0, charts: 0};
  const h2 = document.querySelector("h2");
  out.firstHeading = h2 ? h2.textContent : null;
  const summary = document.getElementById("summary");
  out.summaryTop = summary ? summary.getBoundingClientRect().top : null;
  const kpis = [...document.querySelectorAll("section.kpi")].map(e => e.getBoundingClientRect().top);
  out.firstKpiTop = kpis.length ? Math.min(...kpis) : null;
  const overlap = (a, b) => Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
                            Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
  for (const svg of document.querySelectorAll("svg.chart, svg.legend")) {
    out.charts += 1;
    const name = svg.getAttribute("aria-label");
    const box = svg.getBoundingClientRect();
    if (box.left < -0.5 || box.right > window.innerWidth + 0.5) out.problems.push(`${name}: chart outside the window`);
    const texts = [...svg.querySelectorAll("text")].map(t => [t, t.getBoundingClientRect()]);
    const marks = [...svg.querySelectorAll("polygon.offscale")].map(m => m.getBoundingClientRect());
    out.texts += texts.length; out.marks += marks.length;
    texts.forEach(([t, r], i) => {
      const words = t.textContent;
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5)
        out.problems.push(`${name}: text "${words}" clipped by its chart`);
      for (const [u, s] of texts.slice(i + 1))
        if (overlap(r, s)) out.problems.push(`${name}: "${words}" overlaps "${u.textContent}"`);
      for (const m of marks)
        if (overlap(r, m)) out.problems.push(`${name}: off-scale arrow covers "${words}"`);
      if (t.classList.contains("value")) {
        out.values += 1;
        if (!/^([+\-\u2212]\d|0%$|n\/e$)/.test(words)) out.problems.push(`${name}: value "${words}" has no sign`);
      }
      if (t.classList.contains("label")) {
        out.labels += 1;
        if (!/\(\d[\d,]*\)$/.test(words)) out.problems.push(`${name}: label "${words}" lost its count`);
      }
    });
  }
  window.top.document.getElementById("layout-probe").textContent = JSON.stringify(out);
})();
</script>
"""


def measure(page: Path, work: Path, width: int, height: int = 2400) -> tuple[dict, Path]:
    """Render `page` with the probe at `width` px: the probe's findings and a screenshot (saved in `work`)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps (installs Debian's chromium package)")
    probed = work / f"{page.stem}-{width}.html"
    shot = work / f"{page.stem}-{width}px.png"
    content = page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>")
    if width < MIN_WINDOW:
        content = (
            '<!DOCTYPE html><html><body style="margin:0"><pre id="layout-probe" hidden></pre>'
            f'<iframe style="border:0;width:{width}px;height:{height}px" srcdoc="{html.escape(content)}"></iframe>'
            "</body></html>"
        )
        width = MIN_WINDOW
    probed.write_text(content, encoding="utf-8")
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={work / f'profile-{width}'}", f"--screenshot={shot}", f"--window-size={width},{height}",
         "--dump-dom", probed.resolve().as_uri()],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="layout-probe" hidden="">(.*?)</pre>', result.stdout, re.S)
    assert found and found.group(1), "the probe did not run: " + result.stdout[-500:]
    return json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")), shot


@pytest.fixture(scope="module")
def example_report(tmp_path_factory) -> Path:
    """The bundled example campaign, simulated on 6,000 contacts: small countries give off-scale intervals and
    negative estimates, its seven-platform treatment a long label; plus a segment with a very long name."""
    folder = tmp_path_factory.mktemp("layout")
    loaded = load_campaign(EXAMPLE)
    state = folder / "state.sqlite"
    simulate_campaign(loaded, 6000, state, folder / "conversions.csv", seed=5)
    store = StateStore(state)
    run = store.db.execute("SELECT run_id FROM runs").fetchone()[0]
    store.record_holdout(loaded.campaign.campaign, run, [
        (f"long{i}", ("test", "control")[i % 2], "US", LONG_SEGMENT, "email", "email", "awareness")
        for i in range(60)
    ])
    store.close()
    return build_report(loaded, folder / "out", folder / "conversions.csv", state).files["html"]


@pytest.mark.parametrize("width", [1280, 390])
def test_report_layout_in_chromium(example_report, tmp_path, width):
    found, shot = measure(example_report, tmp_path, width)
    assert found["width"] == width  # the window really is this wide
    assert found["problems"] == []
    assert found["scrollWidth"] <= width, "the page scrolls sideways"
    # The answer leads: the first heading is the summary, above every KPI section and inside the first screen.
    assert found["firstHeading"] == "Summary"
    assert found["summaryTop"] < found["firstKpiTop"] and found["summaryTop"] < 300
    # The checks had something to check: many charts, labels, signed values and at least one off-scale arrow.
    assert found["charts"] >= 15 and found["labels"] >= 30 and found["values"] >= 30 and found["marks"] >= 1
    assert shot.stat().st_size > 10_000


def test_report_leads_with_verdicts_and_shows_whole_long_labels(example_report):
    html = example_report.read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", " ", html)
    assert html.index('id="summary"') < html.index('class="kpi"') < html.index("Spend ranking")
    verdicts = re.findall(r'data-verdict="([^"]+)"', html)
    assert len(verdicts) == 3 and set(verdicts) <= {"raised", "lowered", "no detectable effect",
                                                     "too few contacts to conclude"}
    assert "per 1,000 spent" in text  # the example sets costs per platform: the advice is per dollar
    # Long labels are shortened in the name, never in the count.
    labels = re.findall(r'<text class="label"[^>]*>([^<]*)</text>', html)
    long = [label for label in labels if label.startswith(LONG_SEGMENT[:20])]
    assert long and all(re.search(r"… \(\d[\d,]*\)$", label) for label in long)
    seven = [label for label in labels if label.startswith("email+facebook+linkedin")]
    assert seven and all(re.search(r"\(\d[\d,]*\)$", label) for label in seven)


BROKEN = """<!DOCTYPE html><html><head><meta name="viewport" content="width=device-width"></head><body>
<h2>Details</h2>
<svg class="chart" width="300" height="60" aria-label="broken" role="img">
  <text class="label" x="2" y="20" text-anchor="end" font-size="11">a label clipped on the left (120)</text>
  <text class="value" x="250" y="40" font-size="11">37%</text>
  <polygon class="offscale" points="250,36 262,30 262,42"/>
  <text x="100" y="40" font-size="11">one</text><text x="104" y="40" font-size="11">two</text>
</svg>
<div style="width:1900px">too wide</div>
</body></html>"""


def test_the_layout_probe_can_fail(tmp_path):
    page = tmp_path / "broken.html"
    page.write_text(BROKEN, encoding="utf-8")
    found, _ = measure(page, tmp_path, 1280, 600)
    problems = "\n".join(found["problems"])
    assert "clipped by its chart" in problems and "overlaps" in problems
    assert "off-scale arrow covers" in problems and 'value "37%" has no sign' in problems
    assert found["scrollWidth"] > 1280 and found["firstHeading"] == "Details"
