"""The sixth probe of the playground, in a real browser (Debian's Chromium via Playwright;
the server and browser fixtures of ``test_web_e2e``): a link's replay shows step N's curve,
loss and title (a late answer about the start had overwritten them), a link without its
data replays nothing on the lesson's, a failed exact fit is not starred as the optimum, a
quoted header's ``err`` is sigma and the weighted loss is named so in every plot, data too
small to draw say so, and a CSV of 25,000 points gets a landscape. Oracles: ``gradfit.fit``
on the page's own points. Each test waits for a condition on the page."""
import json
from urllib.parse import quote

import numpy as np
import pytest

from test_web_e2e import TITLE, browser, open_page, page, page_points, server  # noqa: F401  (fixtures)
from test_web_page4 import csv_file, el, until, upload_in_page

import gradfit

QUAD = "a*x^2 + b*x + c"
P0 = {"a": 1.1, "b": 1.1, "c": 1.1}

# every answer of /api/eval counted as the page receives it (before it may draw it)
COUNT_EVALS = """
window.__evalAsked = 0; window.__evalDone = 0;
const plainFetch = window.fetch;
window.fetch = async (...args) => {
  const isEval = String(args[0]).includes('/api/eval');
  if (isEval) window.__evalAsked++;
  const r = await plainFetch(...args);
  if (isEval) { const body = r.json.bind(r); r.json = () => body().finally(() => { window.__evalDone++; }); }
  return r;
};
"""


def replay_link(server, step):
    return (f"{server}/#loss=mae&optimizer=gd&lr=0.01&steps=2000&p0={quote(json.dumps(P0))}"
            f"&n=20&mult=0.15&add=1.5&pa=a&pb=b&ps=c&step={step}")


def test_a_replayed_link_shows_step_ns_curve_loss_and_title(browser, server):
    """The answer about the start is held until step 50's frame is on the page, then let go:
    it is dropped, and the page shows gradfit's step 50."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.add_init_script(COUNT_EVALS)
    pg = ctx.new_page()
    held, seen, let_go = [], [], []

    def hold(route):                     # the first question goes; the next ones wait
        seen.append(route)
        if len(seen) == 1 or let_go:
            route.continue_()
        else:
            held.append(route)
    try:
        pg.route("**/api/eval", hold)
        pg.goto(replay_link(server, 50))
        pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
        until(pg, f"{el('run-status')}.textContent === 'paused at step 50'", timeout=20_000)
        until(pg, f"{el('step')}.textContent === '50' && window.__evalAsked >= 2")
        let_go.append(True)
        for route in held:
            route.continue_()
        until(pg, "window.__evalDone === window.__evalAsked", timeout=10_000)
        pts = page_points(pg)
        want = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="gd", lr=0.01,
                           steps=50, p0=P0)
        loss = gradfit.loss_and_grad(QUAD, pts["x"], pts["y"], want.params, loss="mae")[0]
        assert float(pg.text_content("#loss-value")) == pytest.approx(loss, rel=1e-5)
        assert float(pg.text_content(TITLE).split("=")[1]) == pytest.approx(loss, rel=1e-5)
        curve = pg.evaluate("() => document.getElementById('plot-data').data.find(t => t.name === 'model')")
        xs = np.array(curve["x"])
        p = want.params
        np.testing.assert_allclose(curve["y"], p["a"] * xs ** 2 + p["b"] * xs + p["c"], rtol=1e-9)
        for k in p:                      # the sliders' values, as their outputs say them
            assert float(pg.text_content(f"#out-{k}")) == pytest.approx(p[k], rel=1e-5)
    finally:
        ctx.close()


def test_a_link_without_its_data_replays_nothing_on_the_lessons(browser, server):
    csv = {"name": "big.csv", "yName": "y", "sigmaName": None, "x": [], "y": [], "inputs": ["x"]}
    link = (f"{server}/#model={quote('a*sin(b*x)+c')}&loss=mae&optimizer=gd&lr=0.01&steps=2000"
            f"&p0={quote(json.dumps({'a': 1, 'b': 1, 'c': 1}))}&data=csv&step=179"
            f"&pa=a&pb=b&ps=c&csv={quote(json.dumps(csv))}")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    try:
        open_page(pg, link)
        assert "does not hold its data" in pg.text_content("#data-error")
        assert "(to step 179)" in pg.text_content("#data-error")
        assert pg.text_content("#step") == "0" and "paused" not in pg.text_content("#run-status")
        until(pg, "!location.hash.includes('step=') && !location.hash.includes('data=csv')")
        # what is shown is the model at its start on the lesson's data, as gradfit says
        pts = page_points(pg)
        loss = gradfit.loss_and_grad("a*sin(b*x)+c", pts["x"], pts["y"], {"a": 1, "b": 1, "c": 1},
                                     loss="mae")[0]
        assert float(pg.text_content("#loss-value")) == pytest.approx(loss, rel=1e-5)
    finally:
        ctx.close()


def landscape_names(pg):
    return pg.evaluate("() => document.getElementById('plot-landscape').data.map(t => t.name)")


def test_a_failed_exact_fit_is_not_starred_as_the_optimum(page, tmp_path):
    # the lesson's fit converged: its star is the exact optimum
    until(page, f"{el('exact-info')}.textContent.startsWith('exact optimum')")
    until(page, "document.getElementById('plot-landscape').data?.some(t => t.name === 'exact optimum')")
    rows = [(3, 4 - 0.1 * i) for i in range(12)]          # x all 3: the rank is lost
    path = csv_file(tmp_path, "constx.csv", "x,y", rows)
    want = gradfit.fit(QUAD, np.full(12, 3.0), np.array([r[1] for r in rows]), loss="mae")
    assert not want.converged and want.reason == "failed"
    upload_in_page(page, path, 12)
    until(page, f"{el('exact-info')}.textContent.startsWith('failed')")
    until(page, "document.getElementById('plot-landscape').data?.length >= 5 && "
                "!document.getElementById('plot-landscape').classList.contains('stale')", timeout=20_000)
    names = landscape_names(page)
    assert "exact optimum" not in names
    assert "where the exact fit stopped (failed: no optimum)" in names
    mark = page.evaluate("() => document.getElementById('plot-landscape').data.at(-1).marker.symbol")
    assert mark == "x"
    assert page.text_content("#distance-label") == "distance to where the exact fit stopped (failed)"


def test_a_quoted_header_fits_signal_weighted_by_err_and_names_the_loss_so(page, tmp_path):
    rng = np.random.default_rng(5)
    t = np.round(np.linspace(0, 4, 25), 4)
    err = np.round(0.05 + 0.1 * rng.random(25), 4)
    signal = np.round(2 * t ** 2 - t + 1 + err * rng.standard_normal(25), 5)
    path = tmp_path / "quoted.csv"
    path.write_text('"t","signal","err"\n' + "".join(f"{a},{b},{c}\n" for a, b, c in zip(t, signal, err)))
    upload_in_page(page, path, 25)
    assert (page.input_value("#csv-y"), page.input_value("#csv-sigma")) == ("signal", "err")
    assert page.evaluate("() => document.getElementById('plot-data').data[0].y") == pytest.approx(signal.tolist())
    until(page, f"{el('exact-info')}.textContent.startsWith('exact optimum')")
    want = gradfit.fit(QUAD, t, signal, sigma=err, loss="mae")
    shown = page.text_content("#exact-info").split("loss ")[1].split(" ")[0]
    assert float(shown) == pytest.approx(want.loss, rel=1e-5)
    name = "MAE (weighted by 1/σ)"
    assert page.text_content(TITLE).startswith(name + " = ")
    until(page, "document.querySelector('#plot-landscape .gtitle')?.textContent"
                f".startsWith({json.dumps(name + ' over a, b')})", timeout=20_000)
    assert page.evaluate("() => document.getElementById('plot-loss').layout.yaxis.title.text") == name
    assert page.text_content("#plot-slice .gtitle") == f"{name} along c"


def test_data_too_small_to_draw_say_so_in_gradfits_words(page, tmp_path):
    until(page, f"{el('exact-info')}.textContent.includes('=')")
    lesson_title = page.text_content(TITLE)
    rows = [(round(i * 5 / 29, 6), (4 - 0.1 * i) * 1e-310) for i in range(30)]
    path = csv_file(tmp_path, "y1e-310.csv", "x,y", rows)
    page.set_input_files("#csv", str(path))
    until(page, f"{el('plot-error')}.textContent.includes('too small a range to draw')", timeout=20_000)
    assert "y spans only" in page.text_content("#plot-error")
    assert page.text_content("#model-error") == ""                  # not Plotly's words there
    assert page.text_content(TITLE) != lesson_title                   # no other data's title
    assert "see the message above" in page.text_content(TITLE)
    until(page, f"{el('exact-info')}.textContent.includes('=')", timeout=20_000)
    assert "Cannot read properties" not in page.text_content("#landscape-error")


def test_a_csv_of_25000_points_gets_a_landscape_at_a_resolution_that_fits(page, tmp_path):
    n = 25_000
    x = np.round(np.linspace(-2, 2, n), 6)
    rows = [(a, round(2 * a * a + a + 0.3 * np.sin(40 * a), 6)) for a in x]
    path = csv_file(tmp_path, "many.csv", "x,y", rows)
    upload_in_page(page, path, n)
    until(page, "/grid for 25,000 points/.test(document.querySelector('#plot-landscape .gtitle')"
                "?.textContent)", timeout=30_000)
    assert page.text_content("#landscape-error") == ""
    k = len(page.evaluate("() => document.getElementById('plot-landscape').data[0].x"))
    assert 11 <= k < 61 and f"{k} × {k} grid" in page.text_content("#plot-landscape .gtitle")


def test_a_links_column_menus_name_the_files_columns(page, browser, tmp_path):
    """A column named "x-1" is the model's input x; the link's x menu names the column (it
    had been blank: the menu was set to the input's name)."""
    rows = [(round(0.2 * i, 3), round(1 + 0.5 * i, 3)) for i in range(15)]
    path = csv_file(tmp_path, "ops.csv", "x-1,y", rows)
    upload_in_page(page, path, 15)
    assert page.input_value("#csv-x") == "x-1" and page.text_content("#model-label") == "model of x"
    until(page, "location.hash.includes('csv=')")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    other = ctx.new_page()
    try:
        open_page(other, page.url)
        assert [other.input_value(f"#{i}") for i in ("csv-x", "csv-y", "csv-sigma")] == ["x-1", "y", ""]
        assert other.evaluate("() => document.getElementById('plot-data').data[0].x") == \
            pytest.approx([r[0] for r in rows])
    finally:
        ctx.close()
