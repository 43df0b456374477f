"""The page's runs (the protocol and its bounds: ``runs.py``): one ``iter_fit`` kept alive
through pauses, steps and changes of settings, with flow control.

Frame ``seq`` shows the state after ``step`` steps (the params, the training loss there,
the test loss on held-out points); ``"paused"`` frames say that a pause took effect; the
``done`` message carries the result, the losses no frame has sent yet (a run that diverged
or stopped between two frames) and a ``verdict``: how the run ended, in words, where the
learning-rate label does not say it ("diverged at step 3", "stopped at step 156: ftol, ...").
A replay (``quiet_until``) sends no frames before its step, but its first frame carries
``trail``: the parameters and test losses where the frames would have been (thinned to at
most ``TRAIL_NUMBERS`` numbers), so that a link draws the path and the test curve too.

Flow control: the worker never computes past frame ``seq`` until frame ``seq - WINDOW``
is acknowledged, so the page is at most ``WINDOW + 1`` frames behind the run and a pause
shows within a frame. Pause and step wait between two steps, inside the same run, so the
optimizer's state (Adam's moments, momentum) is kept. A new learning rate for the same
optimizer is set on its parameter groups (state kept); a new optimizer or loss restarts
the optimizer from the current parameters (there is no state that carries over).

Every change is applied between two steps and reported with the step it applies from
(``changes``); ``PlayIn.changes`` replays such a list, so a link reproduces the run.

The run is the request's ``FitConfig`` (``runconfig.config_of``: schedule, optimizer options,
bounds, fixed values, dtype, the stopping rules, starts ...), checked by the settings table
before anything streams: a run with no change of settings is ``gradfit.fit`` with that
config. After a change of optimizer or loss the run goes on from where it is as a new fit
(its schedule over the steps left; the options its new optimizer takes).

The learning-rate label judges the ``LABEL_WINDOW`` steps after the settings last changed
by ``classify_run`` (its best fall: the way down to the exact optimum's loss), and does
not change after them: ``LABEL_RULE``.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Optional

import numpy as np
import torch
from pydantic import Field

from .. import iter_fit
from ..errors import GradfitError, InputError
from ..fit import prepare
from ..learning_rates import LR_RULE, classify_run
from ..losses import check_method, get_loss
from ..optimizers import OPTIMIZERS
from ..result import REASONS
from . import dataview
from .compute import build_model, distance
from .limits import MAX_FRAME_NUMBERS, ServerLimits, price_frame, price_run_step
from .runconfig import config_of, fit_kwargs, without_fixed
from .schemas import FRAME_SECONDS, MAX_CHANGES, RUN_TIME_LIMIT, Finite, RunIn, SetIn, setting
from .views import curve

WINDOW = 1                 # frames the run may be ahead of the last one the page drew
PAUSE_SECONDS = 60.0       # a run paused this long without a step ends (its slot is freed)
LABEL_WINDOW = 200         # steps the learning-rate label judges
TRAIL_NUMBERS = 20_000     # numbers in a replay's trail (the frames it did not send)
LABEL_RULE = (f"judged on the first {LABEL_WINDOW} steps after the settings last changed, "
              "then fixed: " + LR_RULE)


class ChangeAt(SetIn):
    """A change of settings that applies from step ``step`` on."""

    step: int = Field(ge=1)


class PlayIn(RunIn):
    """A run to play: ``RunIn`` plus ``weight_decay`` (for the optimizers that take it; the
    same as ``options.weight_decay``, within the table's range) and ``changes`` to replay."""

    weight_decay: Optional[Finite] = setting("weight_decay")
    changes: list[ChangeAt] = Field(default_factory=list, max_length=MAX_CHANGES)
    frames: bool = True        # False: only the done message
    quiet_until: int = Field(0, ge=0)          # no frames, no pacing before this step
    pause_at: Optional[int] = Field(None, ge=0)   # pause by itself at this step (a link)


def _check_changes(settings: dict, changes, delta: float) -> None:
    """Refuse changes after which, at any step, the optimizer cannot minimise the loss
    (``losses.check_method``: irls with mse had ended the run)."""
    at = dict(settings)
    check_method(at["optimizer"], get_loss(at["loss"], delta))
    for c in changes:
        at.update({k: getattr(c, k) for k in ("loss", "optimizer") if getattr(c, k) is not None})
        check_method(at["optimizer"], get_loss(at["loss"], delta))


def takes_weight_decay(optimizer: str) -> bool:
    return "weight_decay" in OPTIMIZERS[optimizer].options


def run_options(req: PlayIn) -> dict:
    """The request's optimizer options, its ``weight_decay`` among them where its optimizer
    takes it (the field's own rule) and the options do not say otherwise."""
    options = dict(req.options or {})
    if req.weight_decay and takes_weight_decay(req.optimizer):
        options.setdefault("weight_decay", req.weight_decay)
    return options


def options_for(optimizer: str, options: dict) -> dict:
    """The options that ``optimizer`` takes (after a change of optimizer, the others wait
    for one that takes them)."""
    takes = OPTIMIZERS[optimizer].options
    return {k: v for k, v in options.items() if k in takes}


class PlaySession:
    """One run: ``work()`` in a thread; messages out through ``emit``. It ends at its step
    limit, on "cancel", ``RUN_TIME_LIMIT`` seconds after it began (playing or paused), when
    the page has acknowledged no frame for ``limits.send_timeout`` seconds (playing or
    paused: a paused frame left unacknowledged had held a run's slot for 300 s), or when it
    has stayed paused ``PAUSE_SECONDS`` without a step (the page replays the run to go on)."""

    def __init__(self, req: PlayIn, emit, limits: ServerLimits | None = None):
        self.req, self.emit, self.limits = req, emit, limits or ServerLimits()
        self.deadline = time.monotonic() + RUN_TIME_LIMIT
        self.data = dataview.of(req)
        self.x, self.y, self.sigma = self.data.part(test=False)
        self.model = build_model(req.model, self.data.inputs)
        for optimizer in {req.optimizer} | {c.optimizer for c in req.changes if c.optimizer}:
            price_run_step(self.model, len(self.y), optimizer, self.limits)   # replayed too
        # and what a frame holds: its rendering and sending take the event loop's time
        price_frame(self.model, req.curve_points, req.steps_per_frame, MAX_CHANGES)
        # the run's FitConfig: every setting checked by the table before anything streams
        self.config = config_of(req, options=run_options(req))
        self.settings = {"lr": req.lr or OPTIMIZERS[req.optimizer].default_lr,
                         "loss": req.loss, "optimizer": req.optimizer}
        _check_changes(self.settings, sorted(req.changes, key=lambda c: c.step), req.delta)
        self.cond = threading.Condition()
        self.stop = False
        self.paused = False
        self.steps_granted = 0           # steps allowed while paused ("step")
        self.acked = -1                  # the last frame the page says it drew
        self.sent = -1                   # the last frame the transport sent
        self.seq = -1                    # the last frame built
        self.pending: list[SetIn] = []
        self.schedule = sorted(req.changes, key=lambda c: c.step)
        self.applied: list[dict] = []
        self.trail: list[dict] = []      # a replay's points before quiet_until (see _keep)
        self.trail_every = 1
        self._test = self._test_problem()
        self._start(req.p0, req.steps)            # bad input raises here, before streaming

    # ---------------------------------------------------------------- setup
    def _test_problem(self):
        if not self.data.n_test:
            return None
        xt, yt, st = self.data.part(test=True)
        return prepare(self.req.model, xt, yt, st, loss=self.settings["loss"],
                       delta=self.req.delta, inputs=self.data.inputs)

    def _start(self, p0, steps):
        """A fit of the run's config with the settings in force, ``steps`` steps from
        ``p0`` (a fixed parameter's value is its fixed one: left out of p0)."""
        s, cfg = self.settings, self.config
        config = dataclasses.replace(
            cfg, loss=s["loss"], optimizer=s["optimizer"], lr=s["lr"], steps=steps,
            p0=without_fixed(p0, cfg.fixed) or {},
            options=options_for(s["optimizer"], cfg.options_dict))
        self.restart, self.stopped = False, None
        self.run = iter_fit(self.req.model, self.x, self.y, sigma=self.sigma,
                            inputs=self.data.inputs, callback=self._interrupt,
                            **fit_kwargs(config))

    def _interrupt(self, record) -> bool:
        """The fit loop's callback: stop for a cancel, a restart or the clock. A fit stopped
        so ends lean (``FitRun.lean``: no covariance, no verdict on where it stopped): its
        end is the session's, not an answer to judge, and a cancel stays prompt (the
        covariance of an mse fit of 100,000 points had taken a second after it)."""
        if time.monotonic() > self.deadline:
            self._end("time_limit")
        stop = self.restart or self.stop
        watched = getattr(self.run, "first", self.run)      # a MultiStartRun's first start
        if stop and getattr(watched, "result", True) is None:   # stopped while it runs
            self.stopped = watched
            watched.lean = True
        return stop

    stopped = None          # the fit (the streamed start) that the callback stopped

    def _result(self):
        """The run's result; a multi-start run (``starts``, or auto on a flexible model)
        stopped in the start it streams ends there, as a single fit does (its best-of-one
        result had said "starts", and a cancel or a change of settings was not seen)."""
        first = getattr(self.run, "first", None)
        if first is not None and self.stopped is first and first.result is not None:
            return dataclasses.replace(first.result, reason="callback", converged=False)
        return self.run.result

    # ---------------------------------------------------------------- from the client
    def control(self, what: str, msg: dict | None = None) -> None:
        with self.cond:
            if what == "cancel":
                self.stop = True
            elif what == "pause":
                self.paused = True
            elif what == "play":
                self.paused, self.steps_granted = False, 0
            elif what == "step":
                self.steps_granted += 1
            elif what == "sent":         # from the transport: frame seq went out
                self.sent = max(self.sent, msg["seq"])
            elif what == "ack":          # counts for frames already sent only (_wait)
                seq = msg.get("seq") if msg else None
                if isinstance(seq, int) and not isinstance(seq, bool):
                    self.acked = max(self.acked, seq)
            elif what == "set":
                self.pending.append(msg)
            self.cond.notify_all()

    def change(self, msg: SetIn) -> None:
        """A change of settings from the page, priced first (an exact method's step costs
        more than a gradient's) and checked against the loss it would run with (irls with
        mse had ended the run): over the limit or refused, it raises ``InputError`` and
        nothing changes; so does a change past ``MAX_CHANGES`` in all (each frame lists
        those applied, and its size is priced for that many)."""
        with self.cond:
            if len(self.applied) + len(self.pending) + len(self.schedule) >= MAX_CHANGES:
                raise InputError(f"too many changes of settings in one run (at most "
                                 f"{MAX_CHANGES})", expected="a new run (reset) for more")
        if msg.optimizer is not None:
            price_run_step(self.model, len(self.y), msg.optimizer, self.limits)
        with self.cond:                 # the settings once this and the pending ones apply
            changes = self.pending + [msg]
        _check_changes(self.settings, changes, self.req.delta)
        self.control("set", msg)

    # ---------------------------------------------------------------- the loop
    def work(self) -> None:
        try:
            self._work()
        except GradfitError as exc:
            self.emit({"type": "error", "detail": str(exc)})
        except Exception as exc:          # never leave the page waiting
            # the kind of failure only: an exception's text may show server paths
            self.emit({"type": "error", "detail": f"the run failed: {type(exc).__name__}"})

    def _work(self) -> None:
        req = self.req
        # the losses since the settings last changed, as far as the label judges them (a
        # run of 10,000,000 steps holds no array of that length)
        history: list[float] = []
        seg = 0                       # where the current settings began
        batch: list = []
        last = -1                     # the step of the last record
        tick = time.perf_counter()
        while True:
            for rec in self.run:                 # a stop or a restart ends it at its callback
                done = self.offset + rec.step    # this record: the state after `done` steps
                last = done
                if 0 <= done - seg <= LABEL_WINDOW:
                    del history[done - seg:]
                    history.append(rec.loss)
                batch.append(rec.loss)
                if done == req.pause_at:
                    self.control("pause")
                quiet = done < req.quiet_until
                if quiet and req.frames:
                    self._keep(done, rec.params)
                if req.frames and not quiet and (len(batch) >= req.steps_per_frame or self._holding()):
                    if req.paced and not self._holding():
                        wait = tick + FRAME_SECONDS - time.perf_counter()
                        if wait > 0:
                            time.sleep(wait)
                    tick = time.perf_counter()
                    self._send(done, rec, batch, np.array(history))
                    batch = []
                while self._wait(done) == "show":
                    self._send(done, rec, batch, np.array(history))
                    batch = []
                if self._changes_due(done + 1):     # the next update is done + 1
                    seg = done + 1                  # (a restart ends at the callback)
                    history = []
            result = self._result()
            if self.restart and not self.stop and result.reason == "callback":
                self.offset += result.steps
                batch = []
                self._start(result.params, req.steps - self.offset)
                continue
            break
        done = self.offset + result.steps
        h = (history[:max(done - seg, 0)] + [result.loss])[:LABEL_WINDOW + 1]
        self._done(result, done, np.array(h), batch, last)

    offset = 0                         # steps taken before the current iter_fit
    paused_step = -1                   # the step of the last frame sent while paused
    stop_reason = "cancelled"

    def _end(self, reason: str) -> None:
        with self.cond:
            self.stop, self.stop_reason = True, reason

    def _holding(self) -> bool:
        """This record is shown now, whatever the frame size: a pause, a step, a stop."""
        return (self.paused and self.steps_granted == 0) or self.stop

    def _wait(self, done: int) -> str:
        """Between two steps: wait for the page's acks, for a pause to end or a step to be
        granted. ``"go"``: take the next step; ``"stop"``; ``"show"``: send this step's
        frame first (a pause came after it was computed)."""
        with self.cond:
            t0 = time.monotonic()
            while not self.stop:
                now = time.monotonic()
                if now > self.deadline:
                    self.stop, self.stop_reason = True, "time_limit"
                    break
                if self.paused:
                    if self.steps_granted > 0:
                        self.steps_granted -= 1
                        return "go"
                    if self.req.frames and self.paused_step != done:
                        return "show"                  # the page learns the pause holds
                    if self.req.frames and min(self.acked, self.sent) < self.seq and \
                            now - t0 > self.limits.send_timeout:   # its frame not drawn
                        self.stop, self.stop_reason = True, "idle"
                        break
                    if now - t0 > PAUSE_SECONDS:
                        self.stop, self.stop_reason = True, "paused"
                        break
                elif not (self.req.frames and self.seq - min(self.acked, self.sent) > WINDOW
                          and done >= self.req.quiet_until):
                    return "go"
                elif now - t0 > self.limits.send_timeout:      # no ack: a stalled page
                    self.stop, self.stop_reason = True, "idle"
                    break
                self.cond.wait(0.25)
            return "stop"

    def _changes_due(self, at: int) -> bool:
        """Apply the changes due from step ``at`` on (replayed, or sent now). True when a
        setting changed."""
        with self.cond:
            due = [c for c in self.schedule if c.step == at]
            self.schedule = [c for c in self.schedule if c.step != at]
            live, self.pending = self.pending, []
        changed = False
        for c in due + live:
            new = {k: getattr(c, k) for k in ("lr", "loss", "optimizer") if getattr(c, k) is not None}
            new = {k: v for k, v in new.items() if self.settings[k] != v}
            if not new:
                continue
            changed = True
            if "optimizer" in new or "loss" in new:
                self.restart = True
            self.settings.update(new)
            if "loss" in new:
                self._test = self._test_problem()
            if not self.restart and "lr" in new:     # same optimizer: its state is kept
                try:
                    self.run.set_lr(new["lr"])
                except InputError:                   # a method without a rate (lm, irls)
                    pass
            self.applied.append({"step": at, **new})
        return changed

    # ---------------------------------------------------------------- out
    def _test_loss(self, params: dict) -> float | None:
        if self._test is None:
            return None
        theta = torch.tensor([params[n] for n in self._test.model.param_names], dtype=torch.float64)
        with torch.no_grad():
            return _num(self._test.objective(theta).item())

    def _keep(self, step: int, params: dict) -> None:
        """A replay's point where a frame would have been sent (every ``steps_per_frame``
        steps from the start), kept for the first frame; every other one is dropped, and
        from then on half as many kept, when they pass ``TRAIL_NUMBERS``."""
        every = self.req.steps_per_frame * self.trail_every
        if (step + 1) % every:
            return
        self.trail.append({"step": self.req.step_offset + step, "params": params,
                           "test_loss": self._test_loss(params)})
        if len(self.trail) * (len(params) + 2) > TRAIL_NUMBERS:
            self.trail = self.trail[1::2]
            self.trail_every *= 2

    def _take_trail(self) -> dict:
        trail, self.trail = self.trail, []
        return {"trail": trail} if trail else {}

    def _label(self, h: np.ndarray) -> str | None:
        if h.size < LABEL_WINDOW + 1:
            return None
        h = h[:LABEL_WINDOW + 1]
        best = 0.0 if self.req.optimum_loss is None else max(0.0, h[0] - self.req.optimum_loss)
        return classify_run(h, best)

    def _state(self, step, params, loss, h) -> dict:
        req = self.req
        return {"step": req.step_offset + step, "params": params, "loss": _num(loss),
                "test_loss": self._test_loss(params), "lr": self.settings["lr"],
                "loss_name": self.settings["loss"], "optimizer": self.settings["optimizer"],
                "curve": curve(self.model, params, self.data.x, req.curve_points),
                "distance": distance(params, req.optimum), "label": self._label(h),
                "judged": int(min(h.size - 1, LABEL_WINDOW)), "changes": self.applied}

    def _send(self, step, rec, batch, h) -> None:
        with self.cond:
            self.seq += 1
            seq, paused = self.seq, self.paused
        if paused:
            self.paused_step = step
        self.emit({"type": "frame", "seq": seq, "paused": paused,
                   **self._state(step, rec.params, rec.loss, h), **self._take_trail(),
                   "grad_norm": _num(rec.grad_norm), "losses": [_num(v) for v in batch],
                   "first_step": self.req.step_offset + step - len(batch) + 1})

    def _verdict(self, reason: str, done: int, h: np.ndarray) -> str | None:
        """How the run ended, where the learning-rate label does not say it: a divergence
        always; a stop before the label's window was judged ("judging… 3/200 steps" had
        stayed on the plot for good)."""
        if reason == "diverged":
            return f"diverged at step {self.req.step_offset + done}"
        if reason == "cancelled" or self._label(h) is not None:
            return None
        why = {"idle": "no frame acknowledged", "paused": "paused too long"}.get(reason) or \
            REASONS.get(reason, (False, reason))[1].split(" (")[0]
        why = f"{reason}, {why}" if reason in ("ftol", "gtol", "xtol") else why
        return f"stopped at step {self.req.step_offset + done}: {why}"

    def _done(self, result, done, h, batch=(), last=-1) -> None:
        reason, message = result.reason, result.message
        if reason == "callback":
            reason = self.stop_reason
            message = {"cancelled": f"cancelled after {done} steps",
                       "time_limit": f"reached the time limit ({RUN_TIME_LIMIT:g} s)",
                       "idle": f"the page acknowledged no frame for "
                               f"{self.limits.send_timeout:g} s",
                       "paused": f"paused for {PAUSE_SECONDS:g} s without a step: the run "
                                 "ended (play goes on from this step)"}[reason]
        note = None
        if result.covariance is not None and result.covariance.size > MAX_FRAME_NUMBERS:
            # P x P numbers would make the last message larger than any frame
            note = (f"the covariance ({result.covariance.shape[0]} x "
                    f"{result.covariance.shape[1]}) is left out: a message holds at most "
                    f"{MAX_FRAME_NUMBERS:,} numbers; stderr and ci are given")
            result = dataclasses.replace(result, covariance=None)
        out = result.to_dict(history=False)
        if note:
            out["covariance_note"] = note
        # the losses no frame carried, and the loss at the end (a diverged run's end is its
        # last finite point again: not drawn twice)
        losses = [_num(v) for v in batch] if self.req.frames else []
        first = last - len(losses) + 1
        if self.req.frames and done == last + 1 and reason != "diverged":
            losses.append(_num(result.loss))
            first = done - len(losses) + 1
        self.emit({"type": "done", **self._state(done, result.params, result.loss, h),
                   **self._take_trail(), "losses": losses,
                   "first_step": self.req.step_offset + first,
                   "verdict": self._verdict(reason, done, h),
                   "steps_done": done, "reason": reason, "message": message,
                   "converged": result.converged, "result": out})


def _num(v):
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


__all__ = ["PlayIn", "PlaySession", "LABEL_RULE", "LABEL_WINDOW", "WINDOW"]
