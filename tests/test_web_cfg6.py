"""The web's faces of the one FitConfig (the API, "Show code", the page's URL form) against
the Python API: the page's answer for a config and data is ``gradfit.fit``'s for the same.

- "Show code" writes numbers that Python reads back bit for bit (data of 1e-11 had been
  rounded to zeros) and every setting of the config (options had been left out): running
  the snippet gives the page's numbers;
- the run (``/api/play``) takes every FitConfig field the page can run and equals
  ``gradfit.fit`` with them; the exact fit takes the bounds and fixed values;
- the API's limits and defaults are the settings table's (OpenAPI included);
- the page's state module (``static/state.js``, under node) reads a link by the table's
  rows (steps=0 is a config, seed 2**32 is not), says a key given twice, and the
  all-default config has a link of its own;
- a model that overflows at large x is said to overflow, with "rescale x", in Python and
  through the API (it had been called a division by zero).
"""
import contextlib
import io
import json
import math
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import numpy as np
import pytest

pytest.importorskip("fastapi")

import gradfit
from gradfit.config import FitConfig
from gradfit.settings import SETTINGS
from gradfit.web import schemas
from gradfit.web.pagemeta import CONFIG_KEYS, page_hash

ROOT = Path(__file__).resolve().parents[1]
NODE = shutil.which("node")
QUAD = "a*x^2 + b*x + c"
LINE = "a*x + b"
PLAY = "ws://127.0.0.1/api/play"


def run(client, body) -> dict:
    """The done message of a run of ``body`` (no frames)."""
    with client.websocket_connect(PLAY) as ws:
        ws.send_json({"type": "start", "frames": False, "paced": False, **body})
        while True:
            m = ws.receive_json()
            if m["type"] not in ("frame", "warning"):
                return m


def exec_snippet(code: str) -> dict:
    namespace: dict = {}
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(code, "<show code>", "exec"), namespace)
    return namespace


def data(kind: str):
    rng = np.random.default_rng(7)
    x = np.linspace(0, 1, 12)
    if kind == "tiny":          # nanovolt-scale data: 10 decimals had made them all 0
        return x, 3e-11 * x + 1e-11 + 1e-13 * rng.standard_normal(12)
    if kind == "huge":
        return x * 1e9 + 1.7e9, 2.5e20 * x + 1e19 + 1e17 * rng.standard_normal(12)
    return x * 3 - 1, 2 * x + 1 / 3 + 0.1 * rng.standard_normal(12)


# ------------------------------------------------------------------ 1. Show code
@pytest.mark.parametrize("kind", ["tiny", "huge", "ordinary"])
def test_show_codes_snippet_fits_the_pages_data_and_gives_its_numbers(client, kind):
    x, y = data(kind)
    pts = {"x": x.tolist(), "y": y.tolist()}
    p0 = {"a": float(np.polyfit(x, y, 1)[0]) * 1.3, "b": float(y.mean())}
    body = {"model": LINE, "loss": "mse", "optimizer": "lbfgs", "steps": 30, "p0": p0}
    r = client.post("/api/code", json={**body, "points": pts})
    assert r.status_code == 200, r.text
    ns = exec_snippet(r.json()["code"])
    assert ns["x"] == pts["x"] and ns["y"] == pts["y"]          # bit for bit
    exact = client.post("/api/exact", json={"data": pts, "model": LINE, "p0": p0}).json()
    assert ns["best"].params == exact["params"]
    done = run(client, {"data": pts, **body})
    assert ns["result"].params == done["params"]
    ref = gradfit.fit(LINE, x, y, optimizer="auto", p0=p0)
    assert ns["best"].params == ref.params
    assert ref.params["a"] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-6)


def test_show_code_writes_every_setting_and_the_snippet_runs_the_pages_run(client, pts):
    config = dict(loss="huber", delta=0.5, optimizer="momentum", lr=0.02, steps=200,
                  p0={"a": 1.1, "b": 1.1}, seed=3, schedule="cosine",
                  bounds={"a": [0, 2.5], "b": [None, 5]}, fixed={"c": 1.0},
                  options={"momentum": 0.5, "nesterov": True}, dtype="float32",
                  ftol=1e-9, divergence=None)
    r = client.post("/api/code", json={"model": QUAD, **config, "device": "cpu",
                                       "points": pts})
    assert r.status_code == 200, r.text
    code = r.json()["code"]
    for words in ("schedule='cosine'", "momentum=0.5", "nesterov=True", "dtype='float32'",
                  "bounds={'a': (0.0, 2.5), 'b': (None, 5.0)}", "fixed={'c': 1.0}",
                  "divergence=float('inf')", "ftol=1e-09", "delta=0.5", "seed=3"):
        assert words in code, code
    ns = exec_snippet(code)
    done = run(client, {"data": pts, "model": QUAD, **config})
    assert ns["result"].params == done["params"]
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], **{k: v for k, v in config.items()
                                                   if k not in ("options", "bounds",
                                                                "divergence")},
                      bounds={"a": (0, 2.5), "b": (None, 5)}, divergence=math.inf,
                      momentum=0.5, nesterov=True)
    assert done["params"] == ref.params and done["reason"] == ref.reason


def test_show_code_keeps_the_weight_decay(client):
    r = client.post("/api/code", json={"model": QUAD, "optimizer": "adamw", "lr": 0.05,
                                       "options": {"weight_decay": 0.1}})
    code = r.json()["code"]
    assert "weight_decay=0.1" in code
    ns = exec_snippet(code)
    assert ns["result"].params == gradfit.fit(QUAD, ns["x"], ns["y"], optimizer="adamw", lr=0.05,
                                              weight_decay=0.1).params


def test_show_code_refuses_what_the_table_refuses_in_its_voice(client):
    r = client.post("/api/code", json={"model": QUAD, "optimizer": "momentum",
                                       "options": {"momentum": 1.5}})
    assert r.status_code == 422
    assert r.json()["detail"] == "bad momentum: expected a finite number, 0 <= momentum < 1, got 1.5"
    r = client.post("/api/code", json={"model": QUAD, "optimizer": "adam",
                                       "options": {"momentum": 0.5}})
    assert r.status_code == 422 and "does not take momentum" in r.json()["detail"]


# ------------------------------------------------------------------ 2. the run's config
CONFIGS = [
    dict(optimizer="momentum", lr=0.01, steps=150, schedule="cosine", bounds={"a": [0, 2]},
         fixed={"c": 1.0}, options={"momentum": 0.5, "nesterov": True}),
    dict(optimizer="adam", lr=0.05, steps=120, schedule="onecycle", dtype="float32",
         options={"weight_decay": 0.2}),
    dict(optimizer="sgd", lr=0.01, steps=80, seed=5, options={"batch_size": 7, "momentum": 0.3}),
    dict(optimizer="gd", lr=0.02, steps=400, ftol=1e-6, gtol=1e-3, divergence=None,
         options={"accumulate_grad": True}),
    dict(optimizer="lbfgs", steps=20, starts=3, bounds={"b": [None, 1.5]},
         options={"history_size": 4, "max_iter": 5}),
    dict(loss="mse", optimizer="lm", steps=50, fixed={"a": 3.0}, absolute_sigma=True),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["optimizer"])
def test_the_run_is_gradfit_fit_with_every_field_of_its_config(client, pts, config):
    body = {"loss": "mae", "p0": {"a": 1.1, "b": 1.1, "c": 1.1}, **config}
    done = run(client, {"data": pts, "model": QUAD, **body})
    assert done["type"] == "done", done
    kw = dict(body)
    kw.update(kw.pop("options", {}))
    if "divergence" in kw:
        kw["divergence"] = math.inf
    if "bounds" in kw:
        kw["bounds"] = {k: tuple(v) for k, v in kw["bounds"].items()}
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], **kw)
    assert done["params"] == ref.params
    assert (done["reason"], done["steps_done"]) == (ref.reason, ref.steps)


def test_a_run_refuses_an_option_its_optimizer_does_not_take_and_a_weight_decay_past_the_table(
        client, pts):
    bad = run(client, {"data": pts, "model": QUAD, "optimizer": "adam",
                       "options": {"momentum": 0.5}})
    assert bad["type"] == "error" and "does not take momentum" in bad["detail"]
    bad = run(client, {"data": pts, "model": QUAD, "optimizer": "adam", "weight_decay": 5})
    assert bad["type"] == "error" and "weight_decay" in bad["detail"]


def test_the_exact_fit_takes_the_runs_bounds_and_fixed_values(client, pts):
    body = {"model": QUAD, "loss": "mae", "bounds": {"a": [0, 2]}, "fixed": {"c": 1.0},
            "p0": {"a": 1.1, "b": 1.1}}
    got = client.post("/api/exact", json={"data": pts, **body}).json()
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", bounds={"a": (0, 2)},
                      fixed={"c": 1.0}, p0={"a": 1.1, "b": 1.1})
    assert got["params"] == ref.params and got["params"]["c"] == 1.0


# ------------------------------------------------------------------ 3. limits and defaults
def _props(schema: dict) -> dict:
    return schema.get("properties", {})


def _value_schema(prop: dict) -> dict:
    if "anyOf" in prop:
        return next(p for p in prop["anyOf"] if p.get("type") != "null")
    return prop


def test_the_openapi_schemas_limits_and_defaults_are_the_tables(client):
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    seen = set()
    for model, schema in spec.items():
        for name, prop in _props(schema).items():
            row = SETTINGS.get(schemas.ALIASES.get(name, name))
            if row is None or row.kind == "map":
                continue
            seen.add((model, name))
            p = _value_schema(prop)
            low = p.get("exclusiveMinimum", p.get("minimum"))
            high = p.get("exclusiveMaximum", p.get("maximum"))
            assert low == row.low and ("exclusiveMinimum" in p) == (row.low_open and
                                                                    row.low is not None), (model, name)
            assert high == row.high and ("exclusiveMaximum" in p) == (row.high_open and
                                                                      row.high is not None), (model, name)
            if row.choices is not None:
                assert p["enum"] == row.names(), (model, name)
            data_seed = name == "seed" and model in ("DataIn", "CodeData")   # the data's own
            if "default" in prop and not data_seed and name != "model":
                assert prop["default"] == row.default, (model, name)
    assert {("ExactIn", "steps"), ("ExactIn", "loss"), ("CodeIn", "optimizer"),
            ("CodeIn", "steps"), ("CodeIn", "schedule"), ("CodeIn", "dtype"),
            ("EvalIn", "test_fraction")} <= seen


def test_the_runs_fields_are_the_tables_too():
    from gradfit.web.play import PlayIn
    for name, field in PlayIn.model_fields.items():
        row = SETTINGS.get(name)
        if row is None or row.kind == "map" or name == "model":     # the model: required
            continue
        assert field.default == row.default, name
        bounds = {type(m).__name__: m for m in field.metadata}
        for key, attr in (("Ge", "ge"), ("Gt", "gt"), ("Le", "le"), ("Lt", "lt")):
            if key in bounds:
                value = getattr(bounds[key], attr)
                assert value == (row.low if attr[0] == "g" else row.high), name
                assert (attr in ("gt", "lt")) == (row.low_open if attr[0] == "g" else row.high_open)


def test_requests_that_leave_settings_out_run_pythons_defaults(client, pts):
    exact = client.post("/api/exact", json={"data": pts, "model": QUAD}).json()
    ref = gradfit.fit(QUAD, pts["x"], pts["y"])
    assert exact["params"] == ref.params and exact["optimizer"] == ref.optimizer
    done = run(client, {"data": pts, "model": LINE, "p0": {"a": 1.0, "b": 0.5}})
    ref = gradfit.fit(LINE, pts["x"], pts["y"], p0={"a": 1.0, "b": 0.5})
    assert done["params"] == ref.params and done["result"]["optimizer"] == ref.optimizer
    code = client.post("/api/code", json={"model": QUAD}).json()["code"]
    call = " ".join(code.split("result = ")[1].split("print(")[0].split())
    assert "loss='mse', optimizer='auto', lr=None, steps=1000, seed=0, p0=p0)" in call


def test_a_run_of_zero_steps_is_the_start_as_in_python(client, pts):
    p0 = {"a": 1.1, "b": 1.1, "c": 1.1}
    done = run(client, {"data": pts, "model": QUAD, "optimizer": "gd", "lr": 0.01,
                        "steps": 0, "p0": p0})
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], optimizer="gd", lr=0.01, steps=0, p0=p0)
    assert done["params"] == ref.params == p0 and done["steps_done"] == 0


# ------------------------------------------------------------------ 4. the page's URL form
def state_js(meta: dict, script: str):
    """Run ``script`` (a module body with ``meta`` and the state module's exports) under node."""
    head = ("import * as st from './src/gradfit/web/static/state.js';\n"
            "const meta = JSON.parse(process.argv[1]);\n")
    r = subprocess.run([NODE, "--input-type=module", "-e", head + script, json.dumps(meta)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


@needs_node
def test_the_pages_link_reads_each_field_by_the_tables_row(client):
    meta = client.get("/api/meta").json()
    config = FitConfig(model=QUAD, loss="mae", optimizer="momentum", lr=0.01, steps=0,
                       schedule="cosine", bounds={"a": (0, 2), "b": (None, 3)},
                       fixed={"c": 1}, dtype="float32", seed=2**32 - 1, divergence=math.inf,
                       options={"momentum": 0.5, "nesterov": True}, ftol=1e-9,
                       absolute_sigma=True, starts=2, time_limit=30.0, device="cuda")
    out = state_js(meta, f"""
      const notes = [];
      const s = st.decode('#' + {json.dumps(config.to_query())}, meta, notes);
      console.log(JSON.stringify({{query: st.encode(s, meta), notes, divergence: String(s.divergence),
                                  steps: s.steps, seed: s.seed}}));""")
    assert out["notes"] == [] and out["steps"] == 0 and out["seed"] == 2**32 - 1
    run_part = urlencode([(k, v) for k, v in parse_qsl(out["query"]) if k in CONFIG_KEYS])
    assert FitConfig.from_query(run_part) == config and out["divergence"] == "Infinity"


@needs_node
def test_the_page_refuses_what_the_table_refuses_and_says_so(client):
    meta = client.get("/api/meta").json()
    out = state_js(meta, """
      const notes = [];
      const s = st.decode('#seed=4294967296&test=0.95&lr=0.1&lr=5&steps=-1&options={"momentum":1}&x=1', meta, notes);
      console.log(JSON.stringify({notes, seed: s.seed, test: s.test, lr: s.lr, steps: s.steps, options: s.options}));""")
    assert (out["seed"], out["test"], out["lr"], out["steps"], out["options"]) == (0, 0, None, 1000, {})
    text = "\n".join(out["notes"])
    assert "the link gives lr 2 times: expected each key once" in text
    assert "bad seed in the link: expected a whole number (0 ≤ seed ≤ 4294967295)" in text
    assert "bad test in the link: expected a finite number (0 ≤ test_fraction ≤ 0.9)" in text
    assert "options.momentum: a finite number (0 ≤ momentum < 1)" in text
    assert "\"x\" is no setting of the page" in text


@needs_node
def test_the_all_default_configs_link_is_not_the_lessons(client):
    meta = client.get("/api/meta").json()
    assert page_hash(FitConfig()) == "step=0"
    assert page_hash(FitConfig(loss="mae")) == "loss=mae"
    out = state_js(meta, """
      const d = st.decode('#step=0', meta), lesson = st.decode('', meta);
      const s = { ...st.initial(meta), ...meta.config_defaults };
      console.log(JSON.stringify({d: [d.loss, d.optimizer, d.lr, d.steps, d.p0],
                                  lesson: [lesson.loss, lesson.optimizer], enc: st.encode(s, meta),
                                  back: st.decode('#' + st.encode(s, meta), meta).loss}));""")
    assert out["d"] == ["mse", "auto", None, 1000, {}]
    assert out["lesson"] == ["mae", "gd"]
    assert out["enc"] == "step=0" and out["back"] == "mse"


# ------------------------------------------------------------------ 5. overflow at large x
def test_an_overflow_at_large_x_is_said_as_one_with_rescale_x():
    x = np.linspace(1, 2, 10) * 1e200
    r = gradfit.fit(QUAD, x, np.linspace(1, 2, 10))
    assert r.reason == "diverged"
    assert "the model overflows float64 at x = 1e+200 (point 1 and 9 other point(s))" in r.message
    assert "rescale x (e.g. x/1e200" in r.message and "division by zero" not in r.message
    r = gradfit.fit("a*exp(x) + b", [1000.0, 800.0, 1, 2, 3], [1.0, 2, 3, 4, 5])
    assert "overflows float64 at x = 1000 (point 1 and 1 other point(s))" in r.message
    r = gradfit.fit(QUAD, np.array([1.0, 2, 3, 4e20]), np.ones(4), dtype="float32")
    assert "overflows float32 at x = 4e+20 (point 4)" in r.message
    # a point where the model is undefined stays so, at any scale of x
    r = gradfit.fit("a/x + b", [0.0, 1, 2, 3], [1.0, 2, 3, 4])
    assert "undefined there (a division by zero" in r.message and "overflows" not in r.message
    r = gradfit.fit("a*log(x) + b", [-1.0, 1, 2, 3], [1.0, 2, 3, 4])
    assert "not finite at point 1 (x = -1) whatever its parameters: it is undefined" in r.message
    # a pole at x = 1 is no overflow of x's scale (the general advice, as before)
    r = gradfit.fit("a/(x - 1) + b", [1.0, 2, 3, 4], [1.0, 2, 3, 4])
    assert "overflows float64 at x" not in r.message


def test_the_pages_exact_fit_and_run_say_the_overflow(client):
    x = (np.linspace(1, 2, 10) * 1e200).tolist()
    body = {"data": {"x": x, "y": np.linspace(1, 2, 10).tolist()}, "model": QUAD}
    exact = client.post("/api/exact", json={**body, "loss": "mse"}).json()
    assert exact["reason"] == "diverged"
    assert "overflows float64 at x = 1e+200" in exact["message"]
    assert "rescale x" in exact["message"]
    done = run(client, {**body, "optimizer": "gd", "lr": 0.01, "steps": 5,
                        "p0": {"a": 1.0, "b": 1.0, "c": 1.0}})
    assert "overflows float64 at x = 1e+200" in done["message"]
