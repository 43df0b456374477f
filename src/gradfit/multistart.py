"""Several starts, one answer: the lowest loss of K local fits.

A flexible model (a ReLU sum, a network) has many local minima and no unique optimum, so
``optimizer="auto"`` fits it from ``AUTO_STARTS`` seeded starts and reports the best as
what it is, "best of K starts" (reason ``starts``: not converged to a certified optimum,
but no failure either). Any model takes ``starts=K``: start 0 is ``p0`` (or the default),
start ``k`` is the model's own random start for seed ``seed + k`` (flexible models) or a
seeded perturbation ``v + max(|v|, 1) * N(0, SPREAD^2)`` of start 0 (curves). A start that
fails or diverges never wins; if all do, the first one's result says why.

    >>> import gradfit
    >>> d = gradfit.DATASETS["step"]()
    >>> r = gradfit.fit("relu:3", d.x, d.y, steps=200)
    >>> r.reason, r.message.startswith("best of 5 starts")
    ('starts', True)
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import torch

from .result import FitResult, Run, StepRecord

AUTO_STARTS = 5      # starts of a flexible model fitted by "auto"
SPREAD = 0.5         # relative spread of the random starts of a curve


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
    """Start ``k`` (``k >= 1``) by name."""
    from .models import start_values
    model = problem.model
    if not model.identifiable:
        return start_values(model, None, problem.x, config.seed + k)
    base = start_values(model, config.p0_dict, problem.x, config.seed)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + k)
    noise = torch.randn(len(base), generator=gen, dtype=torch.float64).tolist()
    return {n: v + max(abs(v), 1.0) * SPREAD * z for (n, v), z in zip(base.items(), noise)}


class MultiStartRun(Run):
    """Like ``FitRun``: iterates over the first start's records (the run one watches), then
    fits the other starts; ``result`` is the best one, its message saying so."""

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
        yield from first
        results = [first.result]
        for k in range(1, self.k):
            cfg = dataclasses.replace(self.config, p0=start_point(self.problem, self.config, k),
                                      seed=self.config.seed + k, starts=1)
            run = self._run_class(self.problem, cfg)
            for _ in run:
                pass
            results.append(run.result)
        self.result = best_of(results, self.problem.model.identifiable)


def best_of(results: list[FitResult], identifiable: bool) -> FitResult:
    """The lowest loss among the starts that neither failed nor diverged."""
    k = len(results)
    fine = [(r.loss, i) for i, r in enumerate(results) if r.ok]
    if not fine:
        r = results[0]
        r.message = f"all {k} starts failed; the first: {r.message}"
        return r
    loss, i = min(fine)
    r = results[i]
    counted = sum(1 for x in results if x.ok)
    head = (f"best of {k} starts (start {i}, {r.optimizer}: lowest loss of the {counted} that "
            f"did not fail)")
    if identifiable:
        r.message = f"{head}; {r.message}"
    else:
        r.message = f"{head}; {NO_CLAIM}; start {i} stopped: {r.message}"
        r.reason, r.converged = "starts", False
    return r
