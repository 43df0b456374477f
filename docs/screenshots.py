"""Save the playground's main states as PNGs under docs/ (Debian's Chromium via Playwright).

    .venv/bin/python docs/screenshots.py
"""
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

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
    paused = "() => document.getElementById('run-status').textContent.startsWith('paused')"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        pg = b.new_page(viewport={"width": 1400, "height": 900})
        ready(pg, base)
        pg.screenshot(path=HERE / "playground-start.png")                  # the lesson's guess
        pg.select_option("#spf", "20")
        pg.click("#btn-play")
        pg.wait_for_function("() => Number(document.getElementById('step').textContent) > 1500", timeout=60_000)
        pg.click("#btn-play")
        pg.wait_for_function(paused)
        time.sleep(0.8)            # the landscape's last refresh is throttled
        pg.screenshot(path=HERE / "playground-run.png")                    # gradient descent ran
        ready(pg, base + "#data=step&model=relu%3A3&optimizer=adam&lr=0.05&spf=50&steps=2000")
        pg.click("#btn-play")
        pg.wait_for_function("() => Number(document.getElementById('step').textContent) > 1500", timeout=60_000)
        pg.click("#btn-play")
        pg.wait_for_function(paused)
        time.sleep(0.8)
        pg.screenshot(path=HERE / "playground-relu.png")                   # ReLU units, thin
        # own data: t, signal, err; the decay fitted with sigma, standard errors and the band
        rng = np.random.default_rng(3)
        t = np.linspace(0, 5, 24)
        err = 0.05 + 0.1 * rng.random(24)
        sig = 3 * np.exp(-0.8 * t) + 0.5 + err * rng.standard_normal(24)
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "decay.csv"
            f.write_text("t,signal,err\n" + "".join(f"{a:.4g},{b:.4g},{c:.3g}\n" for a, b, c in zip(t, sig, err)))
            ready(pg, base)
            pg.set_input_files("#csv", str(f))
            pg.wait_for_function("() => document.getElementById('csv-y').value === 'signal'")
        pg.fill("#model", "A*exp(-k*t)+C")
        pg.wait_for_function("() => document.querySelectorAll('#sliders input').length === 3")
        pg.select_option("#loss", "mse")
        pg.wait_for_function("() => document.querySelectorAll('#uncertainty tr').length === 4")
        time.sleep(0.8)
        pg.screenshot(path=HERE / "playground-own-data.png")
        # overfitting: a network on 14 of 20 noisy points, the other 6 held out
        ready(pg, base + "#model=mlp%3A16%2C16&optimizer=adam&lr=0.02&steps=2000&test=0.3&split=2&spf=100")
        pg.click("#btn-play")
        pg.wait_for_function("() => document.getElementById('run-status').textContent.startsWith('max_steps')",
                             timeout=90_000)
        time.sleep(0.8)
        pg.screenshot(path=HERE / "playground-overfit.png")
        phone = b.new_page(viewport={"width": 390, "height": 844})
        ready(phone, base)
        phone.screenshot(path=HERE / "playground-phone.png", full_page=True)
        ready(pg, base)
        pg.fill("#model", "a*x^^2 + b")
        pg.wait_for_function("() => document.getElementById('model-error').textContent.length > 0")
        pg.screenshot(path=HERE / "playground-error.png", clip={"x": 0, "y": 0, "width": 700, "height": 560})
        b.close()
    srv.should_exit = True


if __name__ == "__main__":
    main()
