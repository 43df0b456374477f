"""A connection that never completes a request's head is closed (``header_deadline``): one
that sends nothing, or half a header, had been held for ever, and some 20,000 of them made
the server unreachable. Requests, kept-alive connections and WebSockets are not touched.
The server runs as its own process with a deadline of 1 s."""
import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import free_port, wait_until_up

pytest.importorskip("uvicorn")

SERVER = """
import uvicorn
from gradfit.web import header_deadline
from gradfit.web.app import create_app
header_deadline.HEADER_SECONDS = 1.0
uvicorn.run(create_app(), host="127.0.0.1", port={port}, log_level="warning",
            http=header_deadline.HeaderDeadline)
"""


@pytest.fixture(scope="module")
def url():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port)])
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base + "/api/meta", proc)
    yield base
    proc.terminate()
    proc.wait(10)


def closed_within(sock, seconds: float) -> bool:
    """Whether the server closes ``sock`` (EOF) within ``seconds``."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def read_response(sock) -> bytes:
    """One whole HTTP response (its head, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


@pytest.mark.parametrize("sent", [b"", b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n"])
def test_a_request_head_that_never_ends_is_closed(url, sent):
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        t = time.perf_counter()
        assert closed_within(sock, 5.0)
        assert 0.8 < time.perf_counter() - t < 4.0
    assert urllib.request.urlopen(url + "/api/meta", timeout=5).status == 200


def test_a_head_that_drips_a_line_at_a_time_is_closed(url):
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /api/meta HTTP/1.1\r\n")
        t = time.perf_counter()
        for i in range(8):                   # a header line every 0.4 s: 3.2 s in all
            try:
                sock.sendall(f"X-Drip-{i}: 1\r\n".encode())
            except OSError:
                break
            time.sleep(0.4)
        assert closed_within(sock, 3.0) and time.perf_counter() - t < 4.5


def test_a_kept_alive_connection_serves_requests_and_a_websocket_outlives_the_deadline(url):
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        for _ in range(2):                   # two requests on one connection, 0.5 s apart
            sock.sendall(b"GET /api/meta HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_response(sock).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)
    from websockets.sync.client import connect
    data = {"x": [0, 1, 2, 3], "y": [1, 3, 5, 7.5]}
    with connect(url.replace("http", "ws") + "/api/play") as ws:
        time.sleep(2.0)                      # twice the deadline, idle
        ws.send(json.dumps({"type": "start", "data": data, "model": "a*x+b",
                            "optimizer": "gd", "lr": 0.01, "steps": 5,
                            "steps_per_frame": 1, "curve_points": 10}))
        assert json.loads(ws.recv(timeout=10))["type"] == "frame"
