"""The server as a separate process, under the heaviest requests it accepts and clients that
never read: its peak memory (the kernel's VmHWM) stays under the cap, and run slots come
back. Each request is the widest of its family that the cost model admits, at the limits."""
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
from conftest import free_port, wait_until_up

pytest.importorskip("uvicorn")
if not os.path.exists("/proc/self/status"):
    pytest.skip("needs Linux's /proc to read a process's peak memory", allow_module_level=True)

from gradfit.models import make_model  # noqa: E402
from gradfit.web.limits import (MAX_CSV_BYTES, MB, ServerLimits, price_exact,  # noqa: E402
                                price_landscape, price_run_step)
from gradfit.web.schemas import MAX_POINTS, MAX_RESOLUTION  # noqa: E402

CAP = 1 << 30
SERVER = """
import sys, uvicorn
from gradfit.web.app import create_app
from gradfit.web.limits import ServerLimits, prepare_process
prepare_process()
limits = ServerLimits(max_memory={cap}, max_seconds={seconds}, send_timeout=1.0)
uvicorn.run(create_app(limits=limits), host="127.0.0.1", port={port}, log_level="warning")
"""


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def start_server(seconds: float):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(cap=CAP, port=port,
                                                                 seconds=seconds)])
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/api/meta", proc)
    return url, proc


@pytest.fixture(scope="module")
def server():
    url, proc = start_server(2.0)
    yield url, proc
    proc.terminate()
    proc.wait(10)


def post(url, path, body, timeout=60):
    req = urllib.request.Request(url + path, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def widest(family: str, admitted) -> str | None:
    """The largest ``family:K`` that ``admitted(model)`` accepts (K up to 2000), or None."""
    lo, hi = 0, 2000
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            admitted(make_model(f"{family}:{mid}"))
            lo = mid
        except Exception:
            hi = mid - 1
    return f"{family}:{lo}" if lo else None


def points(n):
    return {"x": [i / n for i in range(n)], "y": [((i * 7919) % 101) / 50 for i in range(n)]}


def heavy_requests():
    limits = ServerLimits(max_memory=CAP)
    out = []
    for n in (20, 2_000, MAX_POINTS):
        sets = MAX_RESOLUTION ** 2 + MAX_RESOLUTION
        for fam in ("poly", "relu", "mlp"):
            m = widest(fam, lambda mod: price_landscape(mod, n, sets, limits))
            if m:
                model = make_model(m)
                names = list(model.param_names[:2])
                out.append(("/api/landscape", {
                    "data": points(n), "model": m, "loss": "mse", "params": model.initial(None, 0),
                    "names": names, "slice": names[0], "resolution": MAX_RESOLUTION}))
            m = widest(fam, lambda mod: price_exact(mod, n, limits))
            if m:
                out.append(("/api/exact", {"data": points(n), "model": m, "loss": "mse"}))
    return out


def test_peak_memory_stays_under_the_cap_at_every_limit(server):
    url, proc = server
    reqs = heavy_requests()
    answers = []

    def send(path, body):
        for _ in range(40):            # busy (429): the workers finish cancelled jobs first
            status, out = post(url, path, body)
            if status != 429:
                break
            time.sleep(0.25)
        answers.append((path, body["model"], len(body["data"]["x"]), status, out))

    def upload():                          # the largest file the byte cap lets through
        rows = b"".join(b"%d,%d\n" % (i, i % 97) for i in range(MAX_POINTS))
        data = b"x,y\n" + rows + b"#" * 0
        assert len(data) < MAX_CSV_BYTES
        boundary = "gradfitboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                f"filename=\"big.csv\"\r\nContent-Type: text/csv\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(url + "/api/csv", body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req, timeout=60) as r:
            answers.append(("/api/csv", "-", MAX_POINTS, r.status, {}))

    def sender():                      # two at a time, for the two heavy workers
        while reqs:
            send(*reqs.pop())

    n_reqs = len(reqs)
    upload()
    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    reqs = [None] * n_reqs
    peak = peak_mb(proc.pid)
    for a in answers:
        print(*a[:4], str(a[4])[:100])
    print(f"server peak {peak:.0f} MB over {len(answers)} requests")
    assert not any(status >= 500 for *_, status, _ in answers), answers
    ran = [a[:4] for a in answers if a[3] == 200 or "cancelled" in str(a[4])]
    assert ("/api/csv", "-", MAX_POINTS, 200) in ran
    assert len(ran) == len(answers), answers      # every one admitted: it ran, to its end
                                                  # or to the deadline
    assert peak < CAP / MB, f"peak {peak:.0f} MB over the cap"


def raw_websocket(url: str, body: dict) -> socket.socket:
    """A WebSocket client that sends its start message and then never reads."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall((f"GET /api/play HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    s.recv(1024)                                      # the 101 answer, then nothing more
    payload = json.dumps(body).encode()
    head = bytes([0x81, 0x80 | 127]) + len(payload).to_bytes(8, "big") + b"\0\0\0\0"
    s.sendall(head + payload)                         # a masked text frame, mask 0
    return s


def test_clients_that_never_read_cannot_hold_the_run_slots(server):
    url, _ = server
    body = {"type": "start", "data": points(20), "model": "a*x^2 + b*x + c", "loss": "mae",
            "optimizer": "gd", "lr": 0.001, "steps": 1_000_000, "steps_per_frame": 1,
            "paced": False, "curve_points": 2000}
    socks = [raw_websocket(url, body) for _ in range(4)]
    try:
        from websockets.sync.client import connect
        deadline, answer = time.time() + 30, None
        while time.time() < deadline:
            with connect(url.replace("http", "ws") + "/api/play") as ws:
                ws.send(json.dumps({**body, "steps": 5, "curve_points": 10}))
                answer = json.loads(ws.recv(timeout=10))
            if answer["type"] != "busy":
                break
            time.sleep(0.5)
        assert answer["type"] == "frame", answer     # a slot came back within seconds
    finally:
        for s in socks:
            s.close()


def test_a_run_step_at_the_limit_is_cancelled_quickly(server):
    url, _ = server
    limits = ServerLimits(max_memory=CAP)
    m = widest("mlp", lambda mod: price_run_step(mod, MAX_POINTS, "adam", limits))
    from websockets.sync.client import connect
    with connect(url.replace("http", "ws") + "/api/play", max_size=None) as ws:
        ws.send(json.dumps({"type": "start", "data": points(MAX_POINTS), "model": m,
                            "optimizer": "adam", "steps": 1_000_000, "paced": False,
                            "steps_per_frame": 1, "curve_points": 10}))
        assert json.loads(ws.recv(timeout=30))["type"] == "frame"
        t = time.perf_counter()
        ws.send("cancel")
        while (msg := json.loads(ws.recv(timeout=10)))["type"] != "done":
            pass
        took = time.perf_counter() - t
    assert msg["reason"] == "cancelled" and took < 0.5, (m, took)


def test_an_upload_being_parsed_does_not_stop_other_requests():
    url, proc = start_server(10.0)
    rows = b"1.5,2.5\n" * (18 * MB // 8)               # 2.4 million rows, under the byte cap
    boundary = "gradfitboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
            f"filename=\"huge.csv\"\r\n\r\n").encode() + b"x,y\n" + rows + \
        f"\r\n--{boundary}--\r\n".encode()
    answer = {}

    def send():
        req = urllib.request.Request(url + "/api/csv", body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as e:
            answer.update(status=e.code, **json.loads(e.read()))

    t = threading.Thread(target=send)
    t.start()
    slowest = 0.0
    small = {"data": points(20), "model": "a*x^2 + b*x + c", "params": {"a": 1, "b": 1, "c": 1}}
    try:
        while t.is_alive():
            t0 = time.perf_counter()
            assert post(url, "/api/eval", small)[0] == 200
            slowest = max(slowest, time.perf_counter() - t0)
            time.sleep(0.05)              # a slider's pace
        t.join()
    finally:
        proc.terminate()
        proc.wait(10)
    assert answer["status"] == 422 and "too many points" in answer["detail"]
    assert f"row {MAX_POINTS + 2}" in answer["detail"]       # stopped there, not at the end
    assert slowest < 2.0, slowest        # (a bound; bench_load.py measures the latency)
