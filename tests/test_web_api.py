"""The playground's API, through FastAPI's test client: answers checked against the core,
every bad input refused with a 422 and a one-line message, runs streamed and cancelled."""
import math
import json
import warnings

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import gradfit
from gradfit.web.app import create_app
from gradfit.web.datasets import DATASETS
from gradfit.web.schemas import MAX_EXPR_LEN, MAX_POINTS, MAX_STEPS

QUAD = "a*x^2 + b*x + c"
START = {"a": 1.1, "b": 1.1, "c": 1.1}
WS = "ws://127.0.0.1/api/play"     # the Guard answers loopback Hosts only


def run_messages(ws, limit=10_000):
    """A run's messages to its end, each frame acknowledged as the page does."""
    out = []
    for _ in range(limit):
        m = ws.receive_json()
        out.append(m)
        if m["type"] != "frame":
            return out
        ws.send_json({"type": "ack", "seq": m["seq"]})
    raise AssertionError("the run did not end")


# ---------------------------------------------------------------- pages and registries

def test_page_static_and_plotly_are_served_locally(client):
    assert "gradfit playground" in client.get("/").text
    assert client.get("/static/main.js").status_code == 200
    js = client.get("/plotly.min.js")
    assert js.status_code == 200 and "plotly" in js.text[:2000].lower()
    assert client.get("/openapi.json").json()["info"]["title"] == "gradfit playground"


def test_meta_lists_the_registries_and_limits(client):
    m = client.get("/api/meta").json()
    assert set(m["losses"]) == set(gradfit.LOSSES)
    assert set(m["optimizers"]) == set(gradfit.OPTIMIZERS)
    assert list(m["datasets"])[0] == "lesson" and set(m["datasets"]) == set(DATASETS)
    assert m["limits"]["MAX_POINTS"] == MAX_POINTS
    assert {"gd", "sgd", "momentum", "adam", "lbfgs", "lm", "auto"} <= set(m["page_optimizers"])


@pytest.mark.parametrize("name", list(DATASETS))
def test_every_dataset_makes_points(client, name):
    d = DATASETS[name]
    r = client.post("/api/data", json={"name": name, "n": d.n, "seed": 1})
    assert r.status_code == 200
    body = r.json()
    assert len(body["x"]) == len(body["y"]) == d.n


def test_lesson_dataset_is_the_lessons_data(client, pts):
    body = client.post("/api/data", json={"name": "lesson"}).json()
    assert body["x"] == pts["x"] and body["y"] == pts["y"]


# ---------------------------------------------------------------- numbers from the core

def test_eval_gives_the_lessons_mae_and_gradient(client, pts):
    r = client.post("/api/eval", json={"data": pts, "model": QUAD, "loss": "mae", "params": START})
    assert r.status_code == 200
    body = r.json()
    value, grad = gradfit.loss_and_grad(QUAD, pts["x"], pts["y"], START, loss="mae")
    assert body["loss"] == pytest.approx(value) and round(body["loss"], 4) == 2.4219
    assert body["grad"] == pytest.approx(grad)
    assert len(body["curve"]["x"]) == len(body["curve"]["y"]) == 200
    assert body["distance"] is None


def test_eval_reports_distance_and_relu_parts(client, pts):
    info = client.post("/api/model", json={"model": "relu:3", "data": pts}).json()
    assert info["param_names"] == ["m1", "b1", "m2", "b2", "m3", "b3", "c"]
    p = info["initial"]
    opt = {k: v + (3.0 if k == "c" else 0.0) for k, v in p.items()}
    body = client.post("/api/eval", json={"data": pts, "model": "relu:3", "loss": "mse",
                                          "params": p, "optimum": opt, "curve_points": 11}).json()
    assert len(body["curve"]["parts"]) == 3 and len(body["curve"]["parts"][0]) == 11
    assert body["distance"] == pytest.approx(3.0)


def test_exact_is_the_auto_fit(client, pts):
    body = client.post("/api/exact", json={"data": pts, "model": QUAD, "loss": "mse"}).json()
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mse", optimizer="auto")
    assert body["params"] == pytest.approx(ref.params) and body["converged"]
    assert body["optimizer"].startswith("auto")


def test_landscape_grid_and_slice(client, pts):
    r = client.post("/api/landscape", json={"data": pts, "model": QUAD, "loss": "mae",
                                            "params": START, "names": ["a", "b"], "slice": "c",
                                            "resolution": 5, "span": 1.0})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["grid"]["names"] == ["a", "b"]
    assert round(body["grid"]["loss"][2][2], 4) == 2.4219      # the centre is the lesson's guess
    assert body["slice"]["name"] == "c" and len(body["slice"]["values"]) >= 5


def test_a_landscape_that_is_too_much_work_is_refused(client):
    n = 40_000
    pts = {"x": [i / n for i in range(n)], "y": [0.0] * n}
    r = client.post("/api/landscape", json={"data": pts, "model": QUAD, "loss": "mae",
                                            "params": START, "names": ["a", "b"],
                                            "resolution": 201})
    assert r.status_code == 422 and "too much work" in r.json()["detail"]


def test_code_snippet_runs_and_rebuilds_the_data(client):
    code = client.post("/api/code", json={"data": {"name": "outliers", "n": 30, "mult": 0.0,
                                                   "add": 0.3, "seed": 42},
                                          "model": "a*x + b", "loss": "mae", "optimizer": "gd",
                                          "lr": 0.01, "steps": 5}).json()["code"]
    scope: dict = {}
    exec(compile(code, "snippet", "exec"), scope)       # noqa: S102 - our own snippet
    d = DATASETS["outliers"].make(30, 0.0, 0.3, 42)
    assert scope["y"].tolist() == d.y.tolist()
    assert scope["result"].steps == 5


# ---------------------------------------------------------------- bad input: 422 + message

BAD = [
    ("/api/eval", {"model": "a*x^2 +", "params": START}, "column"),
    ("/api/eval", {"model": "__import__('os').system('x')", "params": {}}, ""),
    ("/api/eval", {"model": "a*x + q(x)", "params": {"a": 1}}, "unknown function"),
    ("/api/eval", {"model": QUAD, "params": {"a": 1}}, "parameters"),
    ("/api/eval", {"model": QUAD, "params": {**START, "zz": 1}}, "parameters"),
    ("/api/eval", {"model": QUAD, "params": START, "loss": "cubic"}, "unknown loss"),
    ("/api/eval", {"model": "x" * (MAX_EXPR_LEN + 1), "params": {}}, "model"),
    ("/api/eval", {"model": "", "params": {}}, "model"),
    ("/api/eval", {"model": "mlp:100,100", "params": {}}, "too many parameters"),
    ("/api/eval", {"model": "3*x + 1", "params": {}}, "no parameters"),
    ("/api/eval", {"model": QUAD, "params": START, "surprise": 1}, "surprise"),
    ("/api/landscape", {"model": QUAD, "params": START, "names": ["a", "zz"]}, "unknown parameter"),
    ("/api/landscape", {"model": QUAD, "params": START, "names": ["a", "a"]}, "parameters"),
    ("/api/landscape", {"model": QUAD, "params": START}, "nothing to compute"),
    ("/api/landscape", {"model": QUAD, "params": START, "names": ["a", "b"], "resolution": 10_000},
     "resolution"),
    ("/api/exact", {"model": "a*x^^2"}, ""),
    ("/api/model", {"model": "relu:0"}, "ReLU"),
    ("/api/model", {"model": "poly:x"}, "poly"),
]


@pytest.mark.parametrize("path,body,words", BAD)
def test_bad_requests_get_422_with_a_message(client, pts, path, body, words):
    body = {**body, "data": pts} if path != "/api/model" else body
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail
    assert words.lower() in detail.lower()


def test_bad_data_is_refused(client, pts):
    too_many = {"x": [0.0] * (MAX_POINTS + 1), "y": [0.0] * (MAX_POINTS + 1)}
    for data, words in [({"x": [1, 2], "y": [1]}, "differ in length"),
                        ({"x": [], "y": []}, "at least 1"),
                        ({"x": [1, "a"], "y": [1, 2]}, "number"),
                        (too_many, "at most"),
                        ({"x": [1, float("inf")], "y": [1, 2]}, "finite")]:
        body = json.dumps({"data": data, "model": QUAD, "params": START})   # NaN/inf literals
        r = client.post("/api/eval", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, data if len(str(data)) < 100 else words
        assert words in r.json()["detail"]


def test_bad_dataset_requests(client):
    assert "unknown dataset" in client.post("/api/data", json={"name": "nope"}).json()["detail"]
    for body in ({"n": 0}, {"n": MAX_POINTS + 1}, {"mult": -1}, {"seed": -3}):
        assert client.post("/api/data", json=body).status_code == 422


def test_bad_json_body(client):
    r = client.post("/api/eval", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


# ---------------------------------------------------------------- CSV upload

def upload(client, text, **form):
    return client.post("/api/csv", files={"file": ("data.csv", text.encode(), "text/csv")}, data=form)


def test_csv_upload_and_column_choice(client):
    text = "t,signal,other\n0,1,5\n1,3,6\n2,5,7\n"
    body = upload(client, text).json()
    assert body["columns"] == ["t", "signal", "other"]
    assert body["x_name"] == "t" and body["y_name"] == "other"
    body = upload(client, text, x="t", y="signal").json()
    assert body["x"] == [0, 1, 2] and body["y"] == [1, 3, 5]


@pytest.mark.parametrize("text,form,words", [
    ("", {}, "empty file"),
    ("x,y\n1,2\n3,oops\n", {}, "not a number"),
    ("x,y\n1,2\n3\n", {}, "cells"),
    ("x,y\n", {}, "no data rows"),
    ("x,y\n1,2\n", {"y": "zz"}, "no column named 'zz'"),
    ("x\n1\n", {}, "only one column"),
    ("a,b,c,d\n1,2,3,4\n", {"x": "a,b,c"}, "one or two input columns"),
])
def test_malformed_csv_gets_422(client, text, form, words):
    r = upload(client, text, **form)
    assert r.status_code == 422
    assert words in r.json()["detail"]


def test_binary_upload_is_refused(client):
    r = client.post("/api/csv", files={"file": ("x.csv", b"\x80\x81\x00\x01", "text/csv")})
    assert r.status_code == 422 and "UTF-8" in r.json()["detail"]


# ---------------------------------------------------------------- streaming runs

def start(pts, **kw):
    body = {"type": "start", "data": pts, "model": QUAD, "loss": "mae", "optimizer": "gd",
            "lr": 0.01, "steps": 50, "p0": START, "steps_per_frame": 10, "paced": False}
    body.update(kw)
    return body


def test_run_streams_the_same_numbers_as_fit(client, pts):
    with client.websocket_connect(WS) as ws:
        ws.send_json(start(pts))
        msgs = run_messages(ws)
    frames, done = msgs[:-1], msgs[-1]
    assert done["type"] == "done" and done["reason"] == "max_steps" and done["steps_done"] == 50
    losses = [v for f in frames for v in f["losses"]]
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="gd", lr=0.01, steps=50,
                      p0=START)
    assert losses == pytest.approx(ref.history[:50].tolist())
    assert done["params"] == pytest.approx(ref.params)
    assert [f["step"] for f in frames] == [9, 19, 29, 39, 49]
    assert frames[0]["first_step"] == 0 and len(frames[0]["curve"]["y"]) == 200
    assert done["label"] is None and done["judged"] == 50     # judged on 200 steps, not 50


def test_run_step_offset_and_distance(client, pts):
    with client.websocket_connect(WS) as ws:
        ws.send_json(start(pts, steps=1, step_offset=7, optimum={"a": 1.1, "b": 1.1, "c": 2.1}))
        done = run_messages(ws)[-1]
    assert done["step"] == 8 and done["distance"] is not None


def test_run_cancel(client, pts):
    with client.websocket_connect(WS) as ws:
        ws.send_json(start(pts, steps=MAX_STEPS, steps_per_frame=5, paced=True))
        assert ws.receive_json()["type"] == "frame"
        ws.send_text("cancel")
        msgs = run_messages(ws)
    done = msgs[-1]
    assert done["type"] == "done" and done["reason"] == "cancelled"
    assert 0 < done["steps_done"] < MAX_STEPS


def test_run_changes_lr_and_loss_without_a_reset(client, pts):
    with client.websocket_connect(WS) as ws:
        ws.send_json(start(pts, steps=MAX_STEPS, steps_per_frame=5, paced=True))
        first = m = ws.receive_json()
        ws.send_json({"type": "set", "lr": 0.002, "loss": "mse"})
        seen = None
        for _ in range(200):
            ws.send_json({"type": "ack", "seq": m["seq"]})
            m = ws.receive_json()
            if m["lr"] == 0.002 and m["loss_name"] == "mse":
                seen = m
                break
        assert seen is not None
        assert seen["step"] > first["step"]              # the step count goes on
        ws.send_text("cancel")
        done = run_messages(ws)[-1]
    assert done["reason"] == "cancelled" and done["loss_name"] == "mse"


def test_run_bad_start_messages(client, pts):
    for body, words in [(start(pts, model="a*x^"), "column"),
                        (start(pts, optimizer="magic"), "unknown optimizer"),
                        (start(pts, steps=MAX_STEPS + 1), "steps"),
                        (start(pts, lr=-1), "lr"),
                        (start(pts, p0={"zz": 1.0}), "zz")]:
        with client.websocket_connect(WS) as ws:
            ws.send_json(body)
            m = ws.receive_json()
        assert m["type"] == "error" and words in m["detail"], (m, words)


def test_busy_when_the_run_limit_is_reached(pts):
    with TestClient(create_app(max_runs=1), base_url="http://127.0.0.1") as c:
        with c.websocket_connect(WS) as ws1:
            ws1.send_json(start(pts, steps=MAX_STEPS, steps_per_frame=5, paced=True))
            assert ws1.receive_json()["type"] == "frame"
            with c.websocket_connect(WS) as ws2:
                ws2.send_json(start(pts))
                m = ws2.receive_json()
            assert m["type"] == "busy" and "busy" in m["detail"]
            ws1.send_text("cancel")
            run_messages(ws1)
        with c.websocket_connect(WS) as ws3:        # free again
            ws3.send_json(start(pts, steps=3))
            assert run_messages(ws3)[-1]["type"] == "done"


def test_a_run_stops_when_its_client_goes_away(pts):
    app = create_app(max_runs=1)
    with TestClient(app, base_url="http://127.0.0.1") as c:
        with c.websocket_connect(WS) as ws:
            ws.send_json(start(pts, steps=MAX_STEPS, steps_per_frame=5, paced=True))
            ws.receive_json()
        import time
        deadline = time.time() + 5
        while app.state.runs.active and time.time() < deadline:
            time.sleep(0.02)
        assert app.state.runs.active == 0


def test_model_lists_constants_apart_from_parameters(client):
    info = client.post("/api/model", json={"model": "a*x^2 + b*x + e"}).json()
    assert info["param_names"] == ["a", "b"] and info["constants"] == {"e": pytest.approx(math.e)}
    assert client.post("/api/model", json={"model": "a*x"}).json()["constants"] == {}
