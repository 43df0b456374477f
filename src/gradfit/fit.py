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
fit with reason ``"diverged"``; its ``params`` and ``loss`` then hold the last finite point,
never a NaN, while ``history`` and ``trajectory`` end with the point where the divergence
showed (step ``steps``: its loss may be inf or NaN), so that a picture shows the blow-up.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Iterator, Mapping

import numpy as np
import torch

from .config import FitConfig, check_finite, dtype_name, plain, unused_p0, unused_p0_note
from .errors import FitError, InputError
from .models import Model, check_param_names, start_values
from .batch_lm import data_norm
from .lm import free_residuals_and_jacobian, threads_for
from .optimizers import make_stepper
from .active_set import inner_share, near_bounds, refine
from .lm_codes import ROUGH, message as lm_message
from .bounds import ParamTransform, TransformedProblem
from .multistart import MultiStartRun, starts_for
from .stationary import one_sided_note, plateau_message, rounding_loss
from .fit_advice import far_start_text, no_finite_loss_advice, sizes
from .verdict import judge
from . import fit_ends
from .fit_ends import (WEAK_MU, determined, float32_short, refined_reason, stopped_short,
                       weakly_held)
from .problem import Problem
from .fit_prepare import DTYPE, prepare
from .result import REASONS, FitResult, Run, StepRecord, goodness, least_squares_errors

ROUGH_TEXT = lm_message(ROUGH, {})        # an LM end without a step (its prefix)

DEFAULT_FTOL, DEFAULT_GTOL = 1e-12, 1e-10   # for gradient methods; lm and irls stop themselves


class FitRun(Run):
    """An iterator of ``StepRecord``; ``result`` holds the ``FitResult`` once it is done.
    ``lean``: skip the covariance and the final checks (an inner solve of another fit)."""

    #: a start of a ``MultiStartRun``, which says what the whole run's p0 lost itself
    one_of_starts = False

    def __init__(self, problem: Problem, config: FitConfig, callback=None, lean: bool = False):
        self.problem, self.config, self.callback, self.lean = problem, config, callback, lean
        self.result: FitResult | None = None
        self.notes: list[str] = []
        self._gen = self._run()

    def _run(self) -> Iterator[StepRecord]:
        cfg, prob = self.config, self.problem
        names = prob.model.param_names
        dtype, device = prob.y.dtype, prob.y.device
        start = start_values(prob.model, cfg.p0_dict, prob.x, cfg.seed)
        start.update(cfg.fixed_dict)
        transform = ParamTransform(names, cfg.bounds_dict, cfg.fixed_dict, dtype, device)
        start, inside = transform.move_inside(start)
        quiet = self.lean or self.one_of_starts      # the p0 of an inner fit is no user's
        self.notes = inside + ([] if quiet else _unused_p0_notes(cfg))
        moved = prob if transform.identity else TransformedProblem(prob, transform)
        theta = transform.internal(start).requires_grad_(True)     # what the optimizer moves
        lr = cfg.learning_rate
        stepper = make_stepper(cfg.optimizer, moved, theta, lr=lr, steps=cfg.steps,
                               schedule=cfg.schedule, seed=cfg.seed, **cfg.options_dict)
        self.transform, self.stepper = transform, stepper
        self.lr = lr
        chosen = stepper.chosen
        if chosen is not None and stepper.has_lr:     # auto: the learning rate it chose
            lr = self.lr = stepper.lr
        self.method = f"{cfg.optimizer} ({chosen})" if chosen else cfg.optimizer
        self.exact_method = (chosen or cfg.optimizer) if (chosen or cfg.optimizer) in EXACT else None
        external = transform.external if not transform.identity else torch.Tensor.clone
        if transform.identity and stepper.replaces_storage:
            external = _same                   # theta's old storage is never written again
        # a method that knows when it is done (lm, irls) stops itself unless told otherwise
        own = stepper.own_stopping
        ftol = cfg.ftol if cfg.ftol is not None else (-1.0 if own else DEFAULT_FTOL)
        gtol = cfg.gtol if cfg.gtol is not None else (-1.0 if own else DEFAULT_GTOL)
        points: list[torch.Tensor] = []       # theta at the start of each step
        losses, gnorms = [], []
        reason, detail = "max_steps", f"reached the step limit ({cfg.steps} steps)"
        t0 = time.perf_counter()
        first = prev = None
        escape = None
        floor = _rounding_loss(prob)
        step = 0
        small = threads_for(prob)          # a small fit steps on one torch thread
        while step < cfg.steps:
            point = external(theta.detach())
            try:
                with small:
                    loss, gnorm = stepper.step()
                bad = None
            except torch.linalg.LinAlgError:    # a solve met the model's overflow
                loss = gnorm = math.inf
                bad = "the model overflowed (non-finite numbers reached a linear solve)"
            if first is None:
                first = loss
            bad = bad or _divergence(loss, gnorm, first, cfg.divergence, floor)
            if bad:
                reason, detail = "diverged", self._diverged_text(step, bad, losses, self.lr,
                                                                 point)
                escape = (point, float(loss))      # where the divergence showed
                break
            points.append(point)
            losses.append(loss)
            gnorms.append(gnorm)
            record = StepRecord(step, loss, gnorm, point, names, self.lr)
            yield record
            step += 1
            if stepper.stop is not None:
                reason, detail = stepper.stop
                break
            if gnorm <= gtol:
                reason, detail = "gtol", f"the gradient norm {gnorm:.3g} fell to gtol={gtol:g} or below"
                break
            if prev is not None and abs(prev - loss) <= ftol * max(abs(prev), 1e-300):
                reason, detail = "ftol", f"the loss stopped changing (relative change at most ftol={ftol:g})"
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
        with threads_for(prob):
            self.result = self._finish(theta, points, losses, gnorms, reason, detail,
                                       start, self.lr, t0, escape)

    def set_lr(self, value: float) -> None:
        """Change the learning rate from the next step on, keeping the optimizer's state
        (momentum, Adam's moments): what a learner's slider does mid-run."""
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise InputError("bad learning rate", expected="a positive finite number", given=value)
        if not self.stepper.has_lr:
            raise InputError(f"{self.method} has no learning rate",
                             expected="a gradient method: gd, momentum, sgd, adam, ...")
        self.stepper.set_lr(value)
        self.lr = float(value)

    def _diverged_text(self, step, what, losses, lr, point=None):
        if losses:
            last = f"last finite loss {losses[-1]:.6g} at step {step - 1}"
        else:               # the loss may be finite where its gradient is not (x^a at x <= 0)
            with torch.no_grad():
                start = float(self.problem.objective(point)) if point is not None else math.nan
            last = f"loss {start:.6g} at the start" if math.isfinite(start) else "no finite loss"
        if losses and self.stepper.has_lr:
            advice = f"try a smaller learning rate, e.g. lr={lr / 10:g}"
        else:           # no step to blame: the data's scale, or the model overflows here
            advice = no_finite_loss_advice(self.problem, point)
        return f"diverged at step {step}: {what} ({last}); {advice}"

    def _finish(self, theta, points, losses, gnorms, reason, detail, start, lr, t0,
                escape=None):
        cfg, prob = self.config, self.problem
        step = len(losses)
        # after a divergence, the last point whose loss was finite
        final = points[-1] if reason == "diverged" else self.transform.external(theta.detach()).clone()
        with torch.no_grad():
            final_loss = prob.objective(final).item()
        if reason != "diverged" and (not math.isfinite(final_loss)
                                     or not torch.isfinite(final).all()
                                     or (losses and _divergence(final_loss, 0.0, losses[0],
                                                                cfg.divergence,
                                                                _rounding_loss(prob)))):
            reason = "diverged"
            detail = self._diverged_text(step, "the loss or a parameter became non-finite after "
                                         "the last step", losses, lr)
            escape = (final, final_loss)
            final = points[-1] if points else final
            with torch.no_grad():
                final_loss = prob.objective(final).item()
        names = prob.model.param_names
        extra_steps, at_bound, weak = 0, {}, ()
        bounds = {n: b for n, b in self.transform.bounds.items() if n not in self.transform.fixed}
        if bounds and reason != "diverged":
            values = dict(zip(names, final.tolist()))
            if self.exact_method and not self.lean and not stopped_short(reason, detail,
                                                                          values, bounds):
                self._finish_left = max(self.config.steps, fit_ends.FINISH_STEPS)
                refined = refine(prob, names, bounds, self.transform.fixed, values, self._solve)
                extra_steps = refined.steps
                at_bound = refined.at_bound
                values = refined.params
                reason, detail = refined_reason(refined, reason, detail)
                weak = tuple(n for n, mu in refined.multipliers.items() if mu <= WEAK_MU)
            else:
                values = {n: min(max(v, bounds[n][0]), bounds[n][1]) if n in bounds else v
                          for n, v in values.items()}
                at_bound = near_bounds(values, bounds, 1e-9)
            final = torch.tensor([values[n] for n in names], dtype=final.dtype, device=final.device)
            with torch.no_grad():
                final_loss = prob.objective(final).item()
        # a diverged run's history and path end where the divergence showed (its loss
        # inf, NaN or beyond ``divergence`` times the start), not on a repeat of the last
        # finite point: a picture then shows the blow-up; params and loss stay finite
        end, end_loss = (final, final_loss) if escape is None else escape
        history = np.array(losses + [end_loss])
        trajectory = torch.stack(points[:len(losses)] + [end]).cpu().numpy()
        params = dict(zip(names, final.tolist()))
        stderr = cov = None
        held = set(self.transform.fixed) | set(at_bound)
        free = tuple(n for n in names if n not in held)
        # a linear least-squares solve already holds the rank and the covariance
        linear = self.stepper.linear
        if linear is not None and free != self.transform.free:
            linear = None
        # so does LM's own rank check at its converged end (J D^-1, Moré's D)
        own = self.stepper.svd if not at_bound and self.transform.identity else None
        scaled = (linear.s, linear.vh) if linear is not None else own and own[:2]
        if not self.lean:
            reason, detail = judge(prob, final, free, reason, detail,
                                   losses[0] if losses else None, final_loss, scaled)
            if weak and REASONS[reason][0]:
                reason, detail = weakly_held(prob, final, free, weak, reason, detail)
                # as for a lost rank: no standard errors for one choice among many
                linear, free = (None, ()) if reason == "failed" else (linear, free)
            if self.exact_method == "lm" and linear is None and not at_bound:
                reason, detail = float32_short(prob, final, free, reason, detail)
            if reason == "failed" and len(losses) <= 1 and detail.startswith(ROUGH_TEXT):
                with torch.no_grad():       # no step from the start: is it far off in scale?
                    detail += far_start_text(*sizes(prob.predict(final), prob.y))
            if prob.y.dtype == torch.float32 and reason == "failed":
                from .precision import float32_hint
                detail = float32_hint(detail)
            if reason in ("ftol", "gtol") and not self.exact_method and linear is None:
                why = plateau_message(prob, final, free, losses[0] if losses else None,
                                      final_loss)
                reason, detail = ("failed", why) if why else (reason, detail)
            if linear is not None and reason != "diverged":
                with torch.no_grad():
                    rss = float(prob.residuals(final).square().sum())
                    rnorm = float(data_norm(prob.residuals(final)))     # rss may underflow
                cov = linear.covariance(rss, cfg.absolute_sigma)
                if cov is not None:
                    stderr = dict(zip(free, linear.stderr(rss, cfg.absolute_sigma,
                                                          rnorm=rnorm).tolist()))
            elif prob.loss.squared and reason != "diverged" and free:
                idx = torch.tensor([names.index(n) for n in free], device=final.device)
                errors = least_squares_errors(
                    lambda f: prob.residuals(final.index_put((idx,), f)), final[idx],
                    absolute_sigma=cfg.absolute_sigma, scaled=own,
                    jacobian=lambda: free_residuals_and_jacobian(prob, final, idx)[1])
                if errors is not None:
                    cov, se, corr = errors
                    stderr = dict(zip(free, np.asarray(se, dtype=float).tolist()))
                    reason, detail = determined(prob, final, free, se, corr, reason, detail,
                                                cfg.absolute_sigma, len(losses) > 1)
                    note = one_sided_note(prob, final, free) if REASONS[reason][0] else None
                    if note:                        # a data point on a kink: no errors
                        cov = stderr = None
                        detail = f"{detail}; {note}"
        if self.notes:
            detail = "; ".join(self.notes) + "; " + detail
        with torch.no_grad():
            r2, rmse = goodness(prob.predict(final), prob.y)
        return FitResult(
            params=params, loss=final_loss, loss_name=prob.loss.name, model=prob.model.spec,
            optimizer=self.method, lr=lr, steps=len(losses) + extra_steps,
            converged=REASONS[reason][0], reason=reason, message=detail, history=history,
            trajectory=trajectory, grad_norms=np.array(gnorms),
            wall_time=time.perf_counter() - t0, n_points=prob.n, stderr=stderr,
            covariance=cov, r2=r2, rmse=rmse, start=start, model_object=prob.model,
            x=prob.x.cpu().numpy(), y=prob.y.cpu().numpy(),
            sigma=None if prob.sigma is None else prob.sigma.cpu().numpy(),
            at_bound=tuple(at_bound), bounds=dict(self.transform.bounds),
            fixed=dict(self.transform.fixed), jacobian=prob.model.jacobian_kind, config=cfg)

    def _solve(self, p0: dict, fixed: dict, bounds: dict) -> FitResult:
        """The exact method to its end from ``p0`` with these fixed values and bounds, in
        the steps left of the finish's budget (``fit_ends.FINISH_STEPS``: all the active
        set's inner fits together; each had that many, and a flat well of a bounded 4PL
        took 10,000 steps, seconds, to be certified or not)."""
        cfg = dataclasses.replace(self.config, p0=p0, fixed=fixed, bounds=bounds,
                                  optimizer=self.exact_method, options=(), starts=1,
                                  steps=inner_share(self._finish_left, bool(bounds)))
        run = FitRun(self.problem, cfg, lean=True)
        for _ in run:
            pass
        self._finish_left -= run.result.steps
        return run.result


EXACT = ("lm", "irls")
def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _rounding_loss(prob) -> float:
    """``stationary.rounding_loss``, at least 1e-12: from an exact start (loss 0) a step may
    land there, which is no divergence (a quadratic of y ~ 1e9 from its exact parameters:
    a loss of 1e-10 had been "diverged")."""
    return max(1e-12, rounding_loss(getattr(prob, "base", prob)))


def _divergence(loss: float, gnorm: float, first: float, factor: float,
                floor: float = 1e-12) -> str | None:
    if not math.isfinite(loss):
        return f"the loss became {loss}"
    if not math.isfinite(gnorm):
        return f"the gradient became {gnorm}"
    if loss > factor * max(first, 1e-300) and loss > floor:
        return f"the loss {loss:.6g} grew beyond {factor:g} times its start {first:.6g}"
    return None


def _config(model, loss, optimizer, lr, steps, p0, seed, ftol, gtol, time_limit, schedule,
            delta, divergence, dtype, device, options, bounds=None, fixed=None,
            absolute_sigma=False, starts=None) -> FitConfig:
    spec = model if isinstance(model, str) else getattr(model, "spec", None) or \
        getattr(model, "__name__", "function")
    dt = dtype_name(dtype)
    return FitConfig(model=spec, loss=loss, delta=delta, optimizer=optimizer, lr=lr, steps=steps,
                     p0=p0, seed=seed, ftol=ftol, gtol=gtol, time_limit=time_limit,
                     schedule=schedule, options=options, divergence=divergence, dtype=dt,
                     device=str(device), bounds=bounds, fixed=fixed,
                     absolute_sigma=absolute_sigma, starts=starts)


def p0_in_order(p0, names: tuple[str, ...]) -> dict:
    """``p0`` as curve_fit takes it, a sequence in the model's parameter order, by name; a
    pandas Series by its labels (it had been read by position: A got k's start)."""
    if type(p0).__module__.startswith("pandas") and hasattr(p0, "to_dict") \
            and getattr(p0, "ndim", 0) == 1:
        return {str(k): v for k, v in p0.to_dict().items()}
    values = np.asarray(p0, dtype=object).reshape(-1).tolist() \
        if not isinstance(p0, (str, bytes)) else None
    if values is None or len(values) != len(names):
        raise InputError("bad p0", expected=f"a mapping name -> value, or {len(names)} "
                         f"values in the order {', '.join(names)}",
                         given=repr(p0) if isinstance(p0, (str, bytes)) else f"{len(values)} values")
    return dict(zip(names, values))


def iter_fit(model: "str | Callable | Model", x, y, *, sigma=None, loss: str = "mse",
             optimizer: str = "auto", lr: float | None = None, steps: int = 1000,
             p0: Mapping[str, float] | None = None, seed: int = 0, ftol: float | None = None,
             gtol: float | None = None, time_limit: float | None = None,
             callback: Callable[[StepRecord], bool] | None = None, schedule: str = "constant",
             delta: float = 1.0, divergence: float = 1e4, dtype="float64", device="cpu",
             inputs=None, bounds: Mapping[str, tuple] | None = None,
             fixed: Mapping[str, float] | None = None, absolute_sigma: bool = False,
             starts: int | None = None, jac: Callable | None = None,
             **options) -> FitRun:
    """Fit ``model`` to ``(x, y)``, one ``StepRecord`` per step; see ``fit`` for arguments."""
    in_order = p0 is not None and not isinstance(p0, Mapping)    # curve_fit's p0=[1, 2]
    cfg = _config(model, loss, optimizer, lr, steps, None if in_order else p0, seed, ftol,
                  gtol, time_limit, schedule, delta, divergence, dtype, device, options,
                  bounds, fixed, absolute_sigma, starts)
    if isinstance(inputs, str):
        inputs = tuple(n.strip() for n in inputs.split(","))
    return _start(cfg, model, x, y, sigma, inputs, jac, callback,
                  p0 if in_order else None)


def run_config(config: FitConfig, x, y, *, sigma=None, inputs=None, model=None, jac=None,
               callback: Callable[[StepRecord], bool] | None = None) -> "FitRun":
    """``iter_fit`` with the settings of ``config`` exactly (``FitConfig.fit`` drains it):
    a result's ``config`` reruns its fit. ``model``: the function or ``Model`` that
    ``config.model`` names, where it is no text (else the text is the model)."""
    if not isinstance(config, FitConfig):
        raise InputError("bad config", expected="a FitConfig", given=type(config).__name__)
    if isinstance(inputs, str):
        inputs = tuple(n.strip() for n in inputs.split(","))
    return _start(config, config.model if model is None else model, x, y, sigma, inputs,
                  jac, callback)


def _start(cfg: FitConfig, model, x, y, sigma, inputs, jac, callback, in_order=None):
    """The run of ``cfg`` on the data: checks the start, bounds and fixed names against the
    model, then one ``FitRun``, or a ``MultiStartRun`` for several starts. ``in_order``:
    curve_fit's p0, a sequence in the model's parameter order."""
    if callback is not None and not callable(callback):
        raise InputError("bad callback", expected="a function of a StepRecord, or None",
                         given=type(callback).__name__)
    problem = prepare(model, x, y, sigma, loss=cfg.loss, delta=cfg.delta,
                      dtype=DTYPE[cfg.dtype], device=cfg.device, inputs=inputs, jac=jac)
    if in_order is not None:
        cfg = dataclasses.replace(cfg, p0=p0_in_order(in_order, problem.model.param_names))
    if problem.model.n_params == 0:
        raise InputError(f"model {problem.model.spec!r} has no parameters to fit",
                         expected="at least one free name besides the inputs")
    start = start_values(problem.model, cfg.p0_dict, problem.x, cfg.seed)   # refuse bad p0 now
    check_param_names(problem.model, cfg.bounds_dict, "bounds")
    check_param_names(problem.model, cfg.fixed_dict, "fixed")
    check = ParamTransform(problem.model.param_names, cfg.bounds_dict, cfg.fixed_dict)
    check.internal(check.move_inside({**start, **cfg.fixed_dict})[0])
    k = starts_for(cfg, problem.model)
    if k > 1:
        return _MultiStart(problem, cfg, callback, k, _OneStart)
    return FitRun(problem, cfg, callback)


class _OneStart(FitRun):
    """A start of ``_MultiStart``: its p0 is the run's start k, not the user's."""

    one_of_starts = True


class _MultiStart(MultiStartRun):
    """``MultiStartRun`` whose result carries the whole run's config (``starts`` and the
    seed as given), not the config of the start that won: rerunning it reruns every
    start. A p0 start that a fixed value overrides is said whichever start won."""

    def _run(self) -> Iterator[StepRecord]:
        yield from super()._run()
        r = self.result
        r.config = self.config
        said = [n for n in _unused_p0_notes(self.config) if n not in r.message]
        if said:        # once, for the whole run (its starts are quiet: _OneStart)
            r.message = "; ".join(said) + "; " + r.message


def _unused_p0_notes(cfg: FitConfig) -> list[str]:
    """``config.unused_p0``'s notes: a fixed value wins over p0's start for its name."""
    return [unused_p0_note(n, a, b) for n, (a, b) in unused_p0(cfg.p0_dict, cfg.fixed_dict).items()]


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
    variance), as curve_fit's option of that name. ``jac(x, a, b, ...) -> (n, P)``: the
    Jacobian of a model function, as curve_fit's ``jac`` (a function autograd cannot trace
    is otherwise differentiated by central differences; see ``numpy_model``).
    ``dtype`` ("float64"), ``device`` ("cpu", "cuda").
    ``starts``: fit from K starts and keep the best (``multistart``); None: 1, or 5 for a
    flexible model (``relu:K``, ``mlp:...``) under ``auto``, reported as "best of K starts".

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
    if not isinstance(params, Mapping):     # values in the parameters' order, as p0 may be
        params = p0_in_order(params, names)
    check_param_names(problem.model, params, "params", only_constants=True)
    missing = [n for n in names if n not in params]
    extra = [n for n in params if n not in names]
    if missing or extra:
        raise InputError("the parameters do not match the model",
                         expected="values for " + ", ".join(names),
                         given=", ".join(params) or "none")
    for n in names:                     # as fit's p0: a finite number each
        check_finite(f"value of {n!r}", plain(params[n]))
    theta = torch.tensor([float(params[n]) for n in names], dtype=torch.float64, requires_grad=True)
    value = problem.objective(theta)
    value.backward()
    return value.item(), dict(zip(names, theta.grad.tolist()))


__all__ = ["fit", "iter_fit", "run_config", "loss_and_grad", "prepare", "FitRun", "FitError"]
