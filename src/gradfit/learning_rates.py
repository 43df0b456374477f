"""Learning rates, as plain numbers: sweeps labelled by a stated rule, and a finder.

A *learning-rate sweep* runs the same fit at several rates and labels each run by
``classify_run`` (rule: ``LR_RULE``); ``lr_find`` grows the rate exponentially over one
short run, as fastai's ``lr_find``, and suggests a rate. The pictures (``gradfit.plots``)
and the web playground share these.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch

from .errors import InputError
from .fit import fit
from .fit_prepare import prepare
from .landscape import _json_rows, _theta
from .lr_batch import sweep_fits
from .models import start_values
from .optimizers import OPTIMIZERS, get_optimizer, make_stepper


LR_LABELS = ("diverged", "at the minimum", "bouncing", "too slow", "good")

LR_RULE = ("diverged: the loss became non-finite or ran away (it ended above its start "
           "and its highest value in the run's second half is over 10% above the highest "
           "in its first half: still growing); "
           "at the minimum: else, the run started at a minimum (fit's first-order test: the "
           "gradient's largest cosine with the residuals at most 1e-3) and its loss stayed "
           "there (within 1e-9 of itself or 1e-14 of the loss at zero parameters: "
           "rounding): no rate has anything to gain; "
           "bouncing: else, the loss ended above its start (beyond rounding: a bounded "
           "overshoot) or rose in more than a quarter of the steps (a rise counts when it "
           "is over 1% of the run's range of losses: the jitter of a converged run is no "
           "bounce); "
           "too slow: else, the loss fell by less than half the best run's fall; "
           "good: the rest. Past the start's test, the rule reads the loss only: steps that "
           "zig-zag across a valley while the loss falls at every step are good.")

RISE_TOL = 1e-9     # a rise smaller than this, relatively, is rounding, not a bounce
RISE_OF_RANGE = 0.01   # ... and one under this share of the run's range is jitter
RUNAWAY_GROWTH = 0.10  # the second half's peak over the first half's: still growing


def classify_run(history: Sequence[float], best_drop: float, diverged: bool = False,
                 minimum: float | None = None) -> str:
    """Label one run of a learning-rate sweep by ``LR_RULE``, checked in this order:

    - ``diverged``: ``diverged`` is set (the fit stopped because its loss ran away), a
      loss is non-finite, or the loss runs away (``ran_away``: it ended above its start
      and is still growing; checked after the next rule); a bounded oscillation (gd on
      mae at a large rate bounces between two losses for ever) is no divergence;
    - ``at the minimum``: ``minimum`` is given (the sweep's start is a minimum, and
      ``minimum`` the loss's rounding level there: ``start_minimum``) and the loss stayed
      at its start within it or ``RISE_TOL`` of itself (``stayed``);
    - ``bouncing``: the loss ended above its start beyond ``RISE_TOL`` (a bounded
      overshoot), or rose in more than a quarter of the steps, a rise counting when it is
      over ``RISE_OF_RANGE`` of the run's range of losses (and over ``RISE_TOL``
      relatively): the jitter of a run that has converged is no bounce;
    - ``too slow``: the fall ``history[0] - history[-1]`` is under ``best_drop / 2`` (or
      not positive), where ``best_drop`` is the largest fall of the sweep's runs that did
      not diverge;
    - ``good``: the rest.

    ``history``: the loss at the start of each step and at the end (``FitResult.history``).

        >>> classify_run([4, 3, 2, 1], best_drop=3)
        'good'
        >>> classify_run([4, 3.9, 3.8], best_drop=3)
        'too slow'
        >>> classify_run([4, 2, 3, 1, 2, 0.5], best_drop=3.5)
        'bouncing'
        >>> classify_run([4, 1] + [1.001, 1.0] * 10, best_drop=3)     # jitter at the end
        'good'
        >>> classify_run([4, 5], best_drop=3), classify_run([4, float("nan")], best_drop=3)
        ('diverged', 'diverged')
        >>> classify_run([4] + [10, 6] * 20, best_drop=3)       # a bounded 2-cycle
        'bouncing'
        >>> classify_run([2e-31, 4e-31], best_drop=0.0, minimum=1e-14)
        'at the minimum'
    """
    h = np.asarray(history, dtype=float)
    if diverged or h.size == 0 or not np.isfinite(h).all():
        return "diverged"
    if minimum is not None and stayed(h, minimum):
        return "at the minimum"
    if ran_away(h):
        return "diverged"
    steps = h.size - 1
    floor = np.maximum(RISE_TOL * np.maximum(np.abs(h[:-1]), 1e-300),
                       RISE_OF_RANGE * (h.max() - h.min()))
    rises = int(np.sum(h[1:] - h[:-1] > floor))
    if h[-1] - h[0] > floor[0] or (steps and rises > steps / 4):
        return "bouncing"
    drop = h[0] - h[-1]
    if drop <= 0 or drop < best_drop / 2:
        return "too slow"
    return "good"


def stayed(history: Sequence[float], floor: float = 0.0) -> bool:
    """Whether every loss of a run is its start's within ``RISE_TOL`` of it or ``floor``
    (the loss's rounding level: a loss at zero moves by rounding alone).

        >>> stayed([2.0, 2.0 + 1e-15, 2.0]), stayed([2.0, 1.9]), stayed([0, 1e-20], 1e-14)
        (True, False, True)
    """
    h = np.asarray(history, dtype=float)
    return bool(h.size and np.isfinite(h).all()
                and np.abs(h - h[0]).max() <= max(RISE_TOL * abs(h[0]), floor, 1e-300))


def ran_away(history: Sequence[float]) -> bool:
    """Whether a loss runs away: it ended above its start, and the highest loss of the
    run's second half is over ``1 + RUNAWAY_GROWTH`` times the highest of its first half
    (the halves share the middle point of an odd run). A bounded oscillation has the same
    peak in both halves.

        >>> ran_away([1, 3, 2, 6, 4, 12, 8]), ran_away([1, 5, 2, 5, 2, 5, 2])
        (True, False)
    """
    h = np.asarray(history, dtype=float)
    if h.size < 2 or not h[-1] > h[0]:
        return False
    first, second = h[:(h.size + 1) // 2], h[h.size // 2:]
    return bool(second.max() > (1 + RUNAWAY_GROWTH) * first.max())


@dataclass
class SweepRun:
    """One run of a sweep: its rate, the ``FitResult``, its fall and its label."""

    lr: float
    result: object
    drop: float
    label: str

    def to_dict(self) -> dict:
        return {"lr": self.lr, "label": self.label, "drop": _finite(self.drop),
                "result": self.result.to_dict()}


@dataclass
class Sweep:
    """A learning-rate sweep: ``runs`` in the order of the rates, ``best_drop``, ``rule``."""

    runs: list[SweepRun]
    best_drop: float
    rule: str = LR_RULE

    @property
    def labels(self) -> dict[float, str]:
        return {r.lr: r.label for r in self.runs}

    def to_dict(self) -> dict:
        return {"rule": self.rule, "best_drop": _finite(self.best_drop),
                "runs": [r.to_dict() for r in self.runs]}


def _finite(v: float):
    return v if math.isfinite(v) else None


MAX_RATES = 100     # a sweep's curves: more are unreadable in one picture, and cost minutes


def check_lrs(lrs) -> list[float]:
    """Learning rates: one to ``MAX_RATES``, each a positive finite number."""
    try:
        out = [float(v) for v in lrs]
    except (TypeError, ValueError):
        raise InputError("bad learning rates", expected="positive numbers", given=lrs) from None
    if not out or any(not (math.isfinite(v) and v > 0) for v in out):
        raise InputError("bad learning rates", expected="one or more positive finite numbers",
                         given=",".join(f"{v:g}" for v in out) or "no rates")
    if len(out) > MAX_RATES:
        raise InputError("too many learning rates", expected=f"at most {MAX_RATES} rates",
                         given=len(out))
    return out


def label_runs(results: Sequence, lrs: Sequence[float], minimum: float | None = None) -> Sweep:
    """Label finished fits (one per rate) by ``classify_run``; ``minimum``: their start is
    a minimum, and this the loss's rounding level there (``start_minimum``)."""
    ran_away = [r.reason == "diverged" for r in results]
    drops = [float(r.history[0] - r.history[-1]) for r in results]
    ok = [d for d, bad, r in zip(drops, ran_away, results)
          if not bad and classify_run(r.history, 0.0) != "diverged" and math.isfinite(d)]
    best = max(ok, default=0.0)
    runs = [SweepRun(float(lr), r, d, classify_run(r.history, best, bad, minimum))
            for lr, r, d, bad in zip(lrs, results, drops, ran_away)]
    return Sweep(runs, best)


_PROBLEM_ARGS = ("sigma", "loss", "delta", "device", "inputs", "jac")


def start_minimum(model, x, y, results: Sequence, fit_kwargs: Mapping) -> float | None:
    """Where a run of the sweep stayed at its start (``stayed``) and the start is a minimum by
    ``fit``'s own first-order test (``stationary.plateau_message``: no largest cosine between
    the residuals and a Jacobian column over 1e-3, no Gauss-Newton gain, no fall nearby on
    a kink) in the free parameters: the loss's rounding level there, ``EXACT`` times the
    loss at zero parameters (the data's scale; the start's own loss where that is not
    finite). Else None."""
    from .fit_prepare import DTYPE
    from .stationary import EXACT, _loss_scale, plateau_message
    kw = {k: fit_kwargs[k] for k in _PROBLEM_ARGS if fit_kwargs.get(k) is not None}
    problem = prepare(model, x, y, dtype=DTYPE[fit_kwargs.get("dtype", "float64")], **kw)
    first = results[0]
    start = torch.as_tensor(np.asarray(first.trajectory[0], dtype=float),
                            dtype=problem.y.dtype, device=problem.y.device)
    h0 = float(first.history[0])
    floor = EXACT * (_loss_scale(problem, start, None) or abs(h0))   # the loss at zero
    if not any(r.reason != "diverged" and stayed(r.history, floor) for r in results):
        return None
    names = problem.model.param_names
    free = tuple(n for n in names if n not in (fit_kwargs.get("fixed") or {}))
    return floor if plateau_message(problem, start, free, final_loss=h0) is None else None


def check_sweep_optimizer(name: str) -> None:
    """A sweep compares learning rates: refuse a method that ignores the rate (lm and irls
    set their own steps, lbfgs's line search does; auto mostly picks lm or irls), as
    ``lr_find`` does."""
    spec = get_optimizer(name)
    if name not in finder_optimizers():
        why = ("it sets its own steps for most fits (it picks lm or irls, which take no "
               "rate)") if spec.choose is not None else \
            "it sets its own steps, so every rate would give the same run"
        raise InputError(f"a learning-rate sweep cannot use optimizer {name!r}: {why}",
                         expected="a gradient optimizer: " + ", ".join(finder_optimizers()))


def lr_sweep(model, x, y, lrs: Sequence[float], *, optimizer: str = "gd", steps: int = 100,
             **fit_kwargs) -> Sweep:
    """The same fit at each learning rate (``fit_kwargs`` as for ``fit``), labelled by
    ``classify_run``. The rates run as one batched run (``lr_batch.sweep_fits``) where it
    can; bounds, fixed values and sgd run ``fit`` once per rate. An optimizer that ignores
    the rate (lm, irls, auto, lbfgs) is refused (``check_sweep_optimizer``).

        >>> from gradfit.data import lesson_data
        >>> d = lesson_data()
        >>> s = lr_sweep("a*x^2 + b*x + c", d.x, d.y, [0.001, 0.05, 0.4], steps=30)
        >>> [r.label for r in s.runs]
        ['too slow', 'good', 'diverged']
    """
    lrs = check_lrs(lrs)
    check_sweep_optimizer(optimizer)
    results = sweep_fits(model, x, y, lrs, optimizer=optimizer, steps=steps, **fit_kwargs)
    if results is None:
        results = [fit(model, x, y, optimizer=optimizer, lr=lr, steps=steps, **fit_kwargs)
                   for lr in lrs]
    # a run that stayed where it began: at a minimum, or too slow to move? fit's own test
    return label_runs(results, lrs, start_minimum(model, x, y, results, fit_kwargs))


# ---------------------------------------------------------------- the learning-rate finder

@dataclass
class LRFind:
    """What ``lr_find`` saw: the rate and the loss of each step, and its suggestions.

    ``suggestion`` is ``valley``; ``steep`` and ``minimum`` are fastai's other two.
    ``stopped``: why the run ended ("end", "diverged" or "non-finite")."""

    lrs: np.ndarray
    losses: np.ndarray
    suggestion: float
    valley: float
    steep: float
    minimum: float
    stopped: str
    details: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"lrs": self.lrs.tolist(), "losses": _json_rows(self.losses),
                "suggestion": self.suggestion, "valley": self.valley, "steep": self.steep,
                "minimum": self.minimum, "stopped": self.stopped}


def valley(lrs: np.ndarray, losses: np.ndarray, flat: float = 0.01) -> int:
    """fastai's "valley" suggestion: the index about halfway into the longest valley.

    The longest valley is the longest falling sequence of losses (a longest decreasing
    subsequence), whose length ``L`` ends at index ``end``; it is taken to span
    ``[end - L, end]``. The suggestion sits ``1/3 + 1/6`` of the way in: on the steep
    part of the descent, well before the bottom where the loss is about to blow up.

    One change from fastai: a fall counts only when it exceeds ``flat`` times the range
    of the losses. fastai's losses are noisy mini-batch losses, so their flat start is
    no valley; a full-batch run falls by tiny amounts from the first step, and without
    this tolerance the valley would begin at the smallest rate (``flat=0``: fastai's own).

        >>> losses = np.array([10.0, 9, 8, 7, 6, 5, 4, 3, 2, 1, 50])
        >>> valley(np.arange(11.0), losses)
        3
    """
    n = len(losses)
    tol = flat * float(np.ptp(losses)) if n else 0.0
    run = [1] * n               # run[i]: length of the longest falling sequence ending at i
    start = end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] - tol and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[end] < run[i]:
                end, start = i, i - run[i]
    third = (end - start) / 3
    return min(n - 1, max(0, start + int(third) + int(third / 2)))


def steepest(lrs: np.ndarray, losses: np.ndarray) -> int:
    """fastai's "steep": the index where the loss falls fastest against ``log(lr)``."""
    if len(losses) < 2:
        return 0
    slope = np.diff(losses) / np.diff(np.log(lrs))
    return int(np.nanargmin(slope))


def finder_optimizers() -> list[str]:
    """The optimizers ``lr_find`` can drive: those that take one plain step at a given
    rate (not L-BFGS's line search, not LM or IRLS, which ignore the rate)."""
    return [name for name, spec in OPTIMIZERS.items() if spec.rule is not None]


def check_finder_optimizer(name: str) -> None:
    get_optimizer(name)
    if name not in finder_optimizers():
        raise InputError(f"lr_find cannot drive optimizer {name!r}",
                         expected="a gradient optimizer: " + ", ".join(finder_optimizers()))


def lr_find(model, x, y, *, sigma=None, loss: str = "mse", delta: float = 1.0,
            optimizer: str = "gd", start_lr: float = 1e-7, end_lr: float = 10.0,
            num_it: int = 100, stop_div: bool = True, p0: Mapping[str, float] | None = None,
            seed: int = 0, inputs=None, **options) -> LRFind:
    """fastai's learning-rate finder: one run in which step ``i`` uses
    ``lr_i = start_lr * (end_lr / start_lr) ** (i / (num_it - 1))``, recording the loss
    each step starts from. It stops when the loss turns non-finite or (``stop_div``)
    exceeds four times the best loss so far.

    Suggestions, as fastai computes them (on the run less its first tenth and last five
    steps, when long enough): ``valley`` (see ``valley``; the default ``suggestion``),
    ``steep`` (the steepest fall of the loss against ``log lr``), ``minimum`` (the rate of
    the lowest loss, divided by 10).

        >>> from gradfit.data import lesson_data
        >>> d = lesson_data()
        >>> f = lr_find("a*x^2 + b*x + c", d.x, d.y, num_it=60)
        >>> f.stopped, 1e-3 < f.suggestion < 0.3
        ('diverged', True)
    """
    if not (0 < start_lr < end_lr and math.isfinite(end_lr)):
        raise InputError("bad learning-rate range", expected="0 < start_lr < end_lr",
                         given=(start_lr, end_lr))
    if not isinstance(num_it, int) or num_it < 2:
        raise InputError("bad num_it", expected="a whole number >= 2", given=num_it)
    check_finder_optimizer(optimizer)
    # the options by the table's rows, as fit's (momentum 1.5 had run unchecked here)
    from .config import check_optimizer_options
    check_optimizer_options(optimizer, options)
    problem = prepare(model, x, y, sigma, loss=loss, delta=delta, inputs=inputs)
    start = start_values(problem.model, p0, problem.x, seed)
    theta = _theta(problem, start).requires_grad_(True)
    stepper = make_stepper(optimizer, problem, theta, lr=start_lr, steps=num_it, seed=seed, **options)
    opt = stepper.opt
    ratio = (end_lr / start_lr) ** (1 / (num_it - 1))
    lrs, losses, stopped, best = [], [], "end", math.inf
    for i in range(num_it):
        lr = start_lr * ratio ** i
        for group in opt.param_groups:
            group["lr"] = lr
        value, _ = stepper.step()
        if not math.isfinite(value):
            stopped = "non-finite"
            break
        lrs.append(lr)
        losses.append(value)
        best = min(best, value)
        if stop_div and value > 4 * best:
            stopped = "diverged"
            break
    lrs_a, losses_a = np.array(lrs), np.array(losses)
    lo, hi = (num_it // 10, len(lrs) - 5) if len(lrs) - 5 - num_it // 10 >= 3 else (0, len(lrs))
    sl, sv = lrs_a[lo:hi], losses_a[lo:hi]
    if sl.size == 0:
        raise InputError("the learning-rate finder saw no finite loss",
                         expected="a start where the loss is finite")
    v, s = float(sl[valley(sl, sv)]), float(sl[steepest(sl, sv)])
    m = float(sl[int(np.argmin(sv))]) / 10
    return LRFind(lrs_a, losses_a, v, v, s, m, stopped,
                  {"window": (lo, hi), "optimizer": optimizer, "loss": problem.loss.name})


__all__ = ["LR_RULE", "LR_LABELS", "classify_run", "ran_away", "stayed", "check_sweep_optimizer",
           "Sweep", "SweepRun", "lr_sweep", "label_runs", "start_minimum",
           "check_lrs", "LRFind", "lr_find", "finder_optimizers", "check_finder_optimizer",
           "valley", "steepest"]
