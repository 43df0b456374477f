"""The playground's speed, measured from the browser (Debian's Chromium via Playwright).

1. Slider drag -> new curve and loss: a slider is moved (an ``input`` event) and the time
   until the data plot's title shows the new loss is taken with ``performance.now()``; p50,
   p95 and max over ``--drags`` moves (target p95 < 100 ms), for ``a`` (an axis of the
   landscape), ``c`` (held in it) and ``a`` let go after each move and left to rest
   180-420 ms (the landscape is redrawn when a slider is let go, and may meet the next
   move). Each is followed by where the time goes:
   the ``/api/eval`` request's time in the browser and the server's part of it (its
   ``Server-Timing`` header: waiting for a worker, computing).
2. Pause: at the largest steps per frame, the time from a click on pause until the page says
   paused (the run answers through ``/api/play``'s flow control); p50/p95 over ``--pauses``
   (target < 100 ms).
3. Streaming: a run of the lesson's problem (gd, mae) over the run protocol (``/api/play``,
   each frame acknowledged on arrival), counting the steps received per second in the
   browser (target >= 2,000 steps/s), paced at 100 and 1,000 steps a frame, and unpaced.

    .venv/bin/python benchmarks/bench_web.py [--drags 100] [--pauses 10] [--steps 20000]
    .venv/bin/python benchmarks/bench_web.py --against 5ab716a [--rounds 3]   # old page vs this
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import uvicorn  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from gradfit.web.app import create_app  # noqa: E402
from gradfit.web.limits import prepare_process  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

DRAG_JS = """async ([name, n, rest]) => {
  const s = document.getElementById('slider-' + name), title = () => document.querySelector('#plot-data .gtitle').textContent;
  const lo = Number(s.min) / 4, hi = Number(s.max) / 4, out = [];
  performance.clearResourceTimings();
  for (let i = 0; i < n; i++) {
    const before = title();
    const t0 = performance.now();
    s.value = String(lo + (hi - lo) * ((i * 37) % n) / n);
    s.dispatchEvent(new Event('input', {bubbles: true}));
    while (title() === before) await new Promise(r => requestAnimationFrame(r));
    out.push(performance.now() - t0);
    if (rest) {           // let go (the landscape is redrawn now), then rest before the next move
      s.dispatchEvent(new Event('change', {bubbles: true}));
      await new Promise(r => setTimeout(r, rest * (0.6 + 0.8 * ((i * 7) % 10) / 10)));
    }
  }
  const evals = performance.getEntriesByType('resource').filter(e => e.name.endsWith('/api/eval'));
  const st = (e, k) => (e.serverTiming.find(t => t.name === k) || {duration: NaN}).duration;
  return {times: out, fetch: evals.map(e => e.responseEnd - e.startTime),
          compute: evals.map(e => st(e, 'compute')), wait: evals.map(e => st(e, 'wait'))};
}"""

PAUSE_JS = """async (n) => {
  const $ = (id) => document.getElementById(id), out = [];
  const spf = $('spf'); spf.value = spf.options[spf.options.length - 1].value; spf.dispatchEvent(new Event('change'));
  const lim = $('maxsteps'); lim.value = '1000000'; lim.dispatchEvent(new Event('change'));
  for (let i = 0; i < n; i++) {
    const at = Number($('step').textContent);
    $('btn-play').click();
    while (Number($('step').textContent) < at + 4000) await new Promise(r => setTimeout(r, 5));
    const t0 = performance.now();
    $('btn-play').click();
    while (!$('run-status').textContent.startsWith('paused')) await new Promise(r => setTimeout(r, 1));
    out.push(performance.now() - t0);
  }
  return out;
}"""

STREAM_JS = """async ([steps, spf, paced]) => {
  const d = await (await fetch('/api/data', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                          body: JSON.stringify({name: 'lesson'})})).json();
  return await new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/api/play`);
    let got = 0, t0 = null;
    ws.onopen = () => { t0 = performance.now(); ws.send(JSON.stringify({type: 'start', data: {x: d.x, y: d.y},
      model: 'a*x^2 + b*x + c', loss: 'mae', optimizer: 'gd', lr: 0.001, steps, p0: {a: 1.1, b: 1.1, c: 1.1},
      steps_per_frame: spf, paced})); };
    ws.onmessage = (ev) => { const m = JSON.parse(ev.data);
      if (m.type === 'frame') { got += m.losses.length; ws.send(JSON.stringify({type: 'ack', seq: m.seq})); }
      if (m.type === 'done') { const s = (performance.now() - t0) / 1000; resolve({steps: m.steps_done, seconds: s, frames_steps: got}); ws.close(); }
      if (m.type === 'error') resolve({error: m.detail}); };
  });
}"""


def quantiles(values) -> tuple[float, float, float]:
    """Median, 95th percentile and maximum."""
    v = sorted(values)
    return v[len(v) // 2], v[min(len(v) - 1, int(0.95 * len(v)))], v[-1]


def serve(static: Path | None = None) -> int:
    """The app on a free port, in a thread; ``static``: another page's files (a baseline)."""
    import gradfit.web.app as app_module
    keep = app_module.STATIC
    if static is not None:
        app_module.STATIC = static
    try:
        app = create_app()
    finally:
        app_module.STATIC = keep
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=srv.run, daemon=True).start()
    while not srv.started:
        time.sleep(0.02)
    return port


def against(rev: str, rounds: int, chromium: str) -> None:
    """The page of git revision ``rev`` and this one, on one server each, dragged in
    alternation (20 moves a turn, continuous and let go with rests): p50/p95 of each and
    the ratio of the p95s, in one run."""
    import subprocess
    import tempfile
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp())
    tar = subprocess.run(["git", "-C", str(root), "archive", rev, "src/gradfit/web/static"],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=tar, check=True)
    ports = {rev: serve(tmp / "src/gradfit/web/static"), "this page": serve()}
    times = {(k, rest): [] for k in ports for rest in (0, 300)}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=ARGS)
        pages = {}
        for k, port in ports.items():
            pages[k] = browser.new_page(viewport={"width": 1400, "height": 900})
            pages[k].goto(f"http://127.0.0.1:{port}/")
            pages[k].wait_for_selector("body[data-ready='1']", timeout=60_000)
            pages[k].evaluate(DRAG_JS, ["a", 5, 0])                # warm up
        for i in range(rounds):
            for rest in (0, 300):
                for k in (list(ports) if i % 2 == 0 else list(ports)[::-1]):
                    pages[k].bring_to_front()
                    times[(k, rest)] += pages[k].evaluate(DRAG_JS, ["a", 20, rest])["times"]
        browser.close()
    for rest in (0, 300):
        p95 = {}
        for k in ports:
            p50, p95[k], top = quantiles(times[(k, rest)])
            print(f"slider drag ({'let go, resting' if rest else 'continuous'}), {k}: p50 {p50:.1f} ms, "
                  f"p95 {p95[k]:.1f} ms, max {top:.1f} ms over {len(times[(k, rest)])} moves")
        print(f"    p95 ratio, {rev} / this page: {p95[rev] / p95['this page']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drags", type=int, default=100)
    ap.add_argument("--pauses", type=int, default=10)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--against", metavar="REV", help="also drag the page of this git revision "
                    "and this one in alternation (e.g. 5ab716a: before the slider's fix)")
    ap.add_argument("--rounds", type=int, default=3, help="turns of --against")
    a = ap.parse_args()
    prepare_process()                      # as `gradfit serve` does
    print("load average at the start: %.2f %.2f %.2f" % os.getloadavg())
    if a.against:
        against(a.against, a.rounds, a.chromium)
        print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())
        return
    port = serve()                         # a daemon thread: it ends with the script
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=a.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("body[data-ready='1']", timeout=20_000)
        page.evaluate(DRAG_JS, ["a", 10, 0])                          # warm up
        for name, rest, what in (("a", 0, "a, a landscape axis"), ("c", 0, "c, held in the landscape"),
                                 ("a", 300, "a, let go and resting 180-420 ms between moves")):
            r = page.evaluate(DRAG_JS, [name, a.drags, rest])
            p50, p95, top = quantiles(r["times"])
            print(f"slider drag ({what}) -> new curve and loss: p50 {p50:.1f} ms, p95 {p95:.1f} ms, "
                  f"max {top:.1f} ms over {len(r['times'])} moves (target p95 < 100 ms): "
                  f"{'PASS' if p95 < 100 else 'FAIL'}")
            print("    where the time goes, medians over the /api/eval requests: the request "
                  f"{quantiles(r['fetch'])[0]:.1f} ms in the browser, of which the server computed "
                  f"{quantiles(r['compute'])[0]:.1f} ms after waiting {quantiles(r['wait'])[0]:.2f} ms "
                  "for a worker; the rest of a move is the page's drawing")
        times = page.evaluate(PAUSE_JS, a.pauses)
        p50, p95, _ = quantiles(times)
        print(f"pause at the fastest speed -> page says paused: p50 {p50:.1f} ms, p95 {p95:.1f} ms "
              f"over {len(times)} pauses (target < 100 ms): {'PASS' if p95 < 100 else 'FAIL'}")
        for spf, paced in ((100, True), (1000, True), (1000, False)):
            r = page.evaluate(STREAM_JS, [a.steps, spf, paced])
            if "error" in r:
                print("stream error:", r["error"])
                continue
            rate = r["steps"] / r["seconds"]
            print(f"streaming ({spf} steps/frame, {'paced 50 frames/s' if paced else 'unpaced'}): "
                  f"{r['steps']} steps in {r['seconds']:.2f} s = {rate:,.0f} steps/s "
                  f"(target >= 2,000): {'PASS' if rate >= 2000 else 'FAIL'}")
        browser.close()
    print("load average at the end: %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
