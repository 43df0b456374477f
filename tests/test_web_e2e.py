"""The playground in a real browser: Debian's Chromium driven by Playwright (never a
browser download). Each test waits for a condition on the page, never a fixed time."""
import json
import os
import socket
import threading
import time
import urllib.request

import pytest

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
uvicorn = pytest.importorskip("uvicorn")

from gradfit.web.app import create_app  # noqa: E402

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TITLE = "#plot-data .gtitle"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not srv.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    open_page(pg, server + "/")
    yield pg
    ctx.close()
    assert not errors, errors


def open_page(pg, url):
    pg.goto(url)
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    pg.wait_for_function(f"() => /= \\d/.test(document.querySelector('{TITLE}')?.textContent)")


def title_loss(pg) -> float:
    return float(pg.locator(TITLE).text_content().split("=")[1])


def api(server, path, body):
    req = urllib.request.Request(server + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def page_params(pg) -> dict:
    return pg.evaluate("() => Object.fromEntries([...document.querySelectorAll('#sliders input')]"
                       ".map(i => [i.dataset.name, Number(i.value)]))")


def page_points(pg) -> dict:
    return pg.evaluate("() => ({x: document.getElementById('plot-data').data[0].x,"
                       " y: document.getElementById('plot-data').data[0].y})")


def drag_slider(pg, name, to_fraction):
    s = pg.locator(f"#slider-{name}")
    box = s.bounding_box()
    lo, hi, v = (float(s.get_attribute(k) or s.input_value()) for k in ("min", "max", "value"))
    x0 = box["x"] + 8 + (box["width"] - 16) * (v - lo) / (hi - lo)
    y = box["y"] + box["height"] / 2
    pg.mouse.move(x0, y)
    pg.mouse.down()
    for k in range(1, 11):
        pg.mouse.move(x0 + (box["x"] + box["width"] * to_fraction - x0) * k / 10, y)
    pg.mouse.up()


def wait_title_is(pg, value: float):
    want = f"{value:.6g}"
    pg.wait_for_function(
        f"() => Number(document.querySelector('{TITLE}').textContent.split('=')[1])"
        f".toPrecision(6) == Number({want}).toPrecision(6)", timeout=10_000)


def test_dragging_a_shows_the_apis_mae(page, server):
    before = title_loss(page)
    assert round(before, 4) == 2.4219                     # the lesson's guess, a=b=c=1.1
    drag_slider(page, "a", 0.8)
    page.wait_for_function("() => Number(document.getElementById('slider-a').value) > 2")
    params = page_params(page)
    want = api(server, "/api/eval", {"data": page_points(page), "model": "a*x^2 + b*x + c",
                                     "loss": "mae", "params": params})["loss"]
    wait_title_is(page, want)
    assert page.locator(TITLE).text_content().startswith("MAE = ")
    assert title_loss(page) != before


def test_play_lowers_the_loss_and_moves_the_sliders(page):
    start, a0 = title_loss(page), page_params(page)["a"]
    page.click("#btn-play")
    page.wait_for_function(
        f"() => Number(document.querySelector('{TITLE}').textContent.split('=')[1]) < {start} - 0.1"
        f" && Number(document.getElementById('slider-a').value) != {a0}", timeout=15_000)
    page.click("#btn-play")                              # pause
    page.wait_for_function("() => document.getElementById('run-status').textContent.startsWith('paused')")
    assert page_params(page)["a"] != a0
    assert int(page.locator("#step").text_content()) > 0


def test_a_copied_link_reproduces_the_state(page, browser):
    page.select_option("#loss", "mse")
    page.select_option("#dataset", "decay")
    page.wait_for_function("() => document.getElementById('model').value.includes('exp')")
    page.wait_for_function(f"() => document.querySelector('{TITLE}').textContent.startsWith('MSE = ')")
    drag_slider(page, "k", 0.7)
    page.wait_for_function("() => location.hash.includes('data=decay')"
                           " && JSON.parse(new URLSearchParams(location.hash.slice(1)).get('p0'))?.k"
                           " == Number(document.getElementById('slider-k').value)")
    title = page.locator(TITLE).text_content()
    want = api(page.url.split("/#")[0], "/api/eval",
               {"data": page_points(page), "model": page.input_value("#model"), "loss": "mse",
                "params": page_params(page)})["loss"]
    wait_title_is(page, want)
    title = page.locator(TITLE).text_content()
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    other = ctx.new_page()
    open_page(other, page.url)
    try:
        other.wait_for_function(f"() => document.querySelector('{TITLE}').textContent == {json.dumps(title)}")
        assert page_params(other) == page_params(page)
        assert other.input_value("#model") == page.input_value("#model")
        assert other.input_value("#loss") == "mse" and other.input_value("#dataset") == "decay"
        assert page_points(other) == page_points(page)
    finally:
        ctx.close()


def test_a_bad_expression_shows_an_inline_error(page):
    page.fill("#model", "a*x^^2 + b")
    page.wait_for_function("() => document.getElementById('model-error').textContent.length > 0")
    text = page.locator("#model-error").text_content()
    assert "column" in text or "syntax" in text
    page.fill("#model", "a*x^2 + b*x + c")
    page.wait_for_function("() => document.getElementById('model-error').textContent === ''")


def test_clicking_the_plot_adds_a_point_and_changes_the_loss(page):
    before, n = title_loss(page), len(page_points(page)["x"])
    box = page.locator("#plot-data .nsewdrag").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.08)
    page.wait_for_function(f"() => document.getElementById('plot-data').data[0].x.length == {n + 1}")
    page.wait_for_function(
        f"() => Number(document.querySelector('{TITLE}').textContent.split('=')[1]) != {before}")
    page.wait_for_function("() => location.hash.includes('added=')")
    assert title_loss(page) > before                      # a far point raises the MAE


def test_a_constant_is_shown_as_a_constant_not_a_slider(page):
    page.fill("#model", "a*x + e")
    page.wait_for_selector("#constants")
    assert set(page_params(page)) == {"a"}
    assert "e = 2.71828" in page.locator("#constants").text_content()
