"""The fit loop: ``iter_fit`` yields one ``StepRecord`` per step; ``fit`` drains it.

Observers (a progress bar, a picture, a web stream) iterate over ``iter_fit`` and never
reach into the loop::

    >>> from gradfit.data import lesson_data
    >>> d = lesson_data()
    >>> run = iter_fit("a*x^2 + b*x + c", d.x, d.y, loss="mae", optimizer="gd", lr=0.01,
    ...                steps=3, p0={"a": 1.1, "b": 1.1, "c": 1.1})
    >>> [round(r.loss, 4) for r in run]
    [2.4219, 2.401, 2.3802]
    >>> run.result.steps
    3

Stopping: the step limit, ``ftol`` (relative change of the loss), ``gtol`` (gradient
norm), ``time_limit`` (seconds), or a ``callback(record)`` returning True. Divergence (a
non-finite loss or parameter, or a loss above ``divergence`` times its start) stops the
fit with reason ``"diverged"``; the result then holds the last finite point, never a NaN.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from .config import FitConfig
from .errors import FitError, InputError
from .losses import get_loss
from .models import Model, make_model, start_values
from .optimizers import make_stepper
from .bounds import ParamTransform, TransformedProblem
from .problem import Problem
from .result import REASONS, FitResult, StepRecord, goodness, least_squares_covariance

DTYPE = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_FTOL, DEFAULT_GTOL = 1e-12, 1e-10   # for gradient methods; lm and irls stop themselves


def check_device(device) -> None:
    """A device this machine has: refuse ``cuda`` on a machine or build without it."""
    name = str(device)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} is not available here (this torch build or "
                         "machine has no CUDA GPU)", expected="--device cpu, or a CUDA build "
                         "of torch on a machine with an NVIDIA GPU")
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist",
                         expected=f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' is not available here", expected="--device cpu")


def _tensor(name: str, value, dtype, device) -> torch.Tensor:
    try:
        t = value if isinstance(value, torch.Tensor) else torch.tensor(np.array(value, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad {name}", expected="an array of numbers", given=str(exc)) from None
    return t.to(dtype=dtype, device=device)


def prepare(model, x, y, sigma=None, *, loss="mse", delta=1.0, dtype=torch.float64,
            device="cpu", inputs=None) -> Problem:
    """Check and convert the user's data into a ``Problem`` (the boundary of the core)."""
    check_device(device)
    xt, yt = _tensor("x", x, dtype, device), _tensor("y", y, dtype, device)
    if xt.ndim == 2 and xt.shape[1] == 1 and (inputs is None or len(inputs) == 1):
        xt = xt[:, 0]                                    # the lesson's (n, 1) column
    if yt.ndim == 2 and yt.shape[1] == 1:
        yt = yt[:, 0]
    if yt.ndim != 1 or xt.ndim not in (1, 2) or xt.shape[0] != yt.shape[0]:
        raise InputError("x and y do not match", expected="x shaped (n,) or (n, d) and y (n,)",
                         given=f"x {tuple(xt.shape)}, y {tuple(yt.shape)}")
    if yt.shape[0] == 0:
        raise InputError("no data", expected="at least one point")
    if not (torch.isfinite(xt).all() and torch.isfinite(yt).all()):
        raise InputError("the data hold NaN or inf", expected="finite numbers")
    st = None
    if sigma is not None:
        st = _tensor("sigma", sigma, dtype, device).reshape(-1)
        if st.shape != yt.shape or not (torch.isfinite(st).all() and (st > 0).all()):
            raise InputError("bad sigma", expected=f"{yt.shape[0]} positive finite numbers")
    if inputs is None:
        inputs = ("x",) if xt.ndim == 1 else tuple(f"x{i + 1}" for i in range(xt.shape[1]))
    m = make_model(model, inputs)
    return Problem(m, xt, yt, st, get_loss(loss, delta))


class FitRun:
    """An iterator of ``StepRecord``; ``result`` holds the ``FitResult`` once it is done."""

    def __init__(self, problem: Problem, config: FitConfig, callback=None):
        self.problem, self.config, self.callback = problem, config, callback
        self.result: FitResult | None = None
        self._gen = self._run()

    def __iter__(self) -> Iterator[StepRecord]:
        return self._gen

    def __next__(self) -> StepRecord:
        return next(self._gen)

    def _run(self) -> Iterator[StepRecord]:
        cfg, prob = self.config, self.problem
        names = prob.model.param_names
        dtype, device = prob.y.dtype, prob.y.device
        start = start_values(prob.model, cfg.p0_dict, prob.x, cfg.seed)
        start.update(cfg.fixed_dict)
        transform = ParamTransform(names, cfg.bounds_dict, cfg.fixed_dict, dtype, device)
        start = transform.move_inside(start, keep=set(cfg.p0_dict))
        moved = prob if transform.identity else TransformedProblem(prob, transform)
        theta = transform.internal(start).requires_grad_(True)     # what the optimizer moves
        lr = cfg.learning_rate
        stepper = make_stepper(cfg.optimizer, moved, theta, lr=lr, steps=cfg.steps,
                               schedule=cfg.schedule, seed=cfg.seed, **cfg.options_dict)
        self.transform = transform
        self.stepper = stepper                 # observers may retune it between steps (the playground's lr)
        chosen = getattr(stepper, "chosen", None)
        self.method = f"{cfg.optimizer} ({chosen})" if chosen else cfg.optimizer
        external = transform.external if not transform.identity else torch.Tensor.clone
        if transform.identity and getattr(stepper, "replaces_storage", False):
            external = _same                   # theta's old storage is never written again
        # a method that knows when it is done (lm, irls) stops itself unless told otherwise
        own = getattr(stepper, "own_stopping", False)
        ftol = cfg.ftol if cfg.ftol is not None else (-1.0 if own else DEFAULT_FTOL)
        gtol = cfg.gtol if cfg.gtol is not None else (-1.0 if own else DEFAULT_GTOL)
        points: list[torch.Tensor] = []       # theta at the start of each step
        losses, gnorms = [], []
        reason, detail = "max_steps", f"reached the step limit ({cfg.steps} steps)"
        t0 = time.perf_counter()
        first = prev = None
        step = 0
        while step < cfg.steps:
            point = external(theta.detach())
            loss, gnorm = stepper.step()
            if first is None:
                first = loss
            bad = _divergence(loss, gnorm, first, cfg.divergence)
            if bad:
                reason, detail = "diverged", self._diverged_text(step, bad, losses, lr)
                break
            points.append(point)
            losses.append(loss)
            gnorms.append(gnorm)
            record = StepRecord(step, loss, gnorm, point, names, lr)
            yield record
            step += 1
            if stepper.stop is not None:
                reason, detail = stepper.stop
                break
            if gnorm <= gtol:
                reason, detail = "gtol", f"the gradient norm {gnorm:.3g} fell below gtol={gtol:g}"
                break
            if prev is not None and abs(prev - loss) <= ftol * max(abs(prev), 1e-300):
                reason, detail = "ftol", f"the loss stopped changing (relative change below ftol={ftol:g})"
                break
            prev = loss
            if cfg.time_limit is not None and time.perf_counter() - t0 > cfg.time_limit:
                reason, detail = "time_limit", f"reached the time limit ({cfg.time_limit:g} s)"
                break
            if self.callback is not None and self.callback(record):
                reason, detail = "callback", f"stopped by the callback at step {step - 1}"
                break
        if reason == "diverged" and not points:
            points.append(point)
        self.result = self._finish(theta, points, step, losses, gnorms, reason, detail,
                                   start, lr, time.perf_counter() - t0)

    def _diverged_text(self, step, what, losses, lr):
        last = f"last finite loss {losses[-1]:.6g} at step {step - 1}" if losses else "no finite loss"
        return (f"diverged at step {step}: {what} ({last}); "
                f"try a smaller learning rate, e.g. lr={lr / 10:g}")

    def _finish(self, theta, points, step, losses, gnorms, reason, detail, start, lr, wall):
        cfg, prob = self.config, self.problem
        # after a divergence, the last point whose loss was finite
        final = points[-1] if reason == "diverged" else self.transform.external(theta.detach()).clone()
        with torch.no_grad():
            final_loss = prob.objective(final).item()
        if reason != "diverged" and (not math.isfinite(final_loss)
                                     or not torch.isfinite(final).all()
                                     or (losses and final_loss > cfg.divergence * max(losses[0], 1e-300))):
            reason = "diverged"
            detail = self._diverged_text(step, "the loss or a parameter became non-finite after "
                                         "the last step", losses, lr)
            final = points[-1] if points else final
            with torch.no_grad():
                final_loss = prob.objective(final).item()
        history = np.array(losses + [final_loss])
        trajectory = torch.stack(points[:len(losses)] + [final]).cpu().numpy()
        names = prob.model.param_names
        params = dict(zip(names, final.tolist()))
        stderr = cov = None
        if prob.loss.squared and reason != "diverged":
            free = self.transform.free
            idx = torch.tensor([names.index(n) for n in free], device=final.device)
            cov = least_squares_covariance(
                lambda f: prob.residuals(final.index_put((idx,), f)), final[idx],
                absolute_sigma=cfg.absolute_sigma)
            if cov is not None:
                stderr = dict(zip(free, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist()))
            elif len(free) < prob.n and "rank" not in detail:
                detail += ("; no standard errors: the Jacobian has lost rank (some parameters "
                           "are not determined by the data)")
                if prob.model.identifiable:         # the values are one choice among many
                    reason = "failed"
        with torch.no_grad():
            r2, rmse = goodness(prob.predict(final), prob.y)
        return FitResult(
            params=params, loss=final_loss, loss_name=prob.loss.name, model=prob.model.spec,
            optimizer=self.method, lr=lr, steps=len(losses), converged=REASONS[reason][0],
            reason=reason, message=detail, history=history, trajectory=trajectory,
            grad_norms=np.array(gnorms), wall_time=wall, n_points=prob.n, stderr=stderr,
            covariance=cov, r2=r2, rmse=rmse, start=start, model_object=prob.model,
            x=prob.x.cpu().numpy(), y=prob.y.cpu().numpy(),
            sigma=None if prob.sigma is None else prob.sigma.cpu().numpy())


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _divergence(loss: float, gnorm: float, first: float, factor: float) -> str | None:
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    if not math.isfinite(gnorm):
        return f"the gradient became {gnorm}"
    if loss > factor * max(first, 1e-300) and loss > 1e-12:
        return f"the loss {loss:.6g} grew beyond {factor:g} times its start {first:.6g}"
    return None


def _config(model, loss, optimizer, lr, steps, p0, seed, ftol, gtol, time_limit, schedule,
            delta, divergence, dtype, device, options, bounds=None, fixed=None,
            absolute_sigma=False) -> FitConfig:
    spec = model if isinstance(model, str) else getattr(model, "spec", None) or \
        getattr(model, "__name__", "function")
    dt = dtype if isinstance(dtype, str) else {v: k for k, v in DTYPE.items()}.get(dtype, str(dtype))
    return FitConfig(model=spec, loss=loss, delta=delta, optimizer=optimizer, lr=lr, steps=steps,
                     p0=dict(p0 or {}), seed=seed, ftol=ftol, gtol=gtol, time_limit=time_limit,
                     schedule=schedule, options=options, divergence=divergence, dtype=dt,
                     device=str(device), bounds=dict(bounds or {}), fixed=dict(fixed or {}),
                     absolute_sigma=bool(absolute_sigma))


def iter_fit(model: "str | Callable | Model", x, y, *, sigma=None, loss: str = "mse",
             optimizer: str = "auto", lr: float | None = None, steps: int = 1000,
             p0: Mapping[str, float] | None = None, seed: int = 0, ftol: float | None = None,
             gtol: float | None = None, time_limit: float | None = None,
             callback: Callable[[StepRecord], bool] | None = None, schedule: str = "constant",
             delta: float = 1.0, divergence: float = 1e4, dtype="float64", device="cpu",
             inputs=None, bounds: Mapping[str, tuple] | None = None,
             fixed: Mapping[str, float] | None = None, absolute_sigma: bool = False,
             **options) -> FitRun:
    """Fit ``model`` to ``(x, y)``, one ``StepRecord`` per step; see ``fit`` for arguments."""
    cfg = _config(model, loss, optimizer, lr, steps, p0, seed, ftol, gtol, time_limit,
                  schedule, delta, divergence, dtype, device, options, bounds, fixed,
                  absolute_sigma)
    problem = prepare(model, x, y, sigma, loss=loss, delta=delta, dtype=DTYPE[cfg.dtype],
                      device=device, inputs=inputs)
    if problem.model.n_params == 0:
        raise InputError(f"model {problem.model.spec!r} has no parameters to fit",
                         expected="at least one free name besides the inputs")
    start = start_values(problem.model, cfg.p0_dict, problem.x, seed)   # refuse bad p0 now
    check = ParamTransform(problem.model.param_names, cfg.bounds_dict, cfg.fixed_dict)
    check.internal(check.move_inside({**start, **cfg.fixed_dict}, set(cfg.p0_dict)))
    return FitRun(problem, cfg, callback)


def fit(model: "str | Callable | Model", x, y, **kwargs) -> FitResult:
    """Fit ``model`` to data ``x``, ``y`` and return a ``FitResult``.

    ``model``: an expression (``"a*x^2 + b*x + c"``), ``poly:K``, ``relu:K``, ``mlp:H1,H2``,
    a Python function ``f(x, a, b, ...)`` or a ``Model``. ``x``: ``(n,)`` or ``(n, d)``;
    ``y``: ``(n,)``; ``sigma``: per-point uncertainties (weights ``1/sigma``).
    ``loss``: mae, mse, rmse, huber (``delta``). ``optimizer``: gd, momentum, sgd, adam,
    adamw, rmsprop, lbfgs; ``lr`` (None: the optimizer's default), ``schedule``, and the
    optimizer's options (``accumulate_grad``, ``momentum``, ``nesterov``, ``batch_size``...).
    ``steps``, ``ftol``, ``gtol``, ``time_limit``, ``callback``: when to stop (``ftol`` and
    ``gtol`` default to 1e-12 and 1e-10 for gradient methods; lm and irls stop by their own
    rules, which reach full precision, unless these are given).
    ``p0``: starting values by name; ``seed``: random starts and batches.
    ``bounds``: name -> (low, high) (None or inf for no bound); ``fixed``: name -> value.
    ``absolute_sigma``: take ``sigma`` as absolute (covariance not scaled by the residual
    variance), as curve_fit's option of that name.
    ``dtype`` ("float64"), ``device`` ("cpu", "cuda").

        >>> import numpy as np
        >>> x = np.linspace(0, 1, 50); y = 2 * x + 1
        >>> r = fit("a*x + b", x, y, optimizer="lbfgs", steps=50)
        >>> round(r.params["a"], 6), round(r.params["b"], 6)
        (2.0, 1.0)
    """
    run = iter_fit(model, x, y, **kwargs)
    for _ in run:
        pass
    return run.result


def loss_and_grad(model, x, y, params: Mapping[str, float], *, sigma=None, loss: str = "mse",
                  delta: float = 1.0, inputs=None) -> tuple[float, dict[str, float]]:
    """The lesson's "by hand" step: the loss and its gradient at the given parameters.

        >>> from gradfit.data import lesson_data
        >>> d = lesson_data()
        >>> value, grad = loss_and_grad("a*x^2+b*x+c", d.x, d.y, {"a": 1.1, "b": 1.1, "c": 1.1},
        ...                             loss="mae")
        >>> round(value, 4), [round(g, 4) for g in grad.values()]
        (2.4219, [-1.3529, -0.0316, -0.5])
    """
    problem = prepare(model, x, y, sigma, loss=loss, delta=delta, inputs=inputs)
    names = problem.model.param_names
    missing = [n for n in names if n not in params]
    extra = [n for n in params if n not in names]
    if missing or extra:
        raise InputError("the parameters do not match the model",
                         expected="values for " + ", ".join(names),
                         given=", ".join(params) or "none")
    theta = torch.tensor([float(params[n]) for n in names], dtype=torch.float64, requires_grad=True)
    value = problem.objective(theta)
    value.backward()
    return value.item(), dict(zip(names, theta.grad.tolist()))


__all__ = ["fit", "iter_fit", "loss_and_grad", "prepare", "FitRun", "FitError"]
