"""The page and FitConfig, in a real browser (Debian's Chromium via Playwright; the server and
browser fixtures of ``test_web_e2e``): a link of a FitConfig with a schedule, bounds, fixed
values and optimizer options runs that config (the run's result is ``gradfit.fit``'s, and
the run's start message carries every field), "Show code" writes them, what the page cannot
run (the device) and what a link breaks (a key twice, a bad value) are said on the page,
and the all-default config's link opens that config, not the lesson's run. Oracles:
``gradfit.fit`` on the page's own points; ``FitConfig.from_query`` for the link."""
import json
from urllib.parse import parse_qsl, quote, urlencode

import pytest

from test_web_e2e import browser, page_points, server  # noqa: F401  (fixtures)
from test_web_page4 import el, until

import gradfit
from gradfit.config import FitConfig
from gradfit.web.pagemeta import CONFIG_KEYS, page_hash

QUAD = "a*x^2 + b*x + c"
P0 = {"a": 1.1, "b": 1.1}
CONFIG = FitConfig(model=QUAD, loss="mae", optimizer="momentum", lr=0.01, steps=300, p0=P0,
                   schedule="cosine", bounds={"a": (0.0, 2.0)}, fixed={"c": 1.0},
                   options={"momentum": 0.5, "nesterov": True})
DATA = "&n=20&mult=0.15&add=1.5"     # the lesson's data, as the page's own links say them


def open_link(browser, server, fragment):
    """A fresh page on ``server/#fragment``, with every WebSocket message it sends and
    receives kept (``sent``, ``got``) and page errors collected (``errors``)."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.errors, pg.sent, pg.got = [], [], []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))

    def socket(ws):
        ws.on("framesent", lambda payload: pg.sent.append(json.loads(payload)))
        ws.on("framereceived", lambda payload: pg.got.append(json.loads(payload)))
    pg.on("websocket", socket)
    pg.goto(f"{server}/#{fragment}")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    until(pg, f"{el('exact-info')}.textContent.includes('=')", timeout=20_000)
    return ctx, pg


def play_to_the_end(pg) -> dict:
    pg.click("#btn-play")
    until(pg, f"{el('run-status')}.textContent.includes(':') && "
          f"!{el('run-status')}.textContent.startsWith('running')", timeout=30_000)
    pg.wait_for_timeout(50)                         # the done message's handler has run
    done = [m for m in pg.got if m.get("type") == "done"]
    assert len(done) == 1, [m.get("type") for m in pg.got]
    return done[0]


def test_a_links_schedule_bounds_fixed_and_options_are_the_runs(browser, server):
    ctx, pg = open_link(browser, server, CONFIG.to_query() + DATA)
    try:
        extra = pg.text_content("#config-extra")
        for words in ("0 ≤ a ≤ 2", "c = 1", "momentum = 0.5", "nesterov = true"):
            assert words in extra, extra
        assert pg.input_value("#schedule") == "cosine"
        assert pg.is_disabled("#slider-c")          # held by the config
        done = play_to_the_end(pg)
        start = next(m for m in pg.sent if m.get("type") == "start")
        assert (start["schedule"], start["bounds"], start["fixed"], start["options"]) == (
            "cosine", {"a": [0, 2]}, {"c": 1}, {"momentum": 0.5, "nesterov": True})
        pts = page_points(pg)
        ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="momentum", lr=0.01,
                          steps=300, p0=P0, schedule="cosine", bounds={"a": (0, 2)},
                          fixed={"c": 1.0}, momentum=0.5, nesterov=True)
        assert done["steps_done"] == ref.steps and done["reason"] == ref.reason
        assert done["params"] == pytest.approx(ref.params, rel=1e-12, abs=1e-12)
        assert done["params"]["c"] == 1.0 and 0 <= done["params"]["a"] <= 2
        # without the nesterov look-ahead and the schedule the run is another one: they
        # were in force, not the optimizer's defaults
        plain = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="momentum",
                            lr=0.01, steps=300, p0=P0, bounds={"a": (0, 2)}, fixed={"c": 1.0})
        assert done["params"]["b"] != pytest.approx(plain.params["b"], rel=1e-9)
        # the page's link is the same config
        pg.wait_for_timeout(200)                                     # writeHash's timer
        fragment = pg.evaluate("() => location.hash.slice(1)")
        run = urlencode([(k, v) for k, v in parse_qsl(fragment) if k in CONFIG_KEYS])
        assert FitConfig.from_query(run) == CONFIG
        # Show code: the same config, every field written
        pg.click("#btn-code")
        until(pg, f"{el('code')}.textContent.includes('gradfit.fit')")
        code = pg.text_content("#code")
        for words in ("schedule='cosine'", "momentum=0.5", "nesterov=True",
                      "bounds={'a': (0.0, 2.0)}", "fixed={'c': 1.0}"):
            assert words in code, code
        assert not pg.errors, pg.errors
    finally:
        ctx.close()


def test_what_a_link_breaks_or_the_page_cannot_run_is_said(browser, server):
    fragment = (FitConfig(model=QUAD, loss="mae", optimizer="gd", lr=0.01, p0=P0,
                          device="cuda", dtype="float32").to_query()
                + "&seed=3&seed=7&steps=" + quote("-5") + DATA)
    ctx, pg = open_link(browser, server, fragment)
    try:
        note = pg.text_content("#config-note")
        assert "device cuda is not run here" in note, note
        assert "the link gives seed 2 times" in note, note
        assert "bad steps in the link" in note and "0 ≤ steps ≤ 10000000" in note, note
        assert "dtype float32" in pg.text_content("#config-extra")
        done = play_to_the_end(pg)           # steps: FitConfig's default, as the note says
        start = next(m for m in pg.sent if m.get("type") == "start")
        assert start["p0"]["a"] == P0["a"] and start["seed"] == 0 and start["dtype"] == "float32"
        pts = page_points(pg)
        ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="gd", lr=0.01,
                          steps=1000, p0=start["p0"], dtype="float32")
        assert done["steps_done"] == 1000
        assert done["params"] == pytest.approx(ref.params, rel=1e-12)
        pg.click("#btn-code")
        until(pg, f"{el('code')}.textContent.includes('gradfit.fit')")
        assert "device='cuda'" in pg.text_content("#code")
        assert not pg.errors, pg.errors
    finally:
        ctx.close()


def test_the_all_default_configs_link_opens_that_config(browser, server):
    """FitConfig()'s query is empty, and an empty hash opens the lesson's run (mae, gd):
    its link says ``page_hash``'s mark, and the page runs FitConfig's defaults."""
    ctx, pg = open_link(browser, server, page_hash(FitConfig()))
    try:
        assert pg.input_value("#loss") == "mse" and pg.input_value("#optimizer") == "auto"
        assert pg.input_value("#maxsteps") == "1000"
        assert pg.text_content("#config-note") == ""
        pg.wait_for_timeout(200)
        fragment = pg.evaluate("() => location.hash.slice(1)")
        run = urlencode([(k, v) for k, v in parse_qsl(fragment) if k in CONFIG_KEYS])
        c = FitConfig.from_query(run)
        assert (c.loss, c.optimizer, c.lr, c.steps) == ("mse", "auto", None, 1000)
        assert not pg.errors, pg.errors
    finally:
        ctx.close()


def test_choosing_auto_on_the_page_leaves_its_rate_to_the_method_it_picks(browser, server):
    """auto now runs the method it picks at a given lr: the page, which set every
    optimizer's default_lr on choosing it (auto's 1.0), would have run adam at 1.0. Choosing
    auto sends no lr, as its link does (FitConfig's lr None)."""
    fragment = (FitConfig(model=QUAD, loss="mse", optimizer="gd", lr=0.01, p0=P0).to_query()
                + DATA)
    ctx, pg = open_link(browser, server, fragment)
    try:
        pg.select_option("#optimizer", "auto")
        pg.wait_for_timeout(100)
        play_to_the_end(pg)
        starts = [m for m in pg.sent if m.get("optimizer") == "auto"]
        assert starts and all(m.get("lr") is None for m in starts), starts
        fragment = pg.evaluate("() => location.hash.slice(1)")
        run = urlencode([(k, v) for k, v in parse_qsl(fragment) if k in CONFIG_KEYS])
        assert FitConfig.from_query(run).lr is None
        assert not pg.errors, pg.errors
    finally:
        ctx.close()
