"""`crm-activation email preview`: a local page with every template rendered for every sample contact.

Standard library `http.server` on loopback by default: the page is a tool for the person editing templates, not
a service. Templates are re-rendered on every request (edit, save, reload). Each email's HTML is shown in a
sandboxed `<iframe srcdoc>` (no scripts, no same-origin access) next to its subject and text part; a render
error is shown in place of that email rather than taking the page down, so one broken variant does not hide
the others. `/email/<n>.html` serves one email's HTML alone (what a mail client would get).
"""

from __future__ import annotations

import html
import signal
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..campaign.email_settings import EmailConfig
from .rendering import RenderedMessage, TemplateError, TemplateRenderer
from .samples import SAMPLE_CONTACTS, sample_context

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'"


@dataclass(frozen=True, slots=True)
class PreviewItem:
    """One template (and variant) rendered for one sample, or the error that prevented it."""

    template: str
    variant: str | None
    sample: str
    rendered: RenderedMessage | None
    error: str | None


def render_all(renderer: TemplateRenderer, config: EmailConfig) -> list[PreviewItem]:
    """Every template × variant × sample contact, in a stable order."""
    items = []
    for template in renderer.templates():
        for variant in [None, *renderer.variants(template)]:
            for sample, contact in SAMPLE_CONTACTS.items():
                try:
                    rendered = renderer.render_message(template, variant, sample_context(contact, config))
                    items.append(PreviewItem(template, variant, sample, rendered, None))
                except TemplateError as error:
                    items.append(PreviewItem(template, variant, sample, None, str(error)))
    return items


def index_page(items: list[PreviewItem]) -> str:
    """The listing: a table of contents, then one card per item."""
    e = html.escape
    toc = "".join(
        f'<li><a href="#m{i}">{e(it.template)} / {e(it.variant or "default")} / {e(it.sample)}</a>'
        f"{' <strong class=err>error</strong>' if it.error else ''}</li>"
        for i, it in enumerate(items)
    )
    cards = []
    for i, it in enumerate(items):
        head = (f'<h2 id="m{i}">{e(it.template)} <small>variant: {e(it.variant or "default")} · '
                f"contact: {e(it.sample)}</small></h2>")
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
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Email preview</title><style>"
        "body{font-family:system-ui,sans-serif;margin:0;padding:16px 24px;background:#e5e7eb;color:#111}"
        ".card{background:#fff;border-radius:8px;padding:12px 16px;margin:16px 0}"
        ".parts{display:flex;gap:16px;flex-wrap:wrap}iframe{width:620px;height:640px;border:1px solid #ccc}"
        "pre.text{flex:1;min-width:280px;white-space:pre-wrap;overflow-wrap:anywhere;background:#f9fafb;padding:8px;margin:0}"
        ".err{color:#b91c1c}h2 small{font-weight:normal;color:#555;font-size:14px}"
        f"</style></head><body><h1>Email preview: {len(items)} renders</h1><ul>{toc}</ul>{''.join(cards)}"
        "</body></html>"
    )


class PreviewServer:
    """The preview HTTP server in a background thread (`url`, `stop()`); tests and the CLI both use it."""

    def __init__(self, renderer: TemplateRenderer, config: EmailConfig, host: str = "127.0.0.1", port: int = 0):
        """Bind (port 0: any free port) and start serving."""
        self.renderer = renderer
        self.config = config
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
        """Serve `/` (the listing) and `/email/<n>.html` (one HTML part)."""
        items = render_all(self.renderer, self.config)
        path = request.path.split("?")[0]
        body: str | None = None
        if path == "/":
            body = index_page(items)
        elif path.startswith("/email/") and path.endswith(".html") and path[7:-5].isdigit():
            index = int(path[7:-5])
            if index < len(items) and items[index].rendered is not None:
                body = items[index].rendered.html  # type: ignore[union-attr]
        status = 200 if body is not None else 404
        data = (body if body is not None else "not found").encode("utf-8")
        request.send_response(status)
        request.send_header("Content-Type", "text/html; charset=utf-8" if body is not None else "text/plain")
        request.send_header("Content-Security-Policy", _CSP)
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        request.wfile.write(data)

    def stop(self) -> None:
        """Shut down and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def serve_forever(renderer: TemplateRenderer, config: EmailConfig, host: str, port: int) -> int:
    """Serve until Ctrl-C or SIGTERM (the CLI's `email preview`)."""
    server = PreviewServer(renderer, config, host, port)
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
