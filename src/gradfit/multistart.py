"""Several starts, one answer: the lowest loss of K local fits.

A flexible model (a ReLU sum, a network) has many local minima and no unique optimum, so
``optimizer="auto"`` fits it from ``AUTO_STARTS`` seeded starts and reports the best as
what it is, "best of K starts" (reason ``starts``: not converged to a certified optimum,
but no failure either). Any model takes ``starts=K``: start 0 is ``p0`` (or the default),
start ``k`` is ``fit_many``'s (``many_starts.spread_starts``, one function for both:
``fit_many`` had spread a flexible model's starts around start 0, ``fit`` drawn them
afresh, so that the two ran different starts): uniform between two finite bounds, else a
seeded perturbation ``v + max(|v|, 1) * N(0, 1)`` of start 0, or for a flexible model its
own random start for seed ``seed + k``. The start kept is the lowest loss among those
that neither failed nor diverged (``pick_starts``); a converged one is preferred only
within ``CLOSE`` of that lowest loss (a start stopped "converged" on a plateau had won
over one 50 times lower that ran out of steps), and the message says which start it is
and whether it converged. A flexible model's failed start with a finite loss may win (its
best is no claim); if all fail, the first one's result says why.

    >>> import gradfit
    >>> d = gradfit.DATASETS["step"]()
    >>> r = gradfit.fit("relu:3", d.x, d.y, steps=200)
    >>> r.reason, r.message.startswith("best of 5 starts")
    ('starts', True)
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Iterator

import numpy as np

from .result import FitResult, Run, StepRecord
from .settings import MAX_SEED

AUTO_STARTS = 5      # starts of a flexible model fitted by "auto"


NO_CLAIM = "a flexible model has no unique optimum, so this is no claim of one"


def starts_for(config, model) -> int:
    """How many starts a run makes (see the module's docstring)."""
    return default_starts(config.starts, config.optimizer, model)


def default_starts(starts: int | None, optimizer: str, model) -> int:
    """``starts``, or when None: ``AUTO_STARTS`` for a flexible model under ``auto``, else 1
    (``fit`` and ``fit_many`` alike)."""
    if starts is not None:
        return starts
    return AUTO_STARTS if optimizer == "auto" and not model.identifiable else 1


def start_point(problem, config, k: int) -> dict[str, float]:
    """Start ``k`` (``k >= 1``) by name: ``many_starts.spread_starts`` for this one problem,
    ``fit_many``'s starts exactly, for a curve and a flexible model alike."""
    from .many_starts import known_starts, spread_starts
    from .models import start_values
    model = problem.model
    names = list(model.param_names)
    base = start_values(model, config.p0_dict, problem.x, config.seed)
    base.update(config.fixed_dict)
    free = [n for n in names if n not in config.fixed_dict]
    bounds = config.bounds_dict
    lo = np.array([[bounds.get(n, (-math.inf, math.inf))[0] for n in free]], dtype=float)
    hi = np.array([[bounds.get(n, (-math.inf, math.inf))[1] for n in free]], dtype=float)
    given = np.array([[n in config.p0_dict for n in names]])
    rows, _ = spread_starts(known_starts([[base[n] for n in names]], model, problem.x), given,
                            lo, hi, names, free, max(starts_for(config, model), k + 1),
                            config.seed)
    return dict(zip(names, rows[k].tolist()))


class MultiStartRun(Run):
    """Like ``FitRun``: iterates over the first start's records (the run one watches), then
    fits the other starts; ``result`` is the best one, its message saying so. The callback
    sees every start's records and the time limit is the whole run's: a start stopped by
    either is the last one run."""

    def __init__(self, problem, config, callback, k: int, run_class):
        self.problem, self.config, self.callback, self.k = problem, config, callback, k
        self._run_class = run_class
        self.first = run_class(problem, dataclasses.replace(config, starts=1), callback)
        self._gen = self._run()

    def set_lr(self, value: float) -> None:
        """A new rate for the start being watched (the others keep the configured one)."""
        self.first.set_lr(value)

    def _run(self) -> Iterator[StepRecord]:
        first = self.first
        t0 = time.perf_counter()
        yield from first
        results = [first.result]
        limit = self.config.time_limit
        for k in range(1, self.k):
            # a stop asked for (the callback, the time limit: the whole run's) ends the run:
            # no more starts (a server's deadline had let four more starts run on)
            if results[-1].reason in ("callback", "time_limit"):
                break
            left = None if limit is None else limit - (time.perf_counter() - t0)
            if left is not None and left <= 0:
                break
            cfg = dataclasses.replace(self.config, p0=start_point(self.problem, self.config, k),
                                      seed=(self.config.seed + k) % (MAX_SEED + 1), starts=1, time_limit=left)
            run = self._run_class(self.problem, cfg, self.callback)
            for _ in run:
                pass
            results.append(run.result)
        self.result = best_of(results, self.problem.model.identifiable, self.k)


TIE = 1e-10          # losses within this (relative) of the lowest are equal: the first wins
CLOSE = 1e-5         # a converged start this near (relative) the lowest loss is kept over
                     # the lower ones that did not converge: a gradient method's converged
                     # claim may lie up to VALLEY (1e-5) above its minimum, so they are one
                     # answer, and the certified one is the better report of it


def pick_starts(loss, converged, reason, identifiable: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """The start kept for each row of ``loss`` ``(B, K)`` (``fit`` and ``fit_many`` alike):
    the lowest loss among the starts that neither failed nor diverged (a flexible model's
    failed starts too, those with a finite loss: its best is no claim anyway, and a start
    LM could not certify is still a fit); but a converged start within ``CLOSE`` of that
    lowest loss where there is one (the lowest of those). Of starts within ``TIE`` of each
    other, the first (two starts at one minimum differ in their last digits, and which is
    lower must not depend on the engine). A converged start far above the lowest never
    wins: "converged" is a claim about its own basin, not about the others (gd stopped by
    ftol on a dead-unit plateau at a loss 50 times another start's had been kept). Returns
    the picks ``(B,)`` and where every start failed ``(B,)`` (the pick is then 0)."""
    loss = np.where(np.isfinite(loss), loss, np.inf)
    conv, reason = np.asarray(converged, bool), np.asarray(reason)
    ok = ~np.isin(reason, ("failed", "diverged")) if identifiable else \
        (reason != "diverged") & np.isfinite(loss)
    key = np.where(ok, loss, np.inf)
    best = key.min(1, keepdims=True)
    with np.errstate(invalid="ignore"):          # inf - inf where a row has no candidate
        near = ok & (key <= best + TIE * np.abs(best))
        close = ok & conv & (key <= best + CLOSE * np.abs(best))
        ckey = np.where(close, loss, np.inf)
        cbest = ckey.min(1, keepdims=True)
        cnear = close & (ckey <= cbest + TIE * np.abs(cbest))
    pick = np.where(close.any(1), cnear.argmax(1), near.argmax(1))
    return np.where(ok.any(1), pick, 0), ~ok.any(1)


def best_of(results: list[FitResult], identifiable: bool, planned: int | None = None
            ) -> FitResult:
    """The start ``pick_starts`` keeps (see there), its message saying which start it is,
    why, and whether it converged; ``planned``: the starts asked for, where a stop
    (callback, time limit) ended the run before all of them ran."""
    k = len(results)
    of = f" of the {planned} asked for (the run was stopped)" if planned and planned > k else ""
    pick, none = pick_starts(np.array([[r.loss for r in results]], dtype=float),
                             [[r.converged for r in results]],
                             [[r.reason for r in results]], identifiable)
    i = int(pick[0])
    if none[0]:
        r = results[0]
        r.message = f"all {k} starts failed; the first: {r.message}"
        return r
    r = results[i]
    if identifiable:
        ok = [x.ok for x in results]
        kept = "did not fail"
    else:
        ok = [x.reason != "diverged" and np.isfinite(x.loss) for x in results]
        kept = "did not diverge"
    why = f"lowest loss of the {sum(ok)} that {kept}"
    lowest = min(x.loss for x, o in zip(results, ok) if o)
    conv = [j for j, (x, o) in enumerate(zip(results, ok)) if o and x.converged]
    if r.converged and r.loss > lowest + TIE * abs(lowest):
        j = min((c for c, o in enumerate(ok) if o), key=lambda c: results[c].loss)
        why = (f"the lowest converged loss; start {j}, {results[j].loss:.6g}, lower by "
               f"{(r.loss - lowest) / abs(lowest):.2g} of it, did not converge")
    elif not r.converged and conv:
        j = min(conv, key=lambda c: results[c].loss)
        why += (f"; it did not converge ({r.reason}): the best converged start, start {j}, "
                f"ended at {results[j].loss:.6g}")
    elif not r.converged and identifiable:
        why += "; none converged"
    head = f"best of {k} starts{of} (start {i}, {r.optimizer}: {why})"
    if identifiable:
        r.message = f"{head}; {r.message}"
    else:
        r.message = f"{head}; {NO_CLAIM}; start {i} stopped: {r.message}"
        r.reason, r.converged = "starts", False
    return r
