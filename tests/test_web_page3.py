"""The playground with people's own data and hand-made links, in a real browser (Debian's
Chromium via Playwright): a model changed mid-run, a link whose data are not in it, bad
fields in a link, parameters with non-ASCII names, a first column of names, thousands of
points. Each test waits for a condition on the page, never a fixed time."""
import json
from urllib.parse import quote

from test_web_e2e import TITLE, api, browser, open_page, page, server  # noqa: F401  (fixtures)


def test_a_model_changed_during_a_run_ends_that_run(page, server):
    # before: with the same parameter names the run went on fitting the old model
    page.select_option("#loss", "mse")
    page.click("#btn-play")
    page.wait_for_function("() => Number(document.getElementById('step').textContent) > 5")
    page.fill("#model", "a*x^3 + b*x + c")
    page.wait_for_function("() => document.getElementById('step').textContent === '0'"
                           " && !location.hash.includes('step=')", timeout=10_000)
    page.wait_for_function("() => !document.getElementById('run-status').textContent.startsWith('running')")
    params = page.evaluate("() => Object.fromEntries([...document.querySelectorAll('#sliders input')]"
                           ".map(i => [i.dataset.name, Number(i.value)]))")
    points = page.evaluate("() => ({x: document.getElementById('plot-data').data[0].x,"
                           " y: document.getElementById('plot-data').data[0].y})")
    want = api(server, "/api/eval", {"data": points, "model": "a*x^3 + b*x + c", "loss": "mse",
                                     "params": params})["loss"]
    page.wait_for_function(f"() => Number(document.querySelector('{TITLE}').textContent"
                           f".split('=')[1]).toPrecision(5) == Number({want}).toPrecision(5)")


def test_a_link_without_its_data_or_with_bad_fields_opens_a_working_page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        # a file of more than 2,000 points: the link holds no points (it had left a blank
        # page 'replaying' for ever)
        empty = quote(json.dumps({"x": [], "y": [], "inputs": ["t"], "name": "big.csv"}))
        open_page(pg, f"{server}/#data=csv&csv={empty}&step=20")
        assert "does not hold its data" in pg.text_content("#data-error")
        assert pg.input_value("#dataset") == "lesson"
        # fields that break their form keep their defaults (had been blank pages)
        open_page(pg, f"{server}/#seed=-1&n=200&dseed=1.5")
        assert pg.input_value("#n") == "200" and pg.text_content("#model-error") == ""
        assert pg.evaluate("() => document.getElementById('plot-data').data[0].x.length") == 200
        bad = quote(json.dumps({"x": None, "y": None}))
        open_page(pg, f"{server}/#data=csv&csv={bad}")
        assert pg.input_value("#dataset") == "lesson"
    finally:
        ctx.close()
    assert not errors, errors


def test_parameters_named_alpha_and_beta_have_a_slider_each(page):
    # before: both ids were 'slider-_': one slider moved the other's label
    page.fill("#model", "α*x + β")
    page.wait_for_function("() => document.querySelectorAll('#sliders input').length === 2")
    ids = page.evaluate("() => [...document.querySelectorAll('#sliders input')].map(i => i.id)")
    outs = page.evaluate("() => [...document.querySelectorAll('#sliders output')].map(o => o.id)")
    assert len(set(ids)) == 2 and len(set(outs)) == 2


def test_a_csv_with_a_first_column_of_names_and_thousands_of_points(page, tmp_path):
    # a first column of labels had been x and the upload refused; 5,000 points are drawn
    # by WebGL (100,000 SVG markers had held the page for seconds a slider step)
    rows = "\n".join(f"pt{i},{i / 1000},{2 * i / 1000 + 1}" for i in range(5000))
    path = tmp_path / "labelled.csv"
    path.write_text("name,t,v\n" + rows + "\n")
    page.set_input_files("#csv", str(path))
    page.wait_for_function("() => document.getElementById('plot-data').data?.[0]?.x?.length === 5000",
                           timeout=20_000)
    assert page.text_content("#model-label") == "model of t"
    assert page.evaluate("() => document.getElementById('plot-data').data[0].type") == "scattergl"
    # x stands for the only input, t (it had become a fourth parameter of the default model)
    page.wait_for_function("() => document.getElementById('exact-info').textContent"
                           ".includes('c=1')", timeout=20_000)
    assert "x=" not in page.text_content("#exact-info")
    page.fill("#model", "a*x + b")
    page.wait_for_function("() => /^exact optimum.* a=2, b=1$/.test(document.getElementById("
                           "'exact-info').textContent)", timeout=20_000)
    assert "a=2" in page.text_content("#exact-info") and "b=1" in page.text_content("#exact-info")


def test_a_csv_with_missing_values_offers_to_leave_those_rows_out(page, tmp_path):
    # before: the message pointed to --drop-nan / drop_nan=True, which the page does not have
    path = tmp_path / "gaps.csv"
    path.write_text("x,y\n0,1\n1,3\n2,\n3,7\n4,nan\n5,11\n")
    page.set_input_files("#csv", str(path))
    page.wait_for_function("() => !document.getElementById('btn-dropnan').hidden", timeout=20_000)
    assert "--drop-nan" not in page.text_content("#data-error")
    page.click("#btn-dropnan")
    page.wait_for_function("() => document.getElementById('plot-data').data?.[0]?.x?.length === 4",
                           timeout=20_000)
    assert "left out 2 row(s)" in page.text_content("#data-error")
    assert page.is_hidden("#btn-dropnan")


def test_reset_fits_the_slider_ranges_to_the_start_again(browser, server):
    # before: a diverged run's ranges (a up to +-1e3) stayed after reset, the start a speck
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    try:
        open_page(pg, f"{server}/#loss=mse&optimizer=gd&lr=1&steps=60")
        pg.click("#btn-play")
        pg.wait_for_function("() => Number(document.getElementById('slider-a').max) > 50",
                             timeout=20_000)
        pg.click("#btn-reset")
        pg.wait_for_function("() => Number(document.getElementById('slider-a').max) === 5"
                             " && document.getElementById('step').textContent === '0'")
        assert abs(float(pg.input_value("#slider-a")) - 1.0) < 0.01     # the start, a = 1
    finally:
        ctx.close()


def test_sliders_of_data_far_from_size_one_follow_their_scale(page, tmp_path):
    # before: +-5 in steps of 0.01 whatever the data: over timestamps a slope of 1e-8
    # sat at the slider's 0, and the curve started at 1.7e9 over data of 20
    t = [1.7e9 + 3600.0 * i for i in range(48)]
    rows = "\n".join(f"{a:.10g},{20 + 3e-6 * (a - t[0]):.6g}" for a in t)
    path = tmp_path / "hourly.csv"
    path.write_text("t,v\n" + rows + "\n")
    page.fill("#model", "a*x + b")
    page.wait_for_function("() => document.querySelectorAll('#sliders input').length === 2")
    page.set_input_files("#csv", str(path))          # a new data set: the server's start
    page.wait_for_function("() => document.getElementById('plot-data').data?.[0]?.x?.length === 48"
                           " && Number(document.getElementById('slider-a').max) < 1e-6",
                           timeout=20_000)
    a = page.evaluate("() => { const i = document.getElementById('slider-a');"
                      " return {value: Number(i.value), max: Number(i.max), step: Number(i.step),"
                      " shown: document.getElementById('out-a').textContent}; }")
    assert 5e-9 < a["value"] < 5e-8 and a["step"] < a["value"] / 100
    assert a["shown"].startswith(f"{a['value']:.5e}"[:3])          # 6 digits, not 4
    b = page.evaluate("() => { const i = document.getElementById('slider-b');"
                      " return {value: Number(i.value), max: Number(i.max), step: Number(i.step)}; }")
    assert 40 < b["max"] < 60 and abs(b["value"] - 1) <= b["step"]   # b's size: y's, ~20
