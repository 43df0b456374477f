"""Streaming runs over a WebSocket: the fit loop is an observed iterator (``iter_fit``).

Protocol (JSON messages):

- client -> ``{"type": "start", ...RunIn}`` first; later ``"cancel"`` (or
  ``{"type": "cancel"}``) stops the run, ``{"type": "set", "lr": .., "loss": ..,
  "optimizer": ..}`` changes settings and goes on from the current parameters.
- server -> ``{"type": "frame", ...}`` every ``steps_per_frame`` steps (at most one per
  ``FRAME_SECONDS`` unless ``paced`` is false): the latest step, params, loss, the losses
  since the last frame, the curve, the distance to the optimum, the learning-rate label;
  ``{"type": "done", ...}`` at the end with the result; ``{"type": "error", "detail"}`` for
  bad input (the run ends); ``{"type": "warning", "detail"}`` for a message it cannot use
  during a run (binary, not JSON, unknown, a bad "set": the run goes on and still obeys);
  ``{"type": "busy", "detail"}`` when ``MAX_RUNS`` runs are already streaming.

The loop runs in a worker thread and hands frames to the event loop through an
``Outbox`` that holds one frame at most (a slow client gets fewer, merged frames; the
worker never waits on it). A run stops when the client cancels or goes away, at its step
limit, at ``RUN_TIME_LIMIT``, or when a message cannot be sent within ``SEND_TIMEOUT``
(a client that does not read); the whole stream is bounded by ``RUN_TIME_LIMIT +
SEND_TIMEOUT`` whatever the client does. Each step is priced (``limits.price_run_step``)
so that it is short and "cancel" takes effect within the next step.
"""
from __future__ import annotations

import asyncio
import json
from collections import deque
import math
import threading
import time

import numpy as np
from pydantic import ValidationError
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import iter_fit
from ..errors import GradfitError
from ..learning_rates import classify_run
from ..finite_json import dumps
from .compute import build_model, curve, distance
from .limits import ServerLimits, price_run_step
from .schemas import FRAME_SECONDS, MAX_RUNS, RUN_TIME_LIMIT, RunIn, SetIn

SEND_TIMEOUT = 10.0           # seconds a message may take to go out before the run ends
MAX_FRAME_LOSSES = 10_000     # losses one (merged) frame carries
MAX_NOTES = 16                # answers to bad messages waiting to go out
MAX_FRAMES_WAITING = 8        # frames built and not yet sent


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

    def __init__(self, req: RunIn, emit, limits: ServerLimits | None = None,
                 ready=lambda: True):
        self.req, self.emit, self.limits = req, emit, limits or ServerLimits()
        self.ready = ready          # False while the client has a frame it has not taken
        self.stop = threading.Event()
        self.pending: SetIn | None = None
        self.model = build_model(req.model)
        price_run_step(self.model, len(req.data.x), req.optimizer, self.limits)
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
        """A change of settings, priced first (an exact optimizer's step costs more)."""
        if msg.optimizer is not None:
            price_run_step(self.model, len(self.req.data.x), msg.optimizer, self.limits)
        self.pending = msg

    def work(self) -> None:
        try:
            self._work()
        except GradfitError as exc:
            self.emit({"type": "error", "detail": str(exc)})
        except Exception as exc:          # never leave the client waiting
            self.emit({"type": "error", "detail": f"the run failed: {type(exc).__name__}"})

    def _work(self) -> None:
        req = self.req
        history = np.empty(req.steps + 1)
        done = seg = 0                      # steps taken; where the current settings began
        batch, tick = deque(maxlen=MAX_FRAME_LOSSES), time.perf_counter()
        while True:
            for rec in self.run:
                history[done] = rec.loss
                batch.append(rec.loss)
                done += 1
                if len(batch) >= req.steps_per_frame and self.ready():   # else: no work
                    if req.paced:
                        wait = tick + FRAME_SECONDS - time.perf_counter()
                        if wait > 0:
                            time.sleep(wait)
                    tick = time.perf_counter()
                    self._frame(rec.params, rec, batch, history[seg:done], done - 1)
                    batch.clear()
            result = self.run.result
            change = self.pending
            if change is not None and not self.stop.is_set() and result.reason == "callback" \
                    and done < req.steps:
                self.pending = None
                for key in ("lr", "loss", "optimizer"):
                    if getattr(change, key) is not None:
                        self.settings[key] = getattr(change, key)
                batch.clear()
                seg = done
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


class Outbox:
    """What the worker has for the client: at most ``MAX_FRAMES_WAITING`` frames; past that
    the worker builds none (``empty`` is False) until the client takes them, so a slow client
    gets fewer frames (their losses carried over, at most ``MAX_FRAME_LOSSES``) and costs no
    work. Notes (answers to
    bad messages) queue up to ``MAX_NOTES``; the last message (done or error) ends the run.
    Messages are encoded to JSON by the thread that puts them, off the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop, self.lock, self.ready = loop, threading.Lock(), asyncio.Event()
        self.frames: list[str] = []
        self.notes: list[str] = []
        self.last: str | None = None

    def put(self, msg: dict) -> None:                # from any thread
        kind, text = msg.get("type"), dumps(msg)
        with self.lock:
            if kind == "frame":
                self.frames.append(text)
            elif kind in ("done", "error") and self.last is None:
                self.last = text
            elif len(self.notes) < MAX_NOTES:
                self.notes.append(text)
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:                          # the loop is gone: the server stops
            pass

    def empty(self) -> bool:
        """Room for a frame: the worker may build the next one."""
        return len(self.frames) < MAX_FRAMES_WAITING

    def take(self) -> tuple[list[str], bool]:
        """The messages to send, and whether the last one ends the run."""
        with self.lock:
            out = self.notes + self.frames + ([self.last] if self.last is not None else [])
            ended = self.last is not None
            self.notes, self.frames, self.last = [], [], None
            self.ready.clear()
            return out, ended


async def _send(ws: WebSocket, msg: dict | str, timeout: float = SEND_TIMEOUT) -> None:
    """Send one message, or give up after ``timeout`` seconds (a client that does not read)."""
    await asyncio.wait_for(ws.send_text(msg if isinstance(msg, str) else dumps(msg)), timeout)


async def _first_message(ws: WebSocket) -> dict | str:
    """The start message as a dict, or a one-line complaint."""
    try:
        msg = await asyncio.wait_for(ws.receive(), SEND_TIMEOUT)
    except TimeoutError:
        return f"no start message within {SEND_TIMEOUT:g} s"
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    if msg.get("text") is None:
        return "binary frames are not understood: expected a JSON text {\"type\": \"start\", ...}"
    try:
        first = json.loads(msg["text"])
    except (json.JSONDecodeError, RecursionError):
        return "the message is not JSON: expected {\"type\": \"start\", ...}"
    if not isinstance(first, dict) or first.get("type", "start") != "start":
        return "expected a JSON object {\"type\": \"start\", ...} first"
    return first


async def serve_run(ws: WebSocket, limiter: RunLimiter, limits: ServerLimits | None = None
                    ) -> None:
    limits = limits or ServerLimits()
    await ws.accept()
    try:
        first = await _first_message(ws)
    except WebSocketDisconnect:
        return
    if isinstance(first, str):
        await _close(ws, {"type": "error", "detail": first}, 1003)
        return
    try:
        req = RunIn.model_validate({k: v for k, v in first.items() if k != "type"})
    except ValidationError as exc:
        await _close(ws, {"type": "error", "detail": validation_text(exc)}, 1008)
        return
    if not limiter.acquire():
        await _close(ws, {"type": "busy", "detail": f"the server is busy: {limiter.limit} runs "
                          "are streaming already; try again in a moment"}, 1013)
        return
    try:
        await _stream(ws, req, limits)
    finally:
        limiter.release()


async def _close(ws: WebSocket, msg: dict, code: int) -> None:
    try:
        await _send(ws, msg)
        await asyncio.wait_for(ws.close(code), SEND_TIMEOUT)
    except (WebSocketDisconnect, RuntimeError, TimeoutError, OSError):
        pass


async def _stream(ws: WebSocket, req: RunIn, limits: ServerLimits) -> None:
    outbox = Outbox(asyncio.get_running_loop())
    try:
        session = await asyncio.to_thread(RunSession, req, outbox.put, limits, outbox.empty)
    except GradfitError as exc:
        await _close(ws, {"type": "error", "detail": str(exc)}, 1008)
        return
    worker = threading.Thread(target=session.work, name="gradfit-run", daemon=True)
    receiver = asyncio.create_task(_receive(ws, session, outbox))
    worker.start()
    try:
        async with asyncio.timeout(RUN_TIME_LIMIT + limits.send_timeout):   # whatever the client does
            ended = False
            while not ended:
                await outbox.ready.wait()
                texts, ended = outbox.take()
                for text in texts:
                    await _send(ws, text, limits.send_timeout)
        await asyncio.wait_for(ws.close(), limits.send_timeout)
    except (WebSocketDisconnect, RuntimeError, TimeoutError, OSError):
        pass
    finally:
        session.stop.set()
        receiver.cancel()
        while worker.is_alive():              # it stops within a step; then the slot is free
            await asyncio.sleep(0.005)


async def _receive(ws: WebSocket, session: RunSession, outbox: Outbox) -> None:
    """Every message gets an effect or an answer; none stops the run's controls."""
    def complain(detail: str) -> None:
        outbox.put({"type": "warning", "detail": detail})
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            text = msg.get("text")
            if text is None:
                complain("binary frames are not understood: expected JSON text, e.g. "
                         "\"cancel\" or {\"type\": \"set\", \"lr\": 0.01}")
                continue
            if text.strip().strip('"') == "cancel":
                session.stop.set()
                continue
            try:
                data = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                complain("the message is not JSON: expected \"cancel\" or "
                         "{\"type\": \"set\", ...}")
                continue
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "cancel":
                session.stop.set()
            elif kind == "set":
                try:
                    session.change(SetIn.model_validate(data))
                except (ValidationError, GradfitError) as exc:
                    detail = validation_text(exc) if isinstance(exc, ValidationError) else str(exc)
                    outbox.put({"type": "warning", "detail": detail})
            else:
                complain("unknown message: expected \"cancel\", {\"type\": \"cancel\"} or "
                         "{\"type\": \"set\", ...}, got " + (repr(kind)[:40] if kind else
                                                             type(data).__name__))
    except (WebSocketDisconnect, RuntimeError, asyncio.CancelledError):
        pass
    session.stop.set()
