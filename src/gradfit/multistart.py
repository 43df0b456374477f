"""Several starts, one answer: the lowest loss of K local fits.

A flexible model (a ReLU sum, a network) has many local minima and no unique optimum, so
``optimizer="auto"`` fits it from ``AUTO_STARTS`` seeded starts and reports the best as
what it is, "best of K starts" (reason ``starts``: not converged to a certified optimum,
but no failure either). Any model takes ``starts=K``: start 0 is ``p0`` (or the default),
start ``k`` is the model's own random start for seed ``seed + k`` (flexible models) or, for
curves, ``fit_many``'s: uniform between two finite bounds, else a seeded perturbation
``v + max(|v|, 1) * N(0, 1)`` of start 0 (``many_starts.spread_starts``). A start that
fails or diverges never wins (a flexible model's failed start with a finite loss may: its
best is no claim); if all do, the first one's result says why.

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
    """Start ``k`` (``k >= 1``) by name: a flexible model's own random start, a curve's
    ``many_starts.spread_starts`` for this one problem (``fit_many``'s starts, exactly)."""
    from .many_starts import spread_starts
    from .models import start_values
    model = problem.model
    if not model.identifiable:
        return start_values(model, None, problem.x, config.seed + k)
    names = list(model.param_names)
    base = start_values(model, config.p0_dict, problem.x, config.seed)
    base.update(config.fixed_dict)
    free = [n for n in names if n not in config.fixed_dict]
    bounds = config.bounds_dict
    lo = np.array([[bounds.get(n, (-math.inf, math.inf))[0] for n in free]], dtype=float)
    hi = np.array([[bounds.get(n, (-math.inf, math.inf))[1] for n in free]], dtype=float)
    given = np.array([[n in config.p0_dict for n in names]])
    rows, _ = spread_starts(np.array([[base[n] for n in names]], dtype=float), given, lo, hi,
                            names, free, max(starts_for(config, model), k + 1), config.seed)
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
                                      seed=self.config.seed + k, starts=1, time_limit=left)
            run = self._run_class(self.problem, cfg, self.callback)
            for _ in run:
                pass
            results.append(run.result)
        self.result = best_of(results, self.problem.model.identifiable, self.k)


TIE = 1e-10          # losses within this (relative) of the lowest are equal: the first wins


def pick_starts(loss, converged, reason, identifiable: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """The start kept for each row of ``loss`` ``(B, K)`` (``fit`` and ``fit_many`` alike):
    among the converged starts if any, else among those that neither failed nor diverged
    (a flexible model's failed starts too, those with a finite loss: its best is no claim
    anyway, and a start LM could not certify is still a fit), the first whose loss is
    within ``TIE`` of their lowest (two starts at one minimum differ in their last digits,
    and which is lower must not depend on the engine). Returns the picks ``(B,)`` and where
    every start failed ``(B,)`` (the pick is then 0)."""
    loss = np.where(np.isfinite(loss), loss, np.inf)
    conv, reason = np.asarray(converged, bool), np.asarray(reason)
    ok = ~np.isin(reason, ("failed", "diverged")) if identifiable else \
        (reason != "diverged") & np.isfinite(loss)
    among = np.where(conv.any(1, keepdims=True), conv, ok)
    key = np.where(among, loss, np.inf)
    best = key.min(1, keepdims=True)
    with np.errstate(invalid="ignore"):          # inf - inf where a row has no candidate
        near = among & (key <= best + TIE * np.abs(best))
    return np.where(near.any(1), near.argmax(1), 0), ~among.any(1)


def best_of(results: list[FitResult], identifiable: bool, planned: int | None = None
            ) -> FitResult:
    """The start ``pick_starts`` keeps (see there); ``planned``: the starts asked for, where
    a stop (callback, time limit) ended the run before all of them ran."""
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
        counted, kept = sum(1 for x in results if x.ok), "did not fail"
    else:
        counted = sum(1 for x in results if x.reason != "diverged" and np.isfinite(x.loss))
        kept = "did not diverge"
    head = (f"best of {k} starts{of} (start {i}, {r.optimizer}: lowest loss of the {counted} "
            f"that {kept})")
    if identifiable:
        r.message = f"{head}; {r.message}"
    else:
        r.message = f"{head}; {NO_CLAIM}; start {i} stopped: {r.message}"
        r.reason, r.converged = "starts", False
    return r
