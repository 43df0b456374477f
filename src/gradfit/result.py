"""What a fit emits and what it ends with: ``StepRecord`` per step, ``FitResult`` at the end.

Uncertainty for least-squares fits follows ``scipy.optimize.curve_fit``: with ``J`` the
Jacobian of the weighted residuals ``r = (f(x, p) - y) / sigma`` at the optimum,

    pcov = inv(J^T J) * s^2,   s^2 = sum(r^2) / (n - P)   (s^2 = 1 if absolute_sigma)

and the standard errors are ``sqrt(diag(pcov))``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from .errors import FitError, InputError
from .stats import student_t_quantile


class StepRecord(NamedTuple):
    """One step of a fit: the point ``theta`` it started from, the loss there and the norm
    of the gradient used (for ``gd`` with ``accumulate_grad``, the accumulated one).
    A named tuple: made once per step on the fit loop's hot path."""

    step: int
    loss: float
    grad_norm: float
    theta: torch.Tensor          # (P,), a copy
    names: tuple[str, ...]
    lr: float

    @property
    def params(self) -> dict[str, float]:
        return dict(zip(self.names, self.theta.tolist()))


class Run:
    """A fit in progress: an iterator of ``StepRecord`` (one per step, from ``_gen``);
    ``result`` holds the ``FitResult`` once it is done."""

    result: "FitResult | None" = None
    _gen: Iterator[StepRecord]

    def __iter__(self) -> Iterator[StepRecord]:
        return self._gen

    def __next__(self) -> StepRecord:
        return next(self._gen)


# stop reasons: code -> (converged?, text)
REASONS: dict[str, tuple[bool, str]] = {
    "ftol": (True, "the loss stopped changing (relative change at most ftol)"),
    "gtol": (True, "the gradient vanished (norm at most gtol)"),
    "xtol": (True, "the parameters stopped changing (relative step below xtol)"),
    "max_steps": (False, "reached the step limit"),
    "time_limit": (False, "reached the time limit"),
    "callback": (False, "stopped by the callback"),
    "diverged": (False, "diverged"),
    "failed": (False, "failed"),
    # a flexible model (or starts=K): the lowest loss of K local fits, no claim of the optimum
    "starts": (False, "the best of several starts"),
}


@dataclass
class FitResult:
    """The outcome of a fit.

    ``params``: name -> value at the end. ``loss``: the loss there (on all the data).
    ``history[i]``, ``trajectory[i]``: loss and parameters at the start of step ``i``, and
    at the end for ``i == steps`` (for a diverged run: the point where the divergence
    showed, its loss inf, NaN or huge; ``params`` and ``loss`` are the last finite point
    before it). ``grad_norms[i]``: the gradient norm of step ``i``.
    ``converged``/``reason``/``message``: why it stopped. ``stderr``/``covariance``: for
    squared-error losses (else None), as curve_fit's ``sqrt(diag(pcov))`` and ``pcov``.
    ``r2``, ``rmse``: on the unweighted data. ``wall_time`` in seconds.
    ``bounds``: name -> (low, high) of the bounded parameters; ``at_bound``: the names that
    ended at a bound; ``fixed``: name -> value of the fixed ones; ``jacobian``: how the
    Jacobian was taken (autograd, finite differences, user's jac). ``statistics()``,
    ``intervals(level)`` and ``report(level)`` give lmfit's fit statistics (``gradfit.report``).
    ``config``: the ``FitConfig`` it ran, in ``to_dict``/``to_json`` too, so that a result
    says every setting of its run and reruns it: ``rerun()`` (on its own data), or
    ``FitResult.from_json(text).config.fit(x, y)``.
    """

    params: dict[str, float]
    loss: float
    loss_name: str
    model: str
    optimizer: str
    lr: float
    steps: int
    converged: bool
    reason: str
    message: str
    history: np.ndarray
    trajectory: np.ndarray
    grad_norms: np.ndarray
    wall_time: float
    n_points: int
    stderr: dict[str, float] | None = None
    covariance: np.ndarray | None = None
    r2: float | None = None
    rmse: float | None = None
    start: dict[str, float] = field(default_factory=dict)
    model_object: Any = field(default=None, repr=False)
    # the data the fit used (numpy), so that pictures need nothing more than the result
    x: Any = field(default=None, repr=False)
    y: Any = field(default=None, repr=False)
    sigma: Any = field(default=None, repr=False)
    #: name -> (low, high) for the bounded parameters; the names that ended at a bound
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    at_bound: tuple[str, ...] = ()
    fixed: dict[str, float] = field(default_factory=dict)
    #: how the Jacobian was taken: autograd, finite differences, or the user's jac
    jacobian: str = "autograd"
    #: the ``FitConfig`` the fit ran (every setting, seed included): ``rerun()`` runs it
    #: again, ``config.fit(x, y)`` on other data; None for a row of ``fit_many``
    config: Any = field(default=None, repr=False)
    #: a result read back from JSON: what its model was (``model_source``), kept
    source: str | None = field(default=None, repr=False)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.params)

    @property
    def method(self) -> str:
        """The optimizer, with its learning rate where it has one (not lm or irls)."""
        if any(m in self.optimizer for m in ("lm", "irls")):
            return self.optimizer
        return f"{self.optimizer}, lr={self.lr:g}"

    @property
    def ok(self) -> bool:
        return self.reason not in ("diverged", "failed")

    @property
    def correlation(self) -> np.ndarray | None:
        """The correlation matrix of the free parameters (order of ``stderr``), or None."""
        if self.covariance is None:
            return None
        d = np.sqrt(np.clip(np.diag(self.covariance), 1e-300, None))
        return self.covariance / np.outer(d, d)

    def confidence_band(self, x, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper edges of the confidence band of the fitted curve at ``x``.

        The delta method, as lmfit's ``eval_uncertainty``: with ``g = df/dp`` at the optimum
        over the free parameters, ``var f(x) = g^T pcov g`` and the band is
        ``f(x) +- t_{(1+level)/2, n-P} sqrt(var f(x))``.
        """
        if self.covariance is None:
            raise FitError("no confidence band: the fit has no covariance (a squared-error "
                           "loss and a Jacobian of full rank are needed)")
        if not 0 < level < 1:
            raise InputError("bad confidence level", expected="a number between 0 and 1",
                             given=level)
        names = list(self.params)
        xt = torch.tensor(np.array(x, dtype=np.float64))
        theta = torch.tensor(list(self.params.values()), dtype=torch.float64)
        idx = torch.tensor([names.index(n) for n in self.stderr])
        model = self.model_object
        from .lm import residuals_and_jacobian
        _, jac = residuals_and_jacobian(lambda f: model(xt, theta.index_put((idx,), f)), theta[idx])
        cov = torch.tensor(self.covariance)
        sd = torch.einsum("mi,ij,mj->m", jac, cov, jac).clamp_min(0).sqrt().numpy()
        t = student_t_quantile((1 + level) / 2, self.n_points - len(idx))
        with torch.no_grad():
            f = model(xt, theta).numpy()
        return f - t * sd, f + t * sd

    def predict(self, x) -> np.ndarray:
        """The fitted curve at ``x`` (array-like shaped like the data's x)."""
        xt = torch.tensor(np.array(x, dtype=np.float64))
        theta = torch.tensor(list(self.params.values()), dtype=torch.float64)
        with torch.no_grad():
            return self.model_object(xt, theta).numpy()

    def to_dict(self, history: bool = True) -> dict:
        """A JSON-ready dict; ``history=False`` leaves out the per-step arrays."""
        d = {
            "params": self.params, "loss": self.loss, "loss_name": self.loss_name,
            "model": self.model, "optimizer": self.optimizer, "lr": self.lr,
            "steps": self.steps, "converged": self.converged, "reason": self.reason,
            "message": self.message, "stderr": self.stderr,
            "covariance": None if self.covariance is None else self.covariance.tolist(),
            "r2": self.r2, "rmse": self.rmse, "n_points": self.n_points,
            "wall_time": self.wall_time, "start": self.start, "loss_label": self.loss_label,
            "jacobian": self.jacobian, "fixed": self.fixed, "constants": self.constants, "at_bound": list(self.at_bound),
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }
        d["inputs"] = list(self.inputs)
        d["model_source"] = self.model_source
        d["config"] = None if self.config is None else self.config.to_dict()
        d.update(self.statistics() or {})
        ci = self.intervals(0.95)
        d["ci_level"], d["ci"] = 0.95, None if ci is None else {k: list(v) for k, v in ci.items()}
        if history:
            d["history"] = self.history.tolist()
            d["grad_norms"] = self.grad_norms.tolist()
            d["trajectory"] = self.trajectory.tolist()
        return _finite_or_none(d)

    def to_json(self, history: bool = True, **kw) -> str:
        """Strict JSON (``finite_json``): never NaN or Infinity."""
        from .finite_json import dumps
        return dumps(self.to_dict(history), **kw)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The names of the model's inputs (``x``; ``x1, x2``; the columns it was fitted on)."""
        return tuple(getattr(self.model_object, "input_names", None) or ("x",))

    @property
    def model_source(self) -> str:
        """``"text"`` where ``model`` (an expression, poly:K, relu:K, mlp:...) rebuilds the
        model, ``"function"`` for a Python function, ``"object"`` for a ``Model`` of the
        caller's own: those two cannot be read back from JSON."""
        from .models import CallableModel
        m = self.model_object
        if self.source is not None:
            return self.source
        if m is None or type(m).__module__ == "gradfit.models" and not isinstance(m, CallableModel):
            return "text"
        return "function" if isinstance(m, CallableModel) else "object"

    def rerun(self, x=None, y=None, *, sigma=None, model=None, callback=None) -> "FitResult":
        """The same fit again, from ``config`` (bit for bit the same result on the same
        data and machine): on this result's own data unless ``x``, ``y`` (and ``sigma``)
        are given. ``model``: the function or ``Model``, for a result read back from JSON
        whose model was no text."""
        if self.config is None:
            raise FitError("this result holds no config to rerun (a row of fit_many, or a "
                           "result read from JSON written without one)")
        if x is None and y is None:
            if self.x is None or self.y is None:
                raise InputError("no data to rerun on", expected="rerun(x, y): a result read "
                                 "back from JSON holds no data")
            x, y, sigma = self.x, self.y, self.sigma if sigma is None else sigma
        elif x is None or y is None:
            raise InputError("rerun needs both x and y", expected="rerun() on the result's own "
                             "data, or rerun(x, y)")
        if model is None and self.model_source != "text":
            model = self.model_object
            if model is None:
                raise InputError(f"the model {self.model!r} was a {self.model_source}, which "
                                 "JSON does not hold", expected="rerun(x, y, model=...)")
        return self.config.fit(x, y, sigma=sigma, inputs=self.inputs, model=model,
                               callback=callback)

    @classmethod
    def from_dict(cls, d: dict) -> "FitResult":
        """A result from ``to_dict``'s form (its JSON read back): the numbers, the verdict
        and the ``config`` (null numbers are NaN again, null bounds infinite). The data is
        not in it; the model is rebuilt where it was a text (``model_source``)."""
        from .config import FitConfig
        if not isinstance(d, dict) or not {"params", "loss", "model", "reason"} <= set(d):
            raise InputError("bad result", expected="FitResult.to_dict()'s form (params, loss, "
                             "model, reason, ...)", given=type(d).__name__ if not isinstance(
                                 d, dict) else "keys " + ", ".join(sorted(d))[:200])
        config = None if d.get("config") is None else FitConfig.from_dict(d["config"])

        def num(v):
            return math.nan if v is None else float(v)

        def arr(key, shape_of=None):
            v = d.get(key)
            if v is None:
                return np.zeros((0,) if shape_of is None else (0, shape_of))
            return np.array([[num(t) for t in row] for row in v] if shape_of is not None
                            else [num(t) for t in v], dtype=float)

        names = list(d["params"])
        inputs = tuple(d.get("inputs") or ("x",))
        model_object = None
        source = d.get("model_source", "text")
        if source == "text":
            from .models import make_model
            try:
                model_object = make_model(d["model"], inputs)
            except InputError:
                model_object = None
        cov = d.get("covariance")
        bounds = {k: (-math.inf if lo is None else lo, math.inf if hi is None else hi)
                  for k, (lo, hi) in (d.get("bounds") or {}).items()}
        return cls(
            params={k: num(v) for k, v in d["params"].items()}, loss=num(d["loss"]),
            loss_name=d.get("loss_name", "mse"), model=d["model"],
            optimizer=d.get("optimizer", ""), lr=num(d.get("lr")), steps=int(d.get("steps", 0)),
            converged=bool(d.get("converged", False)), reason=d["reason"],
            message=d.get("message", ""), history=arr("history"),
            trajectory=arr("trajectory", len(names)), grad_norms=arr("grad_norms"),
            wall_time=num(d.get("wall_time")), n_points=int(d.get("n_points", 0)),
            stderr=None if d.get("stderr") is None else
            {k: num(v) for k, v in d["stderr"].items()},
            covariance=None if cov is None else np.array(
                [[num(t) for t in row] for row in cov], dtype=float),
            r2=None if d.get("r2") is None else num(d["r2"]),
            rmse=None if d.get("rmse") is None else num(d["rmse"]),
            start={k: num(v) for k, v in (d.get("start") or {}).items()},
            model_object=model_object, bounds=bounds, at_bound=tuple(d.get("at_bound") or ()),
            fixed={k: num(v) for k, v in (d.get("fixed") or {}).items()},
            jacobian=d.get("jacobian", "autograd"), config=config, source=source)

    @classmethod
    def from_json(cls, text: str) -> "FitResult":
        """``to_json``'s text read back (``from_dict``)."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("bad JSON result", expected="FitResult.to_json()'s text",
                             given=str(exc)) from None
        return cls.from_dict(d)

    @property
    def constants(self) -> dict[str, float]:
        """The model's named constants (``e``, ``pi`` in an expression): never fitted."""
        return dict(getattr(self.model_object, "constants", None) or {})

    @property
    def loss_label(self) -> str:
        """The loss by what it is: ``chi2/N`` for mse with ``sigma`` given (see ``report``)."""
        from .report import loss_label
        return loss_label(self)

    def statistics(self) -> dict | None:
        """chi-square, reduced chi-square, degrees of freedom, AIC and BIC, as lmfit's
        (formulas in ``gradfit.report``); for mae and huber the counts alone."""
        from .report import statistics
        return statistics(self)

    def intervals(self, level: float = 0.95) -> dict[str, tuple[float, float]] | None:
        """Each free parameter's confidence interval at ``level`` (Student t), or None."""
        if not 0 < level < 1:
            raise InputError("bad confidence level", expected="a number between 0 and 1",
                             given=level)
        from .report import intervals
        return intervals(self, level)

    def report(self, level: float = 0.95) -> str:
        """A readable text report, as lmfit's ``fit_report``: statistics, each parameter's
        value +- standard error, its ``level`` confidence interval, start and bounds."""
        if not 0 < level < 1:
            raise InputError("bad confidence level", expected="a number between 0 and 1",
                             given=level)
        from .report import text_report
        return text_report(self, level)

    def __str__(self) -> str:
        return self.report()

    def __repr__(self) -> str:
        # short: the dataclass's own held every history and trajectory array (kilobytes
        # in a list of results or a dict)
        params = ", ".join(f"{n}={v:.6g}" for n, v in list(self.params.items())[:8])
        more = ", ..." if len(self.params) > 8 else ""
        state = f"converged ({self.reason})" if self.converged else self.reason
        return (f"FitResult({self.model!r}, {self.loss_name}={self.loss:.6g}, {state}, "
                f"{params}{more})")

    def _repr_html_(self) -> str:
        """The report as HTML tables, for notebooks (Jupyter calls this)."""
        from .report import html_report
        return html_report(self)


def _finite_or_none(obj):
    """JSON has no NaN or inf: they become null."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def least_squares_covariance(residual_fn, theta: torch.Tensor, absolute_sigma: bool = False,
                             scaled=None, jacobian=None):
    """``pcov`` as curve_fit computes it, or None when it is undefined (n <= P, lost rank):
    ``least_squares_errors``'s first part (entries whose value overflows are inf)."""
    out = least_squares_errors(residual_fn, theta, absolute_sigma, scaled, jacobian)
    return None if out is None else out[0]


def least_squares_errors(residual_fn, theta: torch.Tensor, absolute_sigma: bool = False,
                         scaled=None, jacobian=None):
    """``(pcov, stderr, correlation)`` as curve_fit computes them (numpy), or None when
    undefined (n <= P, lost rank), by ``scaled_errors`` from the SVD of the column-scaled
    Jacobian: a parameter of 2e160 (``a*x`` on x of 1e-160) has a standard error of 1e157
    though its variance (1e314) overflows, and ``J^T J`` (1e-320) loses every digit.

    ``residual_fn(theta) -> (n,)`` weighted residuals. ``scaled``: ``(s, V^T, d)``, the SVD
    of ``J D^-1`` at ``theta`` with its column scaling ``d`` when already known (LM's end):
    then no Jacobian is formed. ``jacobian() -> J``: the exact Jacobian by the caller's
    fastest way (by default autograd on ``residual_fn``).

        >>> t = torch.linspace(1, 2, 20, dtype=torch.float64)
        >>> y = 2 * t + 0.01 * torch.sin(7 * t)
        >>> a = (t @ y) / (t @ t)                        # the least-squares slope
        >>> one = least_squares_errors(lambda p: p * t - y, a.reshape(1))
        >>> big = least_squares_errors(lambda p: p * (t * 1e-160) - y, 1e160 * a.reshape(1))
        >>> round(float(big[1][0] / one[1][0] / 1e160), 12), float(big[0][0, 0])
        (1.0, inf)
    """
    from .batch_lm import data_norm
    theta = theta.detach()
    r = residual_fn(theta).detach()
    n, p = r.shape[0], theta.shape[0]
    if n <= p or p == 0 or p > 2000:
        return None
    if scaled is not None:
        s, vt, d = scaled
    else:
        from .lm import residuals_and_jacobian       # exact, cheaper to start than jacfwd
        jac = jacobian() if jacobian is not None else residuals_and_jacobian(residual_fn, theta)[1]
        if not torch.isfinite(jac).all():
            return None
        # SVD of the column-scaled Jacobian J D^-1 (D: column norms, without squaring: a
        # column of 1e160 or 1e-160 keeps its digits), so that whether the covariance
        # exists does not depend on the units of x, y or any parameter; singular values
        # below scipy's threshold (eps * max(n, P) * s_max) count as lost rank
        from .verdict import scaled_singular
        norms = data_norm(jac.transpose(0, 1))
        d = torch.where(norms > 0, norms, torch.ones_like(norms))
        s, vt = scaled_singular(jac / d)
    threshold = torch.finfo(s.dtype).eps * max(n, p) * s[0]
    if s[-1] <= threshold:
        return None
    inv = (vt.T / s.square()) @ vt
    root = torch.ones((), dtype=r.dtype) if absolute_sigma else data_norm(r) / math.sqrt(n - p)
    return tuple(v.cpu().numpy() for v in scaled_errors(inv, d, root))


def scaled_errors(inv: torch.Tensor, d: torch.Tensor, root: torch.Tensor):
    """``(pcov, stderr, correlation)`` from ``inv`` ``(..., F, F)``, the inverse of the
    column-scaled normal matrix ``(J D^-1)^T (J D^-1)``, the scales ``d`` ``(..., F)`` and
    ``root`` ``(...)`` ``= sqrt(S / (n - F))`` (1 with absolute sigma):

        stderr_j = sqrt(inv_jj) / d_j * root,  corr_ij = inv_ij / sqrt(inv_ii inv_jj),
        pcov_ij = corr_ij stderr_i stderr_j

    (``pcov = D^-1 inv D^-1 root^2``), never forming ``1/d^2`` or ``root^2``: each is
    finite wherever its own value is (a variance of 1e314 is inf; its error, 1e157, is not).
    A zero column of ``inv`` (a held parameter) has stderr and correlations 0."""
    dg = inv.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
    se = dg / d * root.unsqueeze(-1)
    unit = torch.where(dg > 0, dg, 1.0)
    corr = inv / (unit.unsqueeze(-1) * unit.unsqueeze(-2))
    pcov = torch.where(corr == 0, 0.0, corr * se.unsqueeze(-1) * se.unsqueeze(-2))
    return pcov, se, corr


def goodness(pred: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """R^2 and RMSE of predictions against the (unweighted) data."""
    res = (pred - y).square().sum().item()
    tot = (y - y.mean()).square().sum().item()
    r2 = 1.0 - res / tot if tot > 0 else float("nan")
    return r2, math.sqrt(res / y.shape[0])
