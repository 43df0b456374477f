"""One series larger than memory: fits whose every step is one pass over Dask partitions.

- ``optimizer="lm"`` (mse, rmse): exact least squares by ``normal_lm``: each pass sums the
  partitions' ``S``, ``J^T J`` and ``J^T r`` (``normal_lm.partition_moments``), so a worker
  holds one partition and ``P x P`` numbers, never the whole series.
- ``optimizer="gd"``, ``"adam"`` (and the other full-batch ``torch.optim`` methods of
  gradfit: momentum, adamw, rmsprop), any loss: the loss and its gradient are sums over
  partitions (``mean`` = sum over partitions / N; rmse = sqrt of the mse), and gradfit's
  own stepper and stopping rules (``fit``'s ``ftol``, ``gtol``, divergence) run on the
  client, so the path is ``gradfit.fit``'s on the same data, up to the order of summation.

Partitions are summed in their order on one worker, so a rerun (a lost worker included)
gives the same numbers. ``persist=True`` keeps the partitions in the workers' memory
between passes (data that fits in the cluster; the default for a pandas DataFrame); else
each pass reads them again (from Parquet or CSV files), so memory per worker stays
O(partition + P^2).

    fit_out_of_core("a*exp(-b*t)", "big/*.parquet", x="t", y="v", p0={"a": 1, "b": 1})
"""
from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch

from .cluster import client_for
from .dask_tables import BadValue, as_numbers, read_columns, read_errors
from .many_data import column_names as _columns
from .errors import InputError
from .fit import DEFAULT_FTOL, DEFAULT_GTOL, _config
from .losses import get_loss
from .bounds import ParamTransform
from .models import check_param_names, make_model, start_values, table_inputs
from .ooc_bounds import bounded_lm
from .normal_lm import Moments, normal_lm, partition_moments, sum_moments
from .optimizers import OPTIMIZERS, batched_optimizers, make_stepper
from .result import REASONS



@dataclass
class OutOfCoreResult:
    """``params``, ``loss``, ``converged``, ``reason``, ``message``, ``steps``, ``passes``
    (over the data), ``stderr`` and ``covariance`` (lm; the free parameters off their
    bounds), ``n_points``; ``fixed``: the fixed parameters' values; ``at_bound``: name ->
    "lower" / "upper" for a parameter LM ended holding on a bound (no error of its own)."""

    params: dict[str, float]
    loss: float
    loss_name: str
    optimizer: str
    converged: bool
    reason: str
    message: str
    steps: int
    passes: int
    n_points: int
    wall_time: float
    stderr: dict[str, float] | None = None
    covariance: np.ndarray | None = field(default=None, repr=False)
    fixed: dict = field(default_factory=dict)
    at_bound: dict = field(default_factory=dict)


@lru_cache(maxsize=16)
def _model(spec, inputs):
    return make_model(spec, inputs)


def _arrays(frame, x_cols, y, sigma):
    x = frame[x_cols].to_numpy(dtype=np.float64)
    x = x[:, 0] if x.shape[1] == 1 else x
    s = None if sigma is None else frame[sigma].to_numpy(dtype=np.float64)
    return x, frame[y].to_numpy(dtype=np.float64), s


def _moments_task(frame, spec, inputs, x_cols, y, sigma, theta) -> Moments:
    x, yv, s = _arrays(frame, x_cols, y, sigma)    # (as_numbers checked them)
    return partition_moments(_model(spec, inputs), x, yv, s, theta)


def _loss_task(frame, spec, inputs, x_cols, y, sigma, theta, loss_name, delta):
    """The partition's sum of per-point losses and its gradient (mse's for rmse)."""
    x, yv, s = _arrays(frame, x_cols, y, sigma)    # (as_numbers checked them)
    n = len(yv)
    t = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    if n == 0:
        return 0.0, np.zeros(len(theta)), 0
    loss = get_loss("mse" if loss_name == "rmse" else loss_name, delta)
    xt, yt = torch.tensor(x), torch.tensor(yv)
    st = None if s is None else torch.tensor(s)
    with torch.enable_grad():
        total = loss(_model(spec, inputs)(xt, t), yt, st) * n
        (g,) = torch.autograd.grad(total, t)
    return float(total.detach()), g.numpy(), n


def _sum_losses(parts):
    total, grad, n = 0.0, 0.0, 0
    for v, g, k in parts:
        total, grad, n = total + v, grad + g, n + k
    return total, grad, n


class _Passes:
    """One pass over the partitions = one task graph: a task per partition and one sum."""

    def __init__(self, client, ddf, persist: bool):
        import dask
        self.dask = dask
        self.client = client
        self.parts = ddf.to_delayed()
        if persist:
            self.parts = client.persist(self.parts)
        self.count = 0

    def run(self, task, reduce, *args):
        delayed = self.dask.delayed
        sums = delayed(reduce)([delayed(task)(p, *args) for p in self.parts])
        self.count += 1
        return self.client.compute(sums).result()


class _SummedObjective(torch.autograd.Function):
    """The loss over every partition as a torch function of ``theta``: its forward pass is
    one pass over the data, which also gives the gradient that backward returns."""

    @staticmethod
    def forward(ctx, theta, evaluate):
        value, grad = evaluate(theta.detach().numpy())
        ctx.save_for_backward(torch.as_tensor(grad, dtype=theta.dtype))
        return torch.tensor(value, dtype=theta.dtype)

    @staticmethod
    def backward(ctx, out):
        (grad,) = ctx.saved_tensors
        return out * grad, None


class _Problem:
    """What a ``GradientStepper`` asks of a problem: ``n`` and ``objective(u)``, the loss at
    the model's parameters ``transform.external(u)`` (bounds and fixed values as ``fit``)."""

    def __init__(self, evaluate, n, loss, transform):
        self.evaluate, self.n, self.loss, self.transform = evaluate, n, loss, transform

    def objective(self, u, idx=None):
        return _SummedObjective.apply(self.transform.external(u), self.evaluate)


def fit_out_of_core(model, data, *, x, y, sigma=None, loss: str = "mse",
                    optimizer: str = "lm", p0=None, lr=None, steps: int = 1000,
                    ftol=None, gtol=None, schedule: str = "constant", delta: float = 1.0,
                    divergence: float = 1e4, seed: int = 0, absolute_sigma: bool = False,
                    bounds=None, fixed=None, scheduler=None, workers: int | None = None,
                    persist: bool | None = None, drop_nan: bool = False,
                    **options) -> OutOfCoreResult:
    """Fit ``model`` to one series held in Dask partitions (see the module's docstring).

    ``data``: a Dask or pandas DataFrame, or a path, folder or glob of Parquet or CSV
    files, with columns ``x`` (a name or a list), ``y`` and ``sigma``. The other arguments
    are ``gradfit.fit``'s, ``bounds`` and ``fixed`` included (``ooc_bounds``);
    ``scheduler``/``workers`` as ``gradfit.cluster.client_for``; ``drop_nan``: rows holding
    NaN or inf (or an empty cell) are left out (else refused, naming the file, its row and
    column, as a sigma <= 0 is: a CSV file's rows counted as lines in an editor, the
    header row 1, a Parquet file's from 1)."""
    t0 = time.perf_counter()
    lossf = get_loss(loss, delta)
    if optimizer == "auto":
        optimizer = "lm" if lossf.squared else "adam"
    gradient = batched_optimizers("gradient")
    if optimizer != "lm" and optimizer not in gradient:
        raise InputError(f"optimizer {optimizer!r} cannot run out of core",
                         expected="lm, " + ", ".join(gradient), given=optimizer)
    if optimizer == "lm" and not lossf.squared:
        raise InputError(f"optimizer 'lm' cannot minimise the {lossf.name} loss",
                         expected="a squared-error loss: mse or rmse (or gd, adam)")
    if not isinstance(steps, int) or steps < 1:
        raise InputError("bad steps", expected="a whole number >= 1", given=steps)
    # fit's own checks, in its words (FitConfig.validate): lr, ftol, gtol, schedule,
    # divergence by their rows of SETTINGS, a fixed value within its bounds, and only the
    # options the optimizer takes (a misspelt one had been ignored without a word)
    _config(model, loss, optimizer, lr, steps, p0 if isinstance(p0, Mapping) else None,
            seed, ftol, gtol, None, schedule, delta, divergence, "float64", "cpu", options,
            bounds, fixed, absolute_sigma)
    x_cols, cols = _columns(x, y, None, sigma)
    inputs = table_inputs(model, x_cols)
    m = make_model(model, inputs)
    spec = model if isinstance(model, str) else m
    names = m.param_names
    check_param_names(m, dict(bounds or {}), "bounds")
    check_param_names(m, dict(fixed or {}), "fixed")
    transform = ParamTransform(names, dict(bounds or {}), dict(fixed or {}))
    start, notes = transform.move_inside({**start_values(m, p0, None, seed), **transform.fixed})
    transform.internal(start)                 # a start outside its bounds is refused here
    theta0 = np.array([start[n] for n in names])
    table, files = read_columns(data, cols)
    ddf = as_numbers(table, finite=True, drop_nan=drop_nan, positive=sigma)
    if persist is None:           # data already in this process's memory: keep it in the workers'
        import pandas as pd
        persist = isinstance(data, pd.DataFrame)
    with client_for(scheduler, workers) as client, read_errors(files), \
            _named(files, x_cols, y, sigma, drop_nan):
        passes = _Passes(client, ddf, persist)
        if optimizer == "lm":
            out = _lm(passes, spec, inputs, x_cols, y, sigma, theta0, steps, options,
                      absolute_sigma, transform, lossf)
        else:
            out = _gradient(passes, spec, inputs, x_cols, y, sigma, start, lossf, optimizer,
                            lr, steps, ftol, gtol, schedule, seed, divergence, options,
                            transform)
    theta, S_or_loss, reason, message, nsteps, n, cov, free, at_bound = out
    loss_value = S_or_loss
    if optimizer == "lm":
        loss_value = S_or_loss / n if lossf.name == "mse" else math.sqrt(S_or_loss / n)
    stderr = None if cov is None else dict(zip(free, np.sqrt(np.clip(np.diag(cov), 0, None))
                                               .tolist()))
    if notes:
        message = "; ".join(notes) + "; " + message
    return OutOfCoreResult(dict(zip(names, theta.tolist())), float(loss_value), lossf.name,
                           optimizer, REASONS[reason][0], reason, message, nsteps,
                           passes.count, n, time.perf_counter() - t0, stderr, cov,
                           dict(transform.fixed), dict(at_bound))


@contextlib.contextmanager
def _named(files, x_cols, y, sigma, drop_nan):
    """A bad value met by a pass, named by its file, row and column (a partition knows its
    CSV file at most: the files are read again, up to the value, to say where it is)."""
    try:
        yield
    except BadValue as exc:
        if files is None:
            raise
        from .dask_files import bad_value
        found = bad_value(files, x_cols, y, sigma, drop_nan, exc.file)
        raise (found or exc) from None


def _lm(passes, spec, inputs, x_cols, y, sigma, theta0, steps, options, absolute_sigma,
        transform, lossf):
    def moments(theta):
        return passes.run(_moments_task, sum_moments, spec, inputs, x_cols, y, sigma, theta)

    first = moments(theta0)
    if first.n <= len(theta0):
        raise InputError(f"too few points ({first.n}) for {len(theta0)} parameters",
                         expected=f"more than {len(theta0)} points")
    calls = iter([first])

    def cached(theta):            # the first pass (counting the points) is the first moments
        return next(calls, None) or moments(theta)

    names = transform.names
    if not transform.identity:
        theta, S, reason, message, k, cov, free, at_bound = bounded_lm(
            cached, names, dict(zip(names, theta0.tolist())), transform.bounds,
            transform.fixed, lossf, n=first.n, steps=steps, options=options,
            absolute_sigma=absolute_sigma)
        return theta, S, reason, message, k, first.n, cov, free, at_bound
    r = normal_lm(cached, theta0, n=first.n, steps=steps, options=options,
                  absolute_sigma=absolute_sigma, names=names)
    return r.theta, r.S, r.reason, r.message, r.steps, r.n, r.covariance, names, {}


def _gradient(passes, spec, inputs, x_cols, y, sigma, start, lossf, optimizer, lr, steps,
              ftol, gtol, schedule, seed, divergence, options, transform):
    state = {}

    def evaluate(theta):
        total, grad, n = passes.run(_loss_task, _sum_losses, spec, inputs, x_cols, y, sigma,
                                    theta, lossf.name, lossf.delta)
        if n == 0:
            raise InputError("no data", expected="at least one row")
        state["n"] = n
        value, grad = total / n, np.asarray(grad, dtype=np.float64) / n
        if lossf.name == "rmse":
            value = math.sqrt(value)
            grad = grad / (2.0 * value) if value > 0 else grad * 0.0
        return value, grad

    theta = transform.internal(start).requires_grad_(True)
    lr = OPTIMIZERS[optimizer].default_lr if lr is None else float(lr)
    stepper = make_stepper(optimizer, _Problem(evaluate, 0, lossf, transform), theta, lr=lr,
                           steps=steps, schedule=schedule, seed=seed, **options)
    ftol = DEFAULT_FTOL if ftol is None else ftol
    gtol = DEFAULT_GTOL if gtol is None else gtol
    reason, message = "max_steps", f"reached the step limit ({steps} steps)"
    first = prev = None
    last_good = theta.detach().clone()
    done = 0
    while done < steps:           # fit.FitRun's loop and stopping rules
        point = theta.detach().clone()
        loss, gnorm = stepper.step()
        first = loss if first is None else first
        if not (math.isfinite(loss) and math.isfinite(gnorm)) or loss > divergence * max(first, 1e-300):
            reason, message = "diverged", f"diverged at step {done}: try a smaller learning rate"
            theta = last_good
            break
        last_good = point
        done += 1
        if gnorm <= gtol:
            reason, message = "gtol", f"the gradient norm {gnorm:.3g} fell to gtol={gtol:g} or below"
            break
        if prev is not None and abs(prev - loss) <= ftol * max(abs(prev), 1e-300):
            reason, message = "ftol", "the loss stopped changing (relative change at most " \
                                      f"ftol={ftol:g})"
            break
        prev = loss
    with torch.no_grad():
        final = transform.external(theta.detach()).numpy().copy()
    for i, name in enumerate(transform.names):     # as fit: the values inside their bounds
        lo, hi = transform.bounds.get(name, (-math.inf, math.inf))
        final[i] = min(max(final[i], lo), hi)
    value, _ = evaluate(final)
    return final, value, reason, message, done, state["n"], None, transform.free, {}
