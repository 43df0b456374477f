"""The page's runs (``/api/play``): the same numbers as ``fit``, flow control, pause and step
inside one run, changes kept with the step they apply from and replayed, held-out points."""

import numpy as np
import pytest

pytest.importorskip("fastapi")

import gradfit
from gradfit.holdout import holdout_mask
from gradfit.web.play import LABEL_WINDOW, WINDOW

QUAD = "a*x^2 + b*x + c"
PLAY = "ws://127.0.0.1/api/play"
START = {"a": 1.1, "b": 1.1, "c": 1.1}


def start(pts, **kw):
    body = {"type": "start", "data": pts, "model": QUAD, "loss": "mae", "optimizer": "gd",
            "lr": 0.01, "steps": 50, "p0": START, "steps_per_frame": 10, "paced": False}
    body.update(kw)
    return body


def drain(ws, ack=True, limit=100_000):
    out = []
    for _ in range(limit):
        m = ws.receive_json()
        out.append(m)
        if m["type"] == "frame" and ack:
            ws.send_json({"type": "ack", "seq": m["seq"]})
        if m["type"] not in ("frame", "warning"):
            return out
    raise AssertionError("the run did not end")


def pause(ws, m):
    """Ask to pause after frame ``m``, acknowledging frames until one says paused."""
    ws.send_json({"type": "pause"})
    ws.send_json({"type": "ack", "seq": m["seq"]})
    while not m.get("paused"):
        m = ws.receive_json()
        ws.send_json({"type": "ack", "seq": m["seq"]})
    return m


def test_frames_are_the_fit_loops_records(client, pts):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts))
        msgs = drain(ws)
    frames, done = msgs[:-1], msgs[-1]
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="gd", lr=0.01, steps=50,
                      p0=START)
    assert [v for f in frames for v in f["losses"]] == pytest.approx(ref.history[:50].tolist())
    assert [f["step"] for f in frames] == [9, 19, 29, 39, 49]
    assert [f["seq"] for f in frames] == list(range(5))
    # frame k shows the state after `step` steps: the trajectory's point and its loss
    assert frames[1]["params"] == pytest.approx(dict(zip("abc", ref.trajectory[19])))
    assert frames[1]["loss"] == pytest.approx(ref.history[19])
    assert done["step"] == 50 and done["params"] == pytest.approx(ref.params)


def test_the_run_waits_for_the_page(client, pts):
    """Without acks the server sends WINDOW + 1 frames and then nothing more."""
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, steps=10_000, steps_per_frame=1))
        got = [ws.receive_json() for _ in range(WINDOW + 1)]
        assert [m["seq"] for m in got] == list(range(WINDOW + 1))
        ws.send_json({"type": "pause"})
        m = ws.receive_json()                 # the pause is answered with the state it holds
        assert m["type"] == "frame" and m["paused"] and m["step"] == got[-1]["step"]
        ws.send_text("cancel")
        done = drain(ws, ack=False)[-1]
    assert done["reason"] == "cancelled" and done["step"] <= WINDOW + 2


def test_pause_and_step_keep_adams_state(client, pts):
    """Pausing, stepping and playing on is one run: Adam's moments are kept, so the
    result is the uninterrupted fit's."""
    body = start(pts, optimizer="adam", lr=0.05, steps=40, steps_per_frame=5)
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="adam", lr=0.05,
                      steps=40, p0=START)
    with client.websocket_connect(PLAY) as ws:
        ws.send_json({**body, "steps_per_frame": 1})
        m = ws.receive_json()
        m = pause(ws, m)
        at = m["step"]
        ws.send_text("step")
        m = ws.receive_json()
        assert m["paused"] and m["step"] == at + 1
        assert m["params"] == pytest.approx(dict(zip("abc", ref.trajectory[at + 1])))
        ws.send_json({"type": "ack", "seq": m["seq"]})
        ws.send_text("play")
        done = drain(ws)[-1]
    assert done["params"] == pytest.approx(ref.params, rel=1e-12)


def test_a_new_lr_keeps_the_optimizer_and_replays(client, pts):
    """lr changes at a step of the page's choosing; the change is reported with its step
    and replaying it gives the same numbers (a link reproduces the run)."""
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, optimizer="momentum", steps=60, steps_per_frame=1))
        m = ws.receive_json()
        m = pause(ws, m)
        ws.send_json({"type": "set", "lr": 0.002})
        ws.send_text("play")
        done = drain(ws)[-1]
    changes = done["changes"]
    assert changes == [{"step": m["step"] + 1, "lr": 0.002}] and done["lr"] == 0.002
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, optimizer="momentum", steps=60, changes=changes, frames=False))
        again = drain(ws)[-1]
    assert again["params"] == done["params"] and again["loss"] == done["loss"]
    # momentum's velocity was kept: not the same as restarting the optimizer at that step
    k = changes[0]["step"]
    first = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="momentum", lr=0.01,
                        steps=k, p0=START)
    restarted = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="momentum",
                            lr=0.002, steps=60 - k, p0=first.params)
    assert done["params"] != pytest.approx(restarted.params, rel=1e-9)


def test_a_new_optimizer_goes_on_from_the_current_point(client, pts):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, steps=30, changes=[{"step": 10, "optimizer": "adam", "lr": 0.05}],
                           frames=False))
        done = drain(ws)[-1]
    first = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="gd", lr=0.01, steps=10,
                        p0=START)
    then = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="adam", lr=0.05, steps=20,
                       p0=first.params)
    assert done["step"] == 30 and done["optimizer"] == "adam"
    assert done["params"] == pytest.approx(then.params, rel=1e-12)


def test_held_out_points_give_a_test_loss(client, pts):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, test_fraction=0.25, split_seed=3, steps=20))
        done = drain(ws)[-1]
    test = holdout_mask(20, 0.25, 3)
    x, y = np.array(pts["x"]), np.array(pts["y"])
    ref = gradfit.fit(QUAD, x[~test], y[~test], loss="mae", optimizer="gd", lr=0.01, steps=20,
                      p0=START)
    assert done["params"] == pytest.approx(ref.params)
    want, _ = gradfit.loss_and_grad(QUAD, x[test], y[test], ref.params, loss="mae")
    assert done["test_loss"] == pytest.approx(want)


def test_the_label_is_judged_on_a_fixed_window(client, pts):
    """The label appears after LABEL_WINDOW steps and does not change after them."""
    exact = client.post("/api/exact", json={"data": pts, "model": QUAD, "loss": "mae"}).json()
    labels = []
    for steps in (LABEL_WINDOW - 1, LABEL_WINDOW, 4000):
        with client.websocket_connect(PLAY) as ws:
            ws.send_json(start(pts, lr=1e-4, steps=steps, frames=False,
                               optimum_loss=exact["loss"]))
            labels.append(drain(ws)[-1]["label"])
    assert labels == [None, "too slow", "too slow"]


def test_weight_decay_goes_to_the_optimizers_that_take_it(client, pts):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, optimizer="adam", lr=0.05, weight_decay=0.5, frames=False))
        done = drain(ws)[-1]
    ref = gradfit.fit(QUAD, pts["x"], pts["y"], loss="mae", optimizer="adam", lr=0.05, steps=50,
                      p0=START, weight_decay=0.5)
    assert done["params"] == pytest.approx(ref.params)


@pytest.mark.parametrize("body, words", [
    ({"model": "a*x^"}, "column"), ({"optimizer": "magic"}, "unknown optimizer"),
    ({"test_fraction": 2}, "test_fraction"), ({"changes": [{"step": 0, "lr": 1}]}, "step"),
])
def test_bad_starts_get_one_line(client, pts, body, words):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, **body))
        m = ws.receive_json()
    assert m["type"] == "error" and words in m["detail"] and "\n" not in m["detail"]


def test_unknown_messages_get_a_warning_and_the_run_goes_on(client, pts):
    with client.websocket_connect(PLAY) as ws:
        ws.send_json(start(pts, steps=100_000, steps_per_frame=5))
        ws.send_text("{not json")
        ws.send_json({"type": "dance"})
        ws.send_bytes(b"\x00\x01")
        kinds = []
        for _ in range(8):
            m = ws.receive_json()
            kinds.append(m["type"])
            if m["type"] == "frame":
                ws.send_json({"type": "ack", "seq": m["seq"]})
        ws.send_text("cancel")
        assert drain(ws)[-1]["reason"] == "cancelled"
    assert kinds.count("warning") == 3 and "frame" in kinds


def test_acks_count_for_frames_sent_only(pts):
    """A client that acknowledges frames it was never sent (a billion, up front) gets no
    more built than the flow control allows past the frames that went out: what waits to
    be sent stays bounded however it lies."""
    import threading
    import time

    from gradfit.web.limits import ServerLimits
    from gradfit.web.play import PlayIn, PlaySession
    out = []
    req = PlayIn.model_validate({k: v for k, v in start(pts, steps=100_000, steps_per_frame=1).items()
                                 if k != "type"})
    session = PlaySession(req, out.append, ServerLimits(send_timeout=2.0))
    session.control("ack", {"seq": 10**9})
    worker = threading.Thread(target=session.work)
    worker.start()

    def settle(n):                  # at least n messages, then nothing new for 0.5 s
        deadline = time.time() + 20
        while len(out) < n and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        return len(out)
    built = settle(1)
    session.control("sent", {"seq": 0})          # the transport sent frame 0: one more
    more = settle(built + 1)
    session.control("cancel")
    worker.join(5)
    assert built == WINDOW + 1 and more == built + 1, (built, more)
    assert out[-1]["type"] == "done" and out[-1]["reason"] == "cancelled"
