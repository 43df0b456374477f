"""The notebook's playground in a real browser (Debian's Chromium via Playwright, never a
browser download), framed by a host page on another origin as Jupyter frames it: Copy link
works in the frame (``allow="clipboard-write"``) and says so when the browser refuses; a page
whose cell's data were let go says that, and to re-run the cell."""
import http.server
import threading

import numpy as np
import pytest

from test_web_e2e import browser  # noqa: F401  (the fixture; skips without Chromium)

import gradfit  # noqa: E402
from gradfit.web.shared import MAX_SHARED  # noqa: E402

REFUSED = "the browser refused to copy the link here: "


@pytest.fixture(scope="module")
def host():
    """A host page server (the notebook's origin): ``host(html)`` -> its url."""
    pages = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

    def add(html: str) -> str:
        path = f"/{len(pages)}.html"
        pages[path] = f"<!doctype html><html><body>{html}</body></html>"
        return f"http://localhost:{srv.server_address[1]}{path}"
    yield add
    srv.shutdown()


def framed(browser, host_url, permissions=()):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    if permissions:
        ctx.grant_permissions(list(permissions))
    pg = ctx.new_page()
    pg.goto(host_url)
    frame = pg.wait_for_selector("iframe.gradfit-playground").content_frame()
    frame.wait_for_selector("body[data-ready='1']", timeout=30_000)
    return ctx, pg, frame


def test_copy_link_in_the_notebooks_frame_copies_the_link(browser, host):
    x = np.linspace(0, 1, 10)
    p = gradfit.playground(x, 5 * x + 3)
    ctx, pg, frame = framed(browser, host(p._repr_html_()), ["clipboard-read", "clipboard-write"])
    try:
        frame.click("#btn-link")
        href = frame.evaluate("() => location.href")
        reader = ctx.new_page()                       # the clipboard, read on the page's origin
        reader.goto(p.url.split("#")[0] + "static/style.css")
        copied = reader.evaluate("() => navigator.clipboard.readText()")
        assert copied == href and "data=shared%3A" in copied.replace(":", "%3A")
        assert REFUSED not in frame.text_content("#run-status")
    finally:
        ctx.close()


def test_copy_link_says_so_when_the_clipboard_is_refused(browser, host):
    x = np.linspace(0, 1, 10)
    p = gradfit.playground(x, 5 * x + 3)
    old_output = p._repr_html_().replace(' allow="clipboard-write"', "")   # (as before the fix)
    assert "allow=" not in old_output
    ctx, pg, frame = framed(browser, host(old_output))
    try:
        frame.click("#btn-link")
        frame.wait_for_function(f"() => document.getElementById('run-status').textContent"
                                f".startsWith({REFUSED!r})", timeout=10_000)
        said = frame.text_content("#run-status")
        assert said == REFUSED + frame.evaluate("() => location.href")
    finally:
        ctx.close()


def test_a_page_whose_data_were_let_go_says_to_rerun_the_cell(browser, host):
    x = np.linspace(0, 1, 10)
    first = gradfit.playground(x, 5 * x + 3)
    for i in range(MAX_SHARED):
        gradfit.playground(x, x + i)
    ctx, pg, frame = framed(browser, host(first._repr_html_()))
    try:
        frame.wait_for_function("() => document.getElementById('data-error').textContent !== ''")
        said = frame.text_content("#data-error")
        assert said == ("this cell's data are no longer held (the notebook's server keeps the "
                        f"last {MAX_SHARED} datasets shared with it): re-run the cell")
        hint = pg.text_content(".gradfit-playground-hint")
        assert "Re-run this cell" in hint
    finally:
        ctx.close()
