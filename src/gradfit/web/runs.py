"""Streaming runs over a WebSocket: the fit loop is an observed iterator (``iter_fit``).

Protocol (JSON messages):

- client -> ``{"type": "start", ...RunIn}`` first; later ``"cancel"`` (or
  ``{"type": "cancel"}``) stops the run, ``{"type": "set", "lr": .., "loss": ..,
  "optimizer": ..}`` changes settings and goes on from the current parameters.
- server -> ``{"type": "frame", ...}`` every ``steps_per_frame`` steps (at most one per
  ``FRAME_SECONDS`` unless ``paced`` is false): the latest step, params, loss, the losses
  since the last frame, the curve, the distance to the optimum, the learning-rate label;
  ``{"type": "done", ...}`` at the end with the result; ``{"type": "error", "detail"}`` for
  bad input; ``{"type": "busy", "detail"}`` when ``MAX_RUNS`` runs are already streaming.

The loop runs in a worker thread and hands frames to the event loop through a small
queue (so a slow client slows the run instead of piling up frames). A run stops when
the client cancels or goes away, at its step limit or at ``RUN_TIME_LIMIT``.
"""
from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import iter_fit
from ..errors import GradfitError
from ..learning_rates import classify_run
from ..models import make_model
from .compute import check_model, curve, distance
from .schemas import FRAME_SECONDS, MAX_RUNS, RUN_TIME_LIMIT, RunIn, SetIn


class RunLimiter:
    """At most ``limit`` runs at once, server-wide."""

    def __init__(self, limit: int = MAX_RUNS):
        self.limit, self.active, self._lock = limit, 0, threading.Lock()

    def acquire(self) -> bool:
        with self._lock:
            if self.active >= self.limit:
                return False
            self.active += 1
            return True

    def release(self) -> None:
        with self._lock:
            self.active -= 1


def validation_text(exc: ValidationError) -> str:
    """One line from pydantic's errors: where, what."""
    parts = []
    for e in exc.errors()[:3]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts)


class RunSession:
    """One streaming run: ``work()`` in a thread, frames out through ``emit``."""

    def __init__(self, req: RunIn, emit):
        self.req, self.emit = req, emit
        self.stop = threading.Event()
        self.pending: SetIn | None = None
        self.model = check_model(make_model(req.model))
        self.settings = {"lr": req.lr, "loss": req.loss, "optimizer": req.optimizer}
        self.t0 = time.perf_counter()
        self._start_run(req.p0, req.steps)      # bad input raises here, before streaming

    def _start_run(self, p0, steps):
        s, r = self.settings, self.req
        self.run = iter_fit(r.model, r.data.x, r.data.y, loss=s["loss"], delta=r.delta,
                            optimizer=s["optimizer"], lr=s["lr"], steps=steps, p0=p0,
                            seed=r.seed, time_limit=RUN_TIME_LIMIT, callback=self._interrupt)

    def _interrupt(self, record) -> bool:
        """The fit loop's callback: stop for a cancel, a change of settings or the clock."""
        return (self.stop.is_set() or self.pending is not None
                or time.perf_counter() - self.t0 > RUN_TIME_LIMIT)

    def change(self, msg: SetIn) -> None:
        self.pending = msg

    def work(self) -> None:
        try:
            self._work()
        except GradfitError as exc:
            self.emit({"type": "error", "detail": str(exc)})
        except Exception as exc:          # never leave the client waiting
            self.emit({"type": "error", "detail": f"the run failed: {exc}"})

    def _work(self) -> None:
        req = self.req
        history = np.empty(req.steps + 1)
        done = seg = 0                      # steps taken; where the current settings began
        batch, tick = [], time.perf_counter()
        while True:
            for rec in self.run:
                history[done] = rec.loss
                batch.append(rec.loss)
                done += 1
                if len(batch) >= req.steps_per_frame:
                    if req.paced:
                        wait = tick + FRAME_SECONDS - time.perf_counter()
                        if wait > 0:
                            time.sleep(wait)
                    tick = time.perf_counter()
                    self._frame(rec.params, rec, batch, history[seg:done], done - 1)
                    batch = []
            result = self.run.result
            change = self.pending
            if change is not None and not self.stop.is_set() and result.reason == "callback" \
                    and done < req.steps:
                self.pending = None
                for key in ("lr", "loss", "optimizer"):
                    if getattr(change, key) is not None:
                        self.settings[key] = getattr(change, key)
                batch, seg = [], done
                self._start_run(result.params, req.steps - done)
                continue
            break
        self._done(result, done, np.append(history[seg:done], result.loss))

    def _label(self, h: np.ndarray) -> str | None:
        """``classify_run`` on the losses since the settings last changed; the best fall is
        the way down to the exact optimum (when the page sent its loss)."""
        h = h[np.isfinite(h)] if h.size else h
        if h.size < 2:
            return None
        best = 0.0 if self.req.optimum_loss is None else max(0.0, h[0] - self.req.optimum_loss)
        return classify_run(h, best)

    def _frame(self, params, rec, batch, h, step) -> None:
        req = self.req
        self.emit({
            "type": "frame", "step": req.step_offset + step, "params": params,
            "loss": _num(rec.loss), "grad_norm": _num(rec.grad_norm),
            "losses": [_num(v) for v in batch], "first_step": req.step_offset + step - len(batch) + 1,
            "lr": rec.lr, "loss_name": self.settings["loss"], "optimizer": self.settings["optimizer"],
            "curve": curve(self.model, params, req.data.x, req.curve_points),
            "distance": distance(params, req.optimum), "label": self._label(h)})

    def _done(self, result, done, h) -> None:
        req = self.req
        reason, message = result.reason, result.message
        if reason == "callback":
            reason = "cancelled" if self.stop.is_set() else "time_limit"
            message = (f"cancelled after {done} steps" if reason == "cancelled"
                       else f"reached the time limit ({RUN_TIME_LIMIT:g} s)")
        self.emit({"type": "done", "step": req.step_offset + done, "steps_done": done,
                   "params": result.params, "loss": _num(result.loss), "reason": reason,
                   "message": message, "converged": result.converged, "label": self._label(h),
                   "lr": result.lr, "loss_name": self.settings["loss"],
                   "optimizer": result.optimizer,
                   "curve": curve(self.model, result.params, req.data.x, req.curve_points),
                   "distance": distance(result.params, req.optimum),
                   "result": result.to_dict(history=False)})


def _num(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


async def serve_run(ws: WebSocket, limiter: RunLimiter) -> None:
    await ws.accept()
    try:
        first = await ws.receive_json()
    except (WebSocketDisconnect, json.JSONDecodeError, KeyError):
        return
    try:
        if not isinstance(first, dict):
            raise ValueError("expected a JSON object {\"type\": \"start\", ...}")
        first = {k: v for k, v in first.items() if k != "type"}
        req = RunIn.model_validate(first)
    except ValidationError as exc:
        await _close(ws, {"type": "error", "detail": validation_text(exc)}, 1008)
        return
    except ValueError as exc:
        await _close(ws, {"type": "error", "detail": str(exc)}, 1008)
        return
    if not limiter.acquire():
        await _close(ws, {"type": "busy", "detail": f"the server is busy: {limiter.limit} runs "
                          "are streaming already; try again in a moment"}, 1013)
        return
    try:
        await _stream(ws, req)
    finally:
        limiter.release()


async def _close(ws: WebSocket, msg: dict, code: int) -> None:
    try:
        await ws.send_json(msg)
        await ws.close(code)
    except (WebSocketDisconnect, RuntimeError):
        pass


async def _stream(ws: WebSocket, req: RunIn) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    holder: dict = {}

    def emit(msg):                           # from the worker thread; blocks when full
        if holder["session"].stop.is_set() and msg.get("type") == "frame":
            return
        try:
            coro = queue.put(msg)
            try:
                fut = asyncio.run_coroutine_threadsafe(coro, loop)
            except RuntimeError:              # the loop is gone: the server is stopping
                coro.close()
                raise
            fut.result(timeout=30)
        except Exception:
            holder["session"].stop.set()

    try:
        session = RunSession(req, emit)
    except GradfitError as exc:
        await _close(ws, {"type": "error", "detail": str(exc)}, 1008)
        return
    holder["session"] = session
    worker = threading.Thread(target=session.work, name="gradfit-run", daemon=True)
    receiver = asyncio.create_task(_receive(ws, session))
    worker.start()
    try:
        while True:
            msg = await queue.get()
            await ws.send_json(msg)
            if msg["type"] in ("done", "error"):
                break
        await ws.close()
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        session.stop.set()
        receiver.cancel()
        while worker.is_alive():              # let it finish its step; drain what it emits
            try:
                queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.005)


async def _receive(ws: WebSocket, session: RunSession) -> None:
    try:
        while True:
            text = await ws.receive_text()
            if text.strip().strip('"') == "cancel":
                session.stop.set()
                continue
            try:
                msg = json.loads(text)
            except json.JSONDecodeError:
                continue
            if not isinstance(msg, dict):
                continue
            if msg.get("type") == "cancel":
                session.stop.set()
            elif msg.get("type") == "set":
                try:
                    session.change(SetIn.model_validate(msg))
                except ValidationError as exc:
                    await ws.send_json({"type": "warning", "detail": validation_text(exc)})
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        session.stop.set()
