"""`crm-activation email preview`: a local page with every template rendered for every preview contact.

Standard library `http.server` on loopback by default: the page is a tool for the person editing templates, not
a service. The contacts are the built-in samples, or real contacts of the campaign's source (`--campaign` with
`--contact-id` or `--sample N`; shown by contact id, never by address). Templates are re-rendered on every
request, and the page reloads itself when a file under the templates folder changes: a small inline script
(allowed by its hash in the Content-Security-Policy, nothing else may run) polls `/version`, a fingerprint of
the folder's files, once a second. Each email's HTML is shown in a sandboxed `<iframe srcdoc>` (no scripts, no
same-origin access) next to its subject and text part; `?view=phone` shows it 375 px wide, like a phone. A
render error is shown in place of that email rather than taking the page down, so one broken variant does not
hide the others. Each card shows when that contact's email would go out: the local hour and zone and the UTC
time on the send date. `/email/<n>.html` serves one email's HTML alone (what a mail client would get).
"""

from __future__ import annotations

import base64
import hashlib
import html
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..campaign.email_settings import EmailConfig
from ..sdk.contact import Contact
from .rendering import RenderedMessage, TemplateError, TemplateRenderer
from .samples import SAMPLE_CONTACTS, sample_context
from .send_time import plan_send

#: Reloads the page when `/version` (the templates' fingerprint) differs from the one it was rendered with.
_RELOAD = (
    "(function(){var v=document.body.getAttribute('data-version');setInterval(function(){"
    "fetch('/version',{cache:'no-store'}).then(function(r){return r.text()}).then(function(t){"
    "if(t&&t!==v){location.reload()}}).catch(function(){})},1000)})();"
)
_RELOAD_HASH = base64.b64encode(hashlib.sha256(_RELOAD.encode()).digest()).decode()
_CSP = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; "
        f"script-src 'sha256-{_RELOAD_HASH}'; connect-src 'self'")
PHONE_WIDTH = 375


@dataclass(frozen=True, slots=True)
class PreviewItem:
    """One template (and variant) rendered for one sample, or the error that prevented it."""

    template: str
    variant: str | None
    sample: str
    rendered: RenderedMessage | None
    error: str | None
    send: str = ""


def render_all(
    renderer: TemplateRenderer, config: EmailConfig, contacts: Mapping[str, Contact] | None = None,
    send_date: date | None = None,
) -> list[PreviewItem]:
    """Every template × variant × contact (default: the samples), in a stable order, with the send plan.

    `send_date`: the day whose send hours are shown (default: today, UTC); the UTC hour depends on it (DST).
    """
    on = send_date or datetime.now(UTC).date()
    items = []
    for template in renderer.templates():
        for variant in [None, *renderer.variants(template)]:
            for label, contact in (contacts or SAMPLE_CONTACTS).items():
                send = plan_send(contact.attributes.history, config.default_send_hour, contact, on).describe()
                try:
                    rendered = renderer.render_message(template, variant, sample_context(contact, config))
                    items.append(PreviewItem(template, variant, label, rendered, None, send))
                except TemplateError as error:
                    items.append(PreviewItem(template, variant, label, None, str(error), send))
    return items


def templates_version(renderer: TemplateRenderer) -> str:
    """A fingerprint of every file under the templates folder (name, size, modification time)."""
    digest = hashlib.sha256()
    for path in sorted(renderer.folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(renderer.folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def index_page(items: list[PreviewItem], phone: bool = False, version: str = "") -> str:
    """The listing: view switch, a table of contents, then one card per item; reloads when `version` changes."""
    e = html.escape
    toc = "".join(
        f'<li><a href="#m{i}">{e(it.template)} / {e(it.variant or "default")} / {e(it.sample)}</a>'
        f"{' <strong class=err>error</strong>' if it.error else ''}</li>"
        for i, it in enumerate(items)
    )
    cards = []
    for i, it in enumerate(items):
        head = (f'<h2 id="m{i}">{e(it.template)} <small>variant: {e(it.variant or "default")} · '
                f"contact: {e(it.sample)}</small></h2>"
                f'<p class="send">Send: {e(it.send)}</p>')
        if it.rendered is None:
            cards.append(f'<section class="card">{head}<pre class="err">{e(it.error or "")}</pre></section>')
            continue
        r = it.rendered
        cards.append(
            f'<section class="card">{head}<p class="subject">Subject: <b>{e(r.subject)}</b></p>'
            f'<div class="parts"><iframe sandbox title="HTML part" srcdoc="{e(r.html, quote=True)}"></iframe>'
            f'<pre class="text">{e(r.text)}</pre></div>'
            f'<p><a href="/email/{i}.html">open the HTML part alone</a></p></section>'
        )
    frame = f"width:{PHONE_WIDTH}px;height:740px" if phone else "width:620px;height:640px"
    views = ('<p class="views">View: <a href="/">desktop</a> · <b>phone</b></p>' if phone
             else '<p class="views">View: <b>desktop</b> · <a href="/?view=phone">phone</a></p>')
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1"><title>Email preview</title><style>'
        "body{font-family:system-ui,sans-serif;margin:0;padding:16px 24px;background:#e5e7eb;color:#111}"
        ".card{background:#fff;border-radius:8px;padding:12px 16px;margin:16px 0}"
        f".parts{{display:flex;gap:16px;flex-wrap:wrap}}iframe{{{frame};border:1px solid #ccc}}"
        "pre.text{flex:1;min-width:280px;white-space:pre-wrap;overflow-wrap:anywhere;background:#f9fafb;padding:8px;margin:0}"
        ".err{color:#b91c1c}h2 small{font-weight:normal;color:#555;font-size:14px}.send{color:#555;margin:0 0 8px}"
        f'</style></head><body data-version="{e(version, quote=True)}" data-view="{"phone" if phone else "desktop"}">'
        f"<h1>Email preview: {len(items)} renders</h1>{views}<ul>{toc}</ul>{''.join(cards)}"
        f"<script>{_RELOAD}</script></body></html>"
    )


class PreviewServer:
    """The preview HTTP server in a background thread (`url`, `stop()`); tests and the CLI both use it."""

    def __init__(
        self, renderer: TemplateRenderer, config: EmailConfig, host: str = "127.0.0.1", port: int = 0,
        contacts: Mapping[str, Contact] | None = None, today: Callable[[], date] | None = None,
    ):
        """Bind (port 0: any free port) and start serving.

        Args:
            renderer: the templates (build it with `auto_reload=True` so edits show on reload).
            config: the email section (template_vars, coupon, locale, default send hour).
            host: bind address; loopback by default, since the page shows rendered contact data.
            port: 0 for any free port.
            contacts: label → contact to preview (default: the built-in samples).
            today: the send date whose hours are shown (default: today, UTC); injectable for tests.
        """
        self.renderer = renderer
        self.config = config
        self.contacts = contacts
        self.today = today or (lambda: datetime.now(UTC).date())
        preview = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                preview.handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the page is the output

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="email-preview", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """Where the page is served."""
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        """Serve `/` (the listing; `?view=phone`), `/version` and `/email/<n>.html` (one HTML part)."""
        path, _, query = request.path.partition("?")
        if path == "/version":
            self._send(request, 200, "text/plain; charset=utf-8", templates_version(self.renderer))
            return
        items = render_all(self.renderer, self.config, self.contacts, self.today())
        body: str | None = None
        if path == "/":
            body = index_page(items, phone="view=phone" in query.split("&"), version=templates_version(self.renderer))
        elif path.startswith("/email/") and path.endswith(".html") and path[7:-5].isdigit():
            index = int(path[7:-5])
            if index < len(items) and items[index].rendered is not None:
                body = items[index].rendered.html  # type: ignore[union-attr]
        if body is None:
            self._send(request, 404, "text/plain", "not found")
        else:
            self._send(request, 200, "text/html; charset=utf-8", body)

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, content_type: str, body: str) -> None:
        data = body.encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Security-Policy", _CSP)
        request.send_header("Cache-Control", "no-store")  # real contacts' emails stay out of caches
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def stop(self) -> None:
        """Shut down and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def serve_forever(
    renderer: TemplateRenderer, config: EmailConfig, host: str, port: int,
    contacts: Mapping[str, Contact] | None = None, send_date: date | None = None,
) -> int:
    """Serve until Ctrl-C or SIGTERM (the CLI's `email preview`)."""
    server = PreviewServer(renderer, config, host, port, contacts, (lambda: send_date) if send_date else None)
    print(f"email preview at {server.url} (Ctrl-C to stop)", file=sys.stderr)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
