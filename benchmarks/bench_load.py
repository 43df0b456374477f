"""Bounded load on the playground's server, on 127.0.0.1: does a small request stay fast, does
nothing fail, does memory stay under the cap?

Starts ``gradfit serve``'s app (default limits: 1 GB, 10 s) in a subprocess, then for
``--seconds`` (30) runs ``--clients`` (50) clients that each loop over a mix of requests:
small evals (the lesson's 20 points), landscapes (61 x 61 on 2,000 points, and 201 x 201 on
20), exact fits (relu:20 on 2,000 points), CSV uploads (50,000 rows) and short runs read to
their end; plus four WebSockets that start a run and never read. A probe sends a small
``/api/eval`` every 50 ms and times it. Prints the probe's p50/p95 latency, the answers by
status (5xx must be 0; 429 is the server saying "busy", 422 a request priced over a limit or
cancelled at the deadline), and the server's peak memory (the kernel's VmHWM).

    .venv/bin/python benchmarks/bench_load.py [--clients 50] [--seconds 30]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import httpx
from websockets.asyncio.client import connect

SERVER = """
import uvicorn
from gradfit.web.app import create_app
from gradfit.web.limits import prepare_process
prepare_process()                      # as `gradfit serve` does
uvicorn.run(create_app(), host="127.0.0.1", port={port}, log_level="warning")
"""
QUAD = "a*x^2 + b*x + c"
CANCELS: list[float] = []    # seconds from "cancel" to the run's "done"
THINK = 0.1                   # seconds a client waits between its requests
START = {"a": 1.1, "b": 1.1, "c": 1.1}


def points(n: int) -> dict:
    return {"x": [i / n * 4 - 2 for i in range(n)],
            "y": [3 * (i / n * 4 - 2) ** 2 + ((i * 7919) % 101) / 50 for i in range(n)]}


LESSON, MID, WIDE = points(20), points(2_000), points(20)
CSV = ("x,y\n" + "".join(f"{i / 50_000:.6f},{(i * 7919) % 101 / 50:.4f}\n"
                         for i in range(50_000))).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(ln.split()[1]) / 1024 for ln in fh if ln.startswith("VmHWM"))


def never_reader(port: int) -> socket.socket:
    """A WebSocket that starts a run (frames as fast as it goes) and never reads (nor
    acknowledges a frame)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall((f"GET /api/play HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    s.recv(1024)
    body = json.dumps({"type": "start", "data": LESSON, "model": QUAD, "optimizer": "gd",
                       "lr": 0.001, "steps": 1_000_000, "steps_per_frame": 1, "paced": False,
                       "curve_points": 2000}).encode()
    s.sendall(bytes([0x81, 0xFF]) + len(body).to_bytes(8, "big") + b"\0\0\0\0" + body)
    return s


async def one(client: httpx.AsyncClient, port: int, k: int, statuses: Counter) -> None:
    kind = k % 10
    try:
        if kind == 0:
            r = await client.post("/api/eval", json={"data": LESSON, "model": QUAD,
                                                     "params": START, "loss": "mae"})
        elif kind in (1, 2):
            r = await client.post("/api/landscape", json={
                "data": MID, "model": QUAD, "params": START, "names": ["a", "b"],
                "slice": "c", "resolution": 61})
        elif kind in (3, 4):
            r = await client.post("/api/landscape", json={
                "data": WIDE, "model": "relu:8", "names": ["m1", "b1"], "resolution": 201,
                "params": {**{f"m{i}": 1.0 for i in range(1, 9)},
                           **{f"b{i}": 0.0 for i in range(1, 9)}, "c": 0.0}})
        elif kind in (5, 6):
            r = await client.post("/api/exact", json={"data": MID, "model": "relu:20",
                                                      "loss": "mse"})
        elif kind == 7:
            r = await client.post("/api/csv", files={"file": ("load.csv", CSV, "text/csv")})
        elif kind == 9:                # a long run, cancelled after five frames
            async with connect(f"ws://127.0.0.1:{port}/api/play", max_size=None) as ws:
                await ws.send(json.dumps({"type": "start", "data": LESSON, "model": QUAD,
                                          "optimizer": "gd", "lr": 0.01, "steps": 1_000_000,
                                          "steps_per_frame": 5}))
                m = {"type": "frame"}
                for _ in range(5):
                    if (m := json.loads(await ws.recv()))["type"] != "frame":
                        break
                    await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
                if m["type"] == "frame":
                    t = time.perf_counter()
                    await ws.send("cancel")
                    while (m := json.loads(await ws.recv()))["type"] == "frame":
                        pass
                    CANCELS.append(time.perf_counter() - t)
                statuses[f"run {m['type']}"] += 1
            return
        else:
            async with connect(f"ws://127.0.0.1:{port}/api/play", max_size=None) as ws:
                await ws.send(json.dumps({"type": "start", "data": LESSON, "model": QUAD,
                                          "optimizer": "adam", "steps": 200, "paced": False,
                                          "steps_per_frame": 20}))
                while (m := json.loads(await ws.recv()))["type"] == "frame":
                    await ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
                statuses[f"run {m['type']}"] += 1
            return
        statuses[r.status_code] += 1
    except (httpx.HTTPError, OSError) as exc:
        statuses[f"failed: {type(exc).__name__}"] += 1


async def load(port: int, clients: int, seconds: float) -> tuple[list[float], Counter]:
    statuses: Counter = Counter()
    latencies: list[float] = []
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients + 5)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60,
                                 limits=limits) as client:
        async def worker(i: int):
            k = i
            while time.monotonic() < end:
                await one(client, port, k, statuses)
                k += 7
                await asyncio.sleep(THINK)

        async def probe():
            while time.monotonic() < end:
                t = time.perf_counter()
                r = await client.post("/api/eval", json={"data": LESSON, "model": QUAD,
                                                         "params": START, "loss": "mae"})
                latencies.append(time.perf_counter() - t)
                statuses[f"probe {r.status_code}"] += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(probe(), *(worker(i) for i in range(clients)))
    return latencies, statuses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(port=port)])
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/meta", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        idle = peak_mb(proc.pid)
        hogs = [never_reader(port) for _ in range(4)]
        latencies, statuses = asyncio.run(load(port, args.clients, args.seconds))
        for s in hogs:
            s.close()
        q = statistics.quantiles(latencies, n=100)
        errors = sum(v for k, v in statuses.items()
                     if (isinstance(k, int) and k >= 500) or "failed" in str(k) or " 5" in str(k))
        print(f"{args.clients} clients + 4 never-reading WebSockets for {args.seconds:g} s "
              f"on 127.0.0.1")
        print(f"small /api/eval (probe, {len(latencies)} requests): p50 {q[49] * 1000:.0f} ms, "
              f"p95 {q[94] * 1000:.0f} ms")
        if CANCELS:
            print(f"runs cancelled under load ({len(CANCELS)}): \"cancel\" to \"done\" median "
                  f"{statistics.median(CANCELS) * 1000:.0f} ms, max {max(CANCELS) * 1000:.0f} ms")
        print("answers: " + ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items(), key=str)))
        print(f"server errors (5xx or failed): {errors}")
        print(f"server peak memory: {peak_mb(proc.pid):.0f} MB (idle {idle:.0f} MB; cap 1024 MB)")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
