"""Save the playground's main states as PNGs under docs/ (Debian's Chromium via Playwright).

    .venv/bin/python docs/screenshots.py
"""
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

import uvicorn  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from gradfit.web.app import create_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TITLE = "#plot-data .gtitle"


def ready(pg, url):
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    pg.wait_for_function(f"() => /= \\d/.test(document.querySelector('{TITLE}')?.textContent)")
    pg.wait_for_function("() => document.querySelector('#plot-landscape .contour, #plot-landscape .heatmaplayer')")


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}/"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 820})
        ready(pg, base)
        pg.screenshot(path=HERE / "playground-start.png")                  # the lesson's guess
        pg.select_option("#spf", "20")
        pg.click("#btn-play")
        pg.wait_for_function("() => Number(document.getElementById('step').textContent) > 1500")
        pg.click("#btn-play")
        pg.wait_for_function("() => document.getElementById('run-status').textContent.startsWith('cancelled')")
        time.sleep(0.6)            # the landscape's last refresh is throttled
        pg.screenshot(path=HERE / "playground-run.png")                    # gradient descent ran
        ready(pg, base + "#data=step&model=relu:3&loss=mse&opt=adam&lr=0.05&spf=50")
        pg.click("#btn-play")
        pg.wait_for_function("() => Number(document.getElementById('step').textContent) > 1500")
        pg.click("#btn-play")
        pg.wait_for_function("() => document.getElementById('run-status').textContent.startsWith('cancelled')")
        time.sleep(0.6)
        pg.screenshot(path=HERE / "playground-relu.png")                   # ReLU units, thin
        pg.fill("#model", "a*x^^2 + b")
        pg.wait_for_function("() => document.getElementById('model-error').textContent.length > 0")
        pg.screenshot(path=HERE / "playground-error.png", clip={"x": 0, "y": 0, "width": 700, "height": 520})
        b.close()
    srv.should_exit = True


if __name__ == "__main__":
    main()
