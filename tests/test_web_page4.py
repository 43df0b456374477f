"""The playground's fourth round of fixes, from a probe of the page: a refused landscape is
not left showing another model's, CSV refusals keep the menus and the "leave out rows"
button on the file they are about, "Show code" runs and gives the page's numbers, nothing
goes to Plotly's cloud, a diverged run plots its losses and says so, a lost server is said
in words, a link redraws the path, the test curve and the column menus, the path starts at
the start, the modebar and legends cover no titles; and the CSV reader takes a European
spreadsheet's decimal commas and says what a units row or a column of dates is.

API tests use the TestClient; page tests a real browser (Debian's Chromium via Playwright),
each waiting for a condition on the page, never a fixed time."""
import ast
import contextlib
import io
import json

import numpy as np
import pytest

pytest.importorskip("fastapi")

import gradfit
from gradfit.csv_read import load_csv, read_csv
from gradfit.errors import DataError

QUAD = "a*x^2 + b*x + c"
PLAY = "ws://127.0.0.1/api/play"
START = {"a": 1.1, "b": 1.1, "c": 1.1}


def decay_rows(n=30, seed=2):
    rng = np.random.default_rng(seed)
    t = np.round(np.linspace(0, 6, n), 4)
    err = np.round(0.05 + 0.1 * rng.random(n), 4)
    signal = np.round(3.2 * np.exp(-0.7 * t) + 0.5 + err * rng.standard_normal(n), 5)
    return t, signal, err


def euro_and_plain(tmp_path):
    """The same table as a European Excel writes it (a BOM, ';', decimal commas, CRLF) and
    as a plain CSV."""
    t, s, _ = decay_rows()
    euro = "\ufefft;signal\r\n" + "".join(f"{a:.4f};{b:.5f}\r\n".replace(".", ",")
                                           for a, b in zip(t, s))
    plain = "t,signal\n" + "".join(f"{a:.4f},{b:.5f}\n" for a, b in zip(t, s))
    (tmp_path / "euro.csv").write_text(euro, encoding="utf-8", newline="")
    (tmp_path / "plain.csv").write_text(plain)
    return tmp_path / "euro.csv", tmp_path / "plain.csv"


def upload(client, name, text, **form):
    body = text.encode() if isinstance(text, str) else text
    return client.post("/api/csv", files={"file": (name, body, "text/csv")}, data=form)


def drain(ws):
    out = []
    while True:
        m = ws.receive_json()
        out.append(m)
        if m["type"] == "frame":
            ws.send_json({"type": "ack", "seq": m["seq"]})
        elif m["type"] != "warning":
            return out


def lesson_points():
    d = gradfit.lesson_data()
    return {"x": d.x.tolist(), "y": d.y.tolist()}


# ---------------------------------------------------------------- 10. the CSV reader

def test_a_european_excel_file_is_read_as_its_plain_twin(tmp_path, client):
    euro, plain = euro_and_plain(tmp_path)
    a, b = load_csv(euro), load_csv(plain)
    assert (a.x_names, a.y_name) == (b.x_names, b.y_name) == (("t",), "signal")
    assert a.x.tolist() == b.x.tolist() and a.y.tolist() == b.y.tolist()
    # through the page's upload too
    up = upload(client, "euro.csv", euro.read_bytes())
    assert up.status_code == 200, up.text
    assert up.json()["x"] == b.x.tolist() and up.json()["y"] == b.y.tolist()
    # only ';' files: in a tab-separated file 1,234 may be a thousand (refused as not a
    # number), and a ',' separated file is never read with decimal commas
    with pytest.raises(DataError, match="not a number"):
        read_csv(io.BytesIO(b"x\ty\n1,5\t-2,5e1\n"), "t.tsv")
    assert read_csv(io.BytesIO(b"x,y\n1,5\n"), "c.csv").x.tolist() == [1.0]


def test_one_decimal_mark_per_file(tmp_path):
    with pytest.raises(DataError, match=r"row 3, column 'x': a decimal point in a file whose "
                       r"numbers have decimal commas.*got '1.5'"):
        read_csv(io.BytesIO(b"x;y\n0,5;2\n1.5;3\n"), "mixed.csv")
    with pytest.raises(DataError, match=r"row 3, column 'x': not a number: expected a number "
                       r"with '.' as the decimal point"):
        read_csv(io.BytesIO(b"x;y\n0.5;2\n1,5;3\n"), "mixed.csv")


def test_the_cli_fits_the_european_file_with_the_same_numbers(tmp_path, capsys):
    from gradfit.cli import main
    euro, plain = euro_and_plain(tmp_path)
    out = []
    for path in (euro, plain):
        assert main(["fit", str(path), "-m", "A*exp(-k*t)+C", "--loss", "mse",
                     "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
        out.append(json.loads((tmp_path / "r.json").read_text())["params"])
    capsys.readouterr()
    assert out[0] == out[1] and out[0]["k"] == pytest.approx(0.7, abs=0.1)


def test_a_units_row_and_dates_say_what_to_do(tmp_path, client):
    units = "t,signal\ns,mV\n0,3.7\n1,2.1\n"
    (tmp_path / "units.csv").write_text(units)
    with pytest.raises(DataError, match=r"row 2 looks like a second header \(units\?\): "
                       r"remove it.*got 's, mV'"):
        load_csv(tmp_path / "units.csv")
    r = upload(client, "units.csv", units)
    assert r.status_code == 422
    assert r.json()["detail"].startswith(
        "units.csv: row 2 looks like a second header (units?): remove it")
    dates = "time,value\n2024-01-01T00:00:00,5.01\n2024-01-01T01:00:00,5.27\n"
    (tmp_path / "dates.csv").write_text(dates)
    with pytest.raises(DataError) as e:
        load_csv(tmp_path / "dates.csv")
    # the Python API's words for times (data.TIME_ADVICE), and how to convert the column
    assert "row 2, column 'time': not a number: a date or time: expected numbers: a time as " \
           "the seconds (or days) since a start" in str(e.value)
    assert "pd.to_datetime(df['time'])" in str(e.value)
    r = upload(client, "dates.csv", dates)
    assert r.status_code == 422
    assert "a time as the seconds (or days) since a start" in r.json()["detail"]
    # a column of words under the header is no units row when the next row is words too
    with pytest.raises(DataError, match=r"row 2, column 'x': not a number.*got 'a'"):
        read_csv(io.BytesIO(b"x;y\na;b\nc;d\n"), "words.csv")


# ---------------------------------------------------------------- 3. Show code

def run_code(code: str) -> dict:
    """The exact fit's parameters of a "Show code" script, run here (as a script: __main__)."""
    scope = {"__name__": "__main__"}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "shown_code.py", "exec"), scope)
    return scope["best"].params


def test_show_code_of_a_model_of_x_on_a_column_t_runs_and_gives_the_exact_fit(client, tmp_path):
    _, plain = euro_and_plain(tmp_path)
    up = upload(client, "plain.csv", plain.read_text()).json()
    pts = {k: up[k] for k in ("x", "y", "inputs")}
    assert pts["inputs"] == ["t"]
    exact = client.post("/api/exact", json={"data": pts, "model": QUAD, "loss": "mse",
                                            "p0": START}).json()
    code = client.post("/api/code", json={
        "data": {"source": "csv", "file": "plain.csv", "x": "t", "y": "signal"}, "model": QUAD,
        "loss": "mse", "optimizer": "gd", "lr": 0.01, "steps": 20, "p0": START,
        "points": pts}).json()["code"]
    assert "inputs=" not in code         # x is the column t, as the page read it
    assert run_code(code) == pytest.approx(exact["params"], rel=1e-9)


# ---------------------------------------------------------------- 5, 7. runs

def test_a_run_that_ends_between_frames_sends_its_last_losses_and_says_how_it_ended(client):
    pts = lesson_points()
    body = {"type": "start", "data": pts, "model": QUAD, "loss": "mse", "optimizer": "gd",
            "steps": 200, "p0": START, "steps_per_frame": 10, "paced": False}
    with client.websocket_connect(PLAY) as ws:
        ws.send_json({**body, "lr": 1.0})
        msgs = drain(ws)
    assert [m["type"] for m in msgs] == ["done"]             # before the first frame
    done = msgs[0]
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mse", optimizer="gd", lr=1.0, steps=200,
                      p0=START)
    assert done["first_step"] == 0 and done["losses"] == pytest.approx(ref.history[:3].tolist())
    assert done["verdict"] == "diverged at step 3" and done["label"] is None
    with client.websocket_connect(PLAY) as ws:
        ws.send_json({**body, "lr": 0.1})
        msgs = drain(ws)
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mse", optimizer="gd", lr=0.1, steps=200,
                      p0=START)
    losses = [v for m in msgs for v in m["losses"]]
    assert ref.reason == "ftol" and losses == pytest.approx(ref.history.tolist())
    assert msgs[-1]["first_step"] == 150
    assert msgs[-1]["verdict"] == f"stopped at step {ref.steps}: ftol, the loss stopped changing"


def test_a_replay_sends_the_path_and_test_losses_it_did_not_draw(client):
    pts = lesson_points()
    body = {"type": "start", "data": pts, "model": QUAD, "loss": "mse", "optimizer": "adam",
            "lr": 0.05, "steps": 200, "p0": START, "steps_per_frame": 2, "paced": False,
            "test_fraction": 0.25, "pause_at": 21}
    with client.websocket_connect(PLAY) as ws:         # live: a frame every 2 steps
        ws.send_json(body)
        live = []
        while not (live and live[-1].get("paused")):
            live.append(ws.receive_json())
            ws.send_json({"type": "ack", "seq": live[-1]["seq"]})
        ws.send_text("cancel")
        drain(ws)
    with client.websocket_connect(PLAY) as ws:         # a link's replay to the same step
        ws.send_json({**body, "quiet_until": 21})
        first = ws.receive_json()
        ws.send_text("cancel")
        drain(ws)
    assert first["step"] == live[-1]["step"] == 21 and first["paused"]
    trail = first["trail"]
    assert [t["step"] for t in trail] == [m["step"] for m in live[:-1]] == list(range(1, 21, 2))
    for t, m in zip(trail, live):
        assert t["params"] == pytest.approx(m["params"])
        assert t["test_loss"] == pytest.approx(m["test_loss"])


# ---------------------------------------------------------------- the page

try:        # the page's fixtures; without Chromium or Playwright the tests above still run
    from test_web_e2e import api, browser, open_page, page, server  # noqa: F401  (fixtures)
except pytest.skip.Exception as e:
    why = str(e)

    @pytest.fixture
    def browser():
        pytest.skip(why)
    page = server = browser

PLOTS = ("plot-data", "plot-loss", "plot-landscape", "plot-slice")


def el(id):
    return f"document.getElementById('{id}')"


def until(pg, js, **kw):
    """Wait until the expression ``js`` holds on the page."""
    pg.wait_for_function(f"() => {js}", **kw)


def upload_in_page(pg, path, n_points):
    pg.set_input_files("#csv", str(path))
    until(pg, f"{el('plot-data')}.data?.[0]?.x?.length === {n_points}"
          f" && {el('exact-info')}.textContent.includes('=')", timeout=20_000)


def csv_file(tmp_path, name, header, rows):
    p = tmp_path / name
    p.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return p


def test_a_refused_landscape_leaves_no_other_models_plot_and_says_why(page):
    page.wait_for_function("() => document.querySelector('#plot-landscape .gtitle')?.textContent"
                           " === 'mae over a, b'")
    detail = "cancelled after 10 s (the time limit, --max-seconds): ask for less work"
    page.route("**/api/landscape", lambda route: route.fulfill(
        status=422, content_type="application/json", body=json.dumps({"detail": detail})))
    page.fill("#model", "a*x^2 + b*x + c + d*x^3")
    until(page, f"{el('landscape-error')}.textContent.includes('cancelled')")
    assert page.text_content("#landscape-error") == f"landscape and slice: {detail}"
    for id in ("plot-landscape", "plot-slice"):      # blank, not the last model's
        assert page.evaluate(f"() => document.getElementById('{id}').data.length") == 0
        assert "see the message above" in page.text_content(f"#{id} .gtitle")
    page.unroute("**/api/landscape")
    page.select_option("#pa", "d")
    page.wait_for_function("() => document.querySelector('#plot-landscape .gtitle')?.textContent"
                           " === 'mae over d, b'")
    assert page.text_content("#landscape-error") == ""
    assert page.evaluate("() => document.getElementById('plot-slice').data.length") == 1


def test_csv_refusals_leave_the_menus_and_the_button_on_the_right_file(page, tmp_path):
    t, s, err = decay_rows(12)
    first = csv_file(tmp_path, "decay.csv", "t,signal,err,note",
                     [(a, b, c, "ok") for a, b, c in zip(t, s, err)])
    upload_in_page(page, first, 12)
    assert page.input_value("#csv-y") == "signal"
    # a column of words as y: refused, and the menus go back to the columns on the plot
    page.select_option("#csv-y", "note")
    until(page, f"{el('data-error')}.textContent.includes('not a number')")
    assert "the plot still shows decay.csv: y = signal" in page.text_content("#data-error")
    page.wait_for_function("() => document.getElementById('csv-y').value === 'signal'")
    # another file with gaps: its button sends its own question, not the last file's columns
    gaps = csv_file(tmp_path, "gaps.csv", "x,y",
                    [(i, "" if i in (3, 7) else 2 * i + 1) for i in range(10)])
    page.set_input_files("#csv", str(gaps))
    page.wait_for_selector("#btn-dropnan", state="visible")
    assert page.input_value("#csv-y") == "signal"       # still the columns on the plot
    page.click("#btn-dropnan")
    page.wait_for_function("() => document.getElementById('plot-data').data?.[0]?.x?.length === 8")
    assert "left out 2 row(s)" in page.text_content("#data-error")
    assert page.input_value("#csv-x") == "x" and page.input_value("#csv-y") == "y"


def test_show_code_runs_and_gives_the_pages_exact_fit(page, server, tmp_path):
    # the default model, of x, on a column named time (the script had said inputs=('time',))
    t, s, _ = decay_rows(25)
    path = csv_file(tmp_path, "decay.csv", "time,signal", zip(t, s))
    upload_in_page(page, path, 25)
    page.select_option("#loss", "mse")
    until(page, f"{el('exact-info')}.textContent.startsWith('exact optimum (auto (lm))')",
          timeout=20_000)
    shown = {k: float(v) for k, v in (kv.split("=") for kv in
             page.text_content("#exact-info").split(" at ")[1].split(", "))}
    page.click("#btn-code")
    page.wait_for_function("() => document.getElementById('code').textContent.includes('best =')")
    code = page.text_content("#code")
    assert "inputs=" not in code
    got = run_code(code)
    # the page's exact fit: its points, its start
    p0 = ast.literal_eval(code.split("p0 = ", 1)[1].split("\n", 1)[0])
    points = page.evaluate("() => ({x: document.getElementById('plot-data').data[0].x,"
                           " y: document.getElementById('plot-data').data[0].y, inputs: ['time']})")
    exact = api(server, "/api/exact", {"data": points, "model": QUAD, "loss": "mse", "p0": p0})
    assert got == pytest.approx(exact["params"], rel=1e-8)
    assert got == pytest.approx(shown, rel=1e-5)          # the 6 digits the page shows


def test_no_cloud_button_and_no_plotly_server(page):
    page.wait_for_function("() => document.getElementById('plot-landscape').data?.length > 1")
    for id in PLOTS:
        page.hover(f"#{id}")
        page.wait_for_selector(f"#{id} .modebar-btn")
        assert page.locator(f"#{id} [data-title='Share chart...']").count() == 0
        ctx = page.evaluate(f"() => {{ const c = document.getElementById('{id}')._context;"
                            " return [c.showSendToCloud, c.plotlyServerURL]; }")
        assert ctx == [False, ""]


BOX = """(sel) => { const e = document.querySelector(sel); if (!e) return null;
  const b = e.getBoundingClientRect();
  return b.width ? [b.left, b.top, b.right, b.bottom] : null; }"""


def overlap(a, b):
    return bool(a and b and a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])


@pytest.mark.parametrize("phone", [False, True])
def test_the_modebar_covers_no_title_and_the_legend_no_axis_title(browser, server, phone):
    kw = dict(viewport={"width": 390, "height": 844}, has_touch=True, is_mobile=True) if phone \
        else dict(viewport={"width": 1400, "height": 900})
    ctx = browser.new_context(**kw)
    pg = ctx.new_page()
    try:
        open_page(pg, server + "/#loss=mse&optimizer=gd&lr=0.1")
        pg.click("#btn-step")          # a title with the run's label on the loss plot
        until(pg, "document.querySelector('#plot-loss .gtitle')?.textContent.includes('judging')")
        pg.wait_for_function("() => document.querySelector('#plot-landscape .legend')")
        for id in PLOTS:
            pg.hover(f"#{id} .nsewdrag")
            pg.wait_for_selector(f"#{id} .modebar-btn")
            mb, title = pg.evaluate(BOX, f"#{id} .modebar"), pg.evaluate(BOX, f"#{id} .gtitle")
            assert mb and title and not overlap(mb, title), (id, mb, title)
        for id in ("plot-data", "plot-landscape"):
            legend, xtitle = pg.evaluate(BOX, f"#{id} .legend"), pg.evaluate(BOX, f"#{id} .xtitle")
            assert legend and xtitle and not overlap(legend, xtitle), (id, legend, xtitle)
    finally:
        ctx.close()


def test_a_diverging_run_plots_its_losses_and_the_label_says_diverged(page):
    page.select_option("#loss", "mse")
    page.evaluate("() => { const e = document.getElementById('lr'); e.value = '0';"
                  " e.dispatchEvent(new Event('change')); }")       # lr = 10^0
    page.wait_for_function("() => document.getElementById('lr-out').textContent === '1'")
    page.click("#btn-play")
    until(page, f"{el('run-status')}.textContent.startsWith('diverged')")
    page.wait_for_function("() => document.getElementById('plot-loss').data[0].y.length === 3")
    assert page.evaluate("() => document.getElementById('plot-loss').data[0].x") == [0, 1, 2]
    page.wait_for_function("() => document.querySelector('#plot-loss .gtitle').textContent"
                           ".endsWith('diverged at step 3')")


def test_a_lost_server_is_said_in_words(page):
    routes = []

    def hold(ws):
        ws.connect_to_server()
        routes.append(ws)
    page.route_web_socket("**/api/play", hold)
    page.select_option("#spf", "1")
    page.click("#btn-play")
    page.wait_for_function("() => Number(document.getElementById('step').textContent) >= 5")
    routes[0].close()               # the server's end goes away mid-run
    until(page, f"{el('run-error')}.textContent.startsWith('lost')")
    step = page.text_content("#step")
    assert page.text_content("#run-error") == \
        f"lost the connection to the gradfit server at step {step}"
    assert not page.text_content("#run-status").startswith("running")
    assert page.text_content("#btn-play") == "▶ play"
    page.route("**/api/**", lambda route: route.abort())             # the server is gone
    page.fill("#model", "a*x + b")
    page.wait_for_function("() => document.getElementById('model-error').textContent.length > 0")
    assert page.text_content("#model-error") == \
        "cannot reach the gradfit server (is `gradfit serve` still running?)"


def test_a_link_redraws_the_path_the_test_curve_and_the_column_menus(browser, server, tmp_path):
    t, s, err = decay_rows(30)
    path = csv_file(tmp_path, "decay.csv", "id,time,signal,err",
                    [(i, a, b, c) for i, (a, b, c) in enumerate(zip(t, s, err))])
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    a = ctx.new_page()
    errors = []
    a.on("pageerror", lambda e: errors.append(str(e)))
    try:
        open_page(a, server + "/")
        upload_in_page(a, path, 30)
        assert [a.input_value(f"#csv-{k}") for k in ("x", "y", "sigma")] == ["id", "signal", "err"]
        a.select_option("#csv-x", "time")
        until(a, f"{el('model-label')}.textContent === 'model of time'")
        a.fill("#model", "A*exp(-k*time)+C")
        a.wait_for_function("() => document.getElementById('pb').value === 'k'")
        a.select_option("#optimizer", "adam")
        a.select_option("#spf", "1")
        a.select_option("#test", "0.2")
        until(a, f"{el('test-value')}.textContent.startsWith('test')")
        for k in range(1, 9):
            a.click("#btn-step")
            until(a, f"{el('step')}.textContent === '{k}'")
        a.wait_for_function("() => document.getElementById('plot-loss').data[1]?.x.length === 9")
        a.wait_for_function("() => location.hash.includes('step=8')")
        a.wait_for_function("() => document.getElementById('plot-landscape').data[1].x.length >= 9")
        link = a.url
        b = ctx.new_page()
        b.on("pageerror", lambda e: errors.append(str(e)))
        open_page(b, link)
        until(b, f"{el('run-status')}.textContent === 'paused at step 8'", timeout=20_000)
        n = a.evaluate("() => document.getElementById('plot-landscape').data[1].x.length")
        until(b, f"{el('plot-landscape')}.data[1].x.length === {n}")
        pictures = (f"() => {{ const L = {el('plot-landscape')}.data, T = {el('plot-loss')}.data;"
                    " return {path: [L[1].x, L[1].y], start: [L[2].x, L[2].y],"
                    " test: T[1] && [T[1].x, T[1].y], loss: [T[0].x, T[0].y]}; }")
        pa, pb = a.evaluate(pictures), b.evaluate(pictures)
        for k in ("path", "loss", "test"):
            assert pb[k] is not None and len(pb[k][0]) == len(pa[k][0])
            assert pb[k][0] + pb[k][1] == pytest.approx(pa[k][0] + pa[k][1]), k
        assert len(pa["test"][0]) == len(pa["path"][0]) == 9        # steps 0 to 8
        # the path begins at the start marker
        first, start = [xy[0] for xy in pa["path"]], [xy[0] for xy in pa["start"]]
        assert first == pytest.approx(start)
        menus = [b.input_value(f"#csv-{k}") for k in ("x", "y", "sigma")]
        assert menus == ["time", "signal", "err"]
        options = b.evaluate(f"() => [...{el('csv-y')}.options].map(o => o.value)")
        assert options == ["id", "time", "signal", "err"]
    finally:
        ctx.close()
    assert not errors, errors


def test_a_parameter_typed_and_huber_delta_set_give_the_apis_numbers(page, server):
    from test_web_e2e import page_params, page_points, wait_title_is
    page.click("#out-a")
    page.fill("#out-a input", "2.5")
    page.press("#out-a input", "Enter")
    page.wait_for_function("() => document.getElementById('out-a').textContent === '2.5'")
    want = api(server, "/api/eval", {"data": page_points(page), "model": QUAD, "loss": "mae",
                                     "params": {**page_params(page), "a": 2.5}})["loss"]
    wait_title_is(page, want)
    assert page.is_hidden("#delta-row")
    page.select_option("#loss", "huber")
    page.wait_for_selector("#delta-row", state="visible")
    page.fill("#delta", "0.25")
    page.press("#delta", "Enter")
    page.wait_for_function("() => location.hash.includes('delta=0.25')")
    params = {**page_params(page), "a": 2.5}
    want = api(server, "/api/eval", {"data": page_points(page), "model": QUAD, "loss": "huber",
                                     "delta": 0.25, "params": params})["loss"]
    wait_title_is(page, want)
    page.click("#btn-code")
    until(page, f"{el('code')}.textContent.includes(\"loss='huber', delta=0.25\")")
