"""`email preview` in headless Chromium (Debian's package): the page lists every render and draws something.

Chromium is a system package installed by `make test` (scripts/install-system-deps). Without it this test fails
rather than skips: a preview nobody opened in a browser is not tested.
"""

from __future__ import annotations

import struct
import subprocess
import urllib.request
import zlib
from pathlib import Path

import pytest

from crm_activation.email.preview import PreviewServer
from crm_activation.email.rendering import TemplateRenderer
from crm_activation.email.samples import SAMPLE_CONTACTS, sample_config

CHROMIUM = Path("/usr/bin/chromium")


def chromium(url: str, work: Path) -> tuple[str, Path]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/install-system-deps (installs Debian's chromium package)")
    shot = work / "preview.png"
    result = subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={work / 'profile'}", f"--screenshot={shot}", "--window-size=1280,1600", "--dump-dom", url],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, shot


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG into rows of pixel bytes (enough of the format for a screenshot)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        length = struct.unpack(">I", data[pos : pos + 4])[0]
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        header = body if kind == b"IHDR" else header
        idat += body if kind == b"IDAT" else b""
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6), (depth, color)
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i : i + 3]) for r in rows[::8] for i in range(0, len(r), bpp * 8)]


@pytest.fixture
def preview():
    server = PreviewServer(TemplateRenderer(auto_reload=True), sample_config())
    yield server
    server.stop()


def test_preview_page_renders_every_template_in_chromium(preview, tmp_path):
    dom, shot = chromium(preview.url, tmp_path)
    renderer = TemplateRenderer()
    expected = sum(1 + len(renderer.variants(t)) for t in renderer.templates()) * len(SAMPLE_CONTACTS)
    assert f"Email preview: {expected} renders" in dom
    assert dom.count('<section class="card">') == expected and "class=\"err\"" not in dom
    for template in renderer.templates():
        assert '<h2 id="m' in dom and f"{template} <small>" in dom
    assert dom.count("<iframe sandbox") == expected
    # the hostile sample, escaped twice (in the email, then in srcdoc): never markup in the page
    assert "&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;" in dom
    assert "<script>alert(1)" not in dom
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    colors = set(pixels)
    dark = sum(1 for p in pixels if sum(p) < 300)
    green = sum(1 for p in pixels if p[1] > 120 and p[0] < 80 and p[2] < 80)  # the brand colour: emails drew
    assert len(colors) > 20 and dark > 100 and green > 20, (len(colors), dark, green)


def test_single_email_route_and_security_headers(preview):
    with urllib.request.urlopen(preview.url + "email/0.html", timeout=10) as response:
        body = response.read().decode("utf-8")
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert body.startswith("<!DOCTYPE html>") and "Unsubscribe</a>" in body
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(preview.url + "email/9999.html", timeout=10)
    assert caught.value.code == 404


def test_a_broken_template_shows_its_error_in_place(tmp_path):
    folder = tmp_path / "t" / "x"
    folder.mkdir(parents=True)
    (folder / "subject.txt.j2").write_text("Hi {{ nope }}", encoding="utf-8")
    (folder / "body.txt.j2").write_text("t {{ unsubscribe_url }}", encoding="utf-8")
    (folder / "body.html.j2").write_text("<p>{{ unsubscribe_url }}</p>", encoding="utf-8")
    server = PreviewServer(TemplateRenderer(tmp_path / "t"), sample_config())
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            page = response.read().decode("utf-8")
    finally:
        server.stop()
    error = '<pre class="err">x/subject.txt.j2:1: undefined variable &#x27;nope&#x27;'
    assert page.count(error) == len(SAMPLE_CONTACTS)
