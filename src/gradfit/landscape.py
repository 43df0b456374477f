"""Loss landscapes and learning-rate experiments, as plain numbers (torch and numpy only).

A *landscape* is the loss over a grid of one or two chosen parameters, the others held
at given values. Models evaluate many parameter sets at once, so the whole grid is one
batched call of the objective on a ``(G2, G1, P)`` tensor::

    >>> from gradfit.data import lesson_data
    >>> d = lesson_data()
    >>> p = as_problem("a*x^2 + b*x + c", d.x, d.y, loss="mae")
    >>> g = loss_grid(p, ("a", "b"), {"a": 1.1, "b": 1.1, "c": 1.1}, span=1.0, resolution=5)
    >>> g.loss.shape, round(float(g.loss[2, 2]), 4)          # the centre is the lesson's guess
    ((5, 5), 2.4219)

Learning-rate sweeps and the finder live in ``learning_rates``. Everything returns numbers,
so the pictures (``gradfit.plots``) and the web playground share it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from .batch_lm import data_norm
from .errors import InputError
from .fit_prepare import prepare
from .models import check_param_names
from .problem import Problem

# about this many numbers (parameter sets x data points) per batched call
CHUNK_ELEMENTS = 1 << 22
MAX_RESOLUTION = 2001


@dataclass(frozen=True)
class LossGrid:
    """The loss over two parameters: ``loss[j, i]`` at ``names[0] = x[i]``, ``names[1] = y[j]``
    (rows follow ``y``, as matplotlib's ``contour(x, y, loss)`` reads them); the other
    parameters at ``center``."""

    names: tuple[str, str]
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    center: dict[str, float]
    loss_name: str

    def to_dict(self) -> dict:
        return {"names": list(self.names), "x": self.x.tolist(), "y": self.y.tolist(),
                "loss": _json_rows(self.loss), "center": self.center, "loss_name": self.loss_name}


@dataclass(frozen=True)
class LossSlice:
    """The loss against one parameter: ``loss[i]`` at ``name = values[i]``, the others at
    ``center``."""

    name: str
    values: np.ndarray
    loss: np.ndarray
    center: dict[str, float]
    loss_name: str

    def to_dict(self) -> dict:
        return {"name": self.name, "values": self.values.tolist(), "loss": _json_rows(self.loss),
                "center": self.center, "loss_name": self.loss_name}


def _json_rows(a: np.ndarray) -> list:
    return np.where(np.isfinite(a), a, None).tolist()


def as_problem(model, x=None, y=None, sigma=None, *, loss="mse", delta=1.0, inputs=None,
               device="cpu") -> Problem:
    """A ``Problem`` as is, or one made from a model, data and a loss (``fit_prepare.prepare``) on
    ``device``: a landscape is computed where its data are."""
    if isinstance(model, Problem):
        return model
    if x is None or y is None:
        raise InputError("no data for the landscape", expected="a Problem, or a model with x and y")
    return prepare(model, x, y, sigma, loss=loss, delta=delta, inputs=inputs, device=device)


def check_names(problem: Problem, names: Sequence[str], count: "int | tuple[int, int]" = (1, 2)
                ) -> tuple[str, ...]:
    """The chosen parameter names, checked against the model (unknown or repeated refused)."""
    names = tuple(names)
    lo, hi = (count, count) if isinstance(count, int) else count
    known = problem.model.param_names
    if not lo <= len(names) <= hi or len(set(names)) != len(names):
        want = f"{lo}" if lo == hi else f"{lo} or {hi}"
        raise InputError("bad choice of parameters", expected=f"{want} different parameter names",
                         given=",".join(names) or "none")
    check_param_names(problem.model, names, "the choice of parameters", only_constants=True)
    for name in names:
        if name not in known:
            raise InputError(f"unknown parameter {name!r}",
                             expected="one of " + ", ".join(known[:20]) + (" ..." if len(known) > 20 else ""))
    return names


def full_center(problem: Problem, center: Mapping[str, float]) -> dict[str, float]:
    """Values for every parameter, in the model's order; missing or unknown names refused."""
    known = problem.model.param_names
    check_param_names(problem.model, center, "values", only_constants=True)
    missing = [n for n in known if n not in center]
    extra = [n for n in center if n not in known]
    if missing or extra:
        raise InputError("the values do not match the model's parameters",
                         expected="a value for each of " + ", ".join(known[:20]),
                         given=("missing " + ", ".join(missing[:10]) if missing else "")
                         + ("; unknown " + ", ".join(extra[:10]) if extra else ""))
    out = {}
    for n in known:
        try:
            out[n] = float(center[n])
        except (TypeError, ValueError):
            raise InputError(f"bad value of {n!r}", expected="a number",
                             given=center[n]) from None
    bad = [n for n, v in out.items() if not math.isfinite(v)]
    if bad:
        raise InputError(f"the value of {bad[0]!r} is not finite", expected="finite numbers")
    return out


def rms(v: torch.Tensor) -> float:
    """The root mean square of ``v``, without squaring to 0 or inf (``data_norm``)."""
    return float(data_norm(v.reshape(-1))) / math.sqrt(v.numel()) if v.numel() else 0.0


def natural_scales(model, x: torch.Tensor, y, values: Mapping[str, float],
                   names: Sequence[str] | None = None) -> dict[str, float | None]:
    """How far each parameter must move to move the curve by the data's size, at
    ``values`` (one forward-mode pass each, no ``(n, P)`` Jacobian held)::

        scale_j = rms(y) / rms_i(df(x_i)/dp_j)

    ``rms(y)`` counts the data's level (an offset of 20 over timestamps is 20, however
    little y varies). None where the derivative vanishes or is not finite, or the model
    cannot run forward mode. ``names``: only these parameters (default: all).
    """
    all_names = list(model.param_names)
    y = torch.as_tensor(y, dtype=torch.float64)
    spread = rms(y)
    p = torch.tensor([float(values[n]) for n in all_names], dtype=torch.float64, device=x.device)
    out: dict[str, float | None] = {}
    for name in (all_names if names is None else names):
        e = torch.zeros_like(p)
        e[all_names.index(name)] = 1.0
        try:
            with torch.no_grad():
                _, d = torch.func.jvp(lambda q: model(x, q), (p,), (e,))
        except Exception:         # a model forward mode cannot run: no scale, no harm
            out[name] = None
            continue
        size = rms(d)
        scale = spread / size if size > 0 and math.isfinite(size) else math.nan
        out[name] = scale if math.isfinite(scale) and scale > 0 else None
    return out


#: natural scales within this range are the lesson's: its views (and the page's sliders,
#: ``web.scales``) stay as they are
USUAL_SCALES = (1e-2, 1e2)


def default_half_width(center: float, scale: float | None = None) -> float:
    """The default half-width of a view: ``max(|center| / 2, s)`` with ``s`` the
    parameter's natural scale (``natural_scales``) where it lies outside ``USUAL_SCALES``,
    else 1, as the page's sliders take it: data of the lesson's size keep
    ``max(1, |center| / 2)``; a slope of 3e-9 on data of 1e-9 gets a view of its own size
    instead of +-1.

        >>> default_half_width(3.0), default_half_width(3e-9, 3e-9), default_half_width(0.0, 5.0)
        (1.5, 3e-09, 1.0)
    """
    lo, hi = USUAL_SCALES
    usual = scale is None or not (math.isfinite(scale) and scale > 0) or lo <= scale <= hi
    return max(abs(center) / 2, 1.0 if usual else scale)


def axis_range(name: str, center: float, span=None, path: np.ndarray | None = None,
               margin: float = 0.1, scale: float | None = None) -> tuple[float, float]:
    """The range shown for one parameter.

    ``span``: a half-width around ``center``, a ``(low, high)`` pair, or a mapping of names
    to either. None: ``default_half_width(center, scale)`` either side (``scale``: the
    parameter's natural scale, see ``natural_scales``), widened to hold the finite points
    of ``path`` with a ``margin`` (a fraction of the width) to spare.

        >>> axis_range("a", 3.0, 2.0)
        (1.0, 5.0)
        >>> axis_range("a", 3.0, {"a": (0, 10)})
        (0.0, 10.0)
        >>> axis_range("a", 0.0, None, np.array([-3.0, 0.5]))
        (-3.4, 1.4)
    """
    if isinstance(span, Mapping):
        span = span.get(name)
    if span is None:
        half = default_half_width(center, scale)
        lo, hi = center - half, center + half
        if path is not None:
            pts = np.asarray(path, dtype=float)
            pts = pts[np.isfinite(pts)]
            if pts.size:
                lo, hi = min(lo, pts.min()), max(hi, pts.max())
                pad = margin * (hi - lo)
                lo, hi = (lo - pad, hi + pad) if (lo < center - half or hi > center + half) else (lo, hi)
        return float(lo), float(hi)
    try:
        if isinstance(span, (tuple, list)):
            if len(span) != 2:
                raise InputError(f"bad span for {name!r}", expected="(low, high)", given=span)
            lo, hi = float(span[0]), float(span[1])
        else:
            half = float(span)
    except (TypeError, ValueError):
        raise InputError(f"bad span for {name!r}", expected="a positive half-width or "
                         "(low, high)", given=span) from None
    if not isinstance(span, (tuple, list)):
        if not half > 0:
            raise InputError(f"bad span for {name!r}", expected="a positive half-width", given=span)
        lo, hi = center - half, center + half
    if math.isfinite(lo) and math.isfinite(hi) and not isinstance(span, (tuple, list)) \
            and hi - lo < 64 * np.spacing(max(abs(lo), abs(hi))):
        raise InputError(f"the span for {name!r} is too small for the precision of its value "
                         f"{center:.17g} (float64 numbers there are "
                         f"{np.spacing(abs(center)):.3g} apart)",
                         expected=f"a half-width of at least "
                         f"{32 * np.spacing(abs(center)):.3g}", given=span)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise InputError(f"bad span for {name!r}", expected="finite low < high", given=(lo, hi))
    if not math.isfinite(hi - lo):         # 1e308 either side: the grid's steps overflow
        raise InputError(f"bad span for {name!r}", expected="a range whose width is a finite "
                         "number (below 1.8e308)", given=(lo, hi))
    return lo, hi


def check_resolution(resolution, k: int) -> tuple[int, ...]:
    try:
        res = (resolution,) * k if np.ndim(resolution) == 0 else tuple(resolution)
    except TypeError:
        res = ()
    if len(res) != k or any(not isinstance(r, (int, np.integer)) or not 2 <= r <= MAX_RESOLUTION
                            for r in res):
        raise InputError("bad resolution", expected=f"{k} whole number(s) 2..{MAX_RESOLUTION}",
                         given=resolution)
    return tuple(int(r) for r in res)


@torch.no_grad()
def evaluate(problem: Problem, thetas: torch.Tensor, rows: int | None = None,
             check: Callable[[], None] | None = None) -> np.ndarray:
    """The loss at each row of ``thetas`` ``(m, P)``, in chunks of ``rows`` parameter sets
    (default: ``CHUNK_ELEMENTS`` numbers per chunk); ``check()`` runs before each chunk (a
    server's deadline: it raises to stop).

    The results go into one tensor made beforehand: small result tensors kept alive between
    the chunks' large temporaries would pin the allocator's heap and let memory grow with
    the number of chunks."""
    rows = rows or max(1, CHUNK_ELEMENTS // max(1, problem.n))
    out = torch.empty(thetas.shape[0], dtype=problem.y.dtype, device=problem.y.device)
    with torch.no_grad():
        for at in range(0, thetas.shape[0], rows):
            if check is not None:
                check()
            out[at:at + rows] = problem.objective(thetas[at:at + rows])
    return out.cpu().numpy()


def _theta(problem: Problem, center: Mapping[str, float]) -> torch.Tensor:
    return torch.tensor([center[n] for n in problem.model.param_names],
                        dtype=problem.y.dtype, device=problem.y.device)


def _points(points, k: int, what: str) -> np.ndarray:
    """``points`` as ``(m, k)`` float64: one row a point, one column a chosen parameter."""
    try:
        a = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"bad {what}", expected="numbers", given=points) from None
    if a.ndim > 2 or a.size % k or (a.ndim == 2 and a.shape[1] != k):
        raise InputError(f"bad {what}", expected=f"points of {k} value(s) each, one per chosen "
                         "parameter", given=f"shape {a.shape}")
    return a.reshape(-1, k)


def loss_along(problem: Problem, names: Sequence[str], points, center: Mapping[str, float],
               **chunks) -> np.ndarray:
    """The loss at ``points`` ``(k, len(names))`` for the chosen ``names``, the other
    parameters at ``center``: where a path drawn on a landscape sits on its surface."""
    names = check_names(problem, names)
    center = full_center(problem, center)
    pts = torch.as_tensor(_points(points, len(names), "points"), dtype=problem.y.dtype,
                          device=problem.y.device)
    theta = _theta(problem, center).expand(pts.shape[0], -1).clone()
    for k, name in enumerate(names):
        theta[:, problem.model.param_names.index(name)] = pts[:, k]
    return evaluate(problem, theta, **chunks)


def loss_grid(problem: Problem, names: Sequence[str], center: Mapping[str, float], span=None,
              resolution=81, path=None, **chunks) -> LossGrid:
    """The loss over two parameters ``names`` on a ``resolution`` grid (an int or a pair),
    the others at ``center`` (values for every parameter). ``span`` and ``path``
    (``(k, 2)`` points to keep in view) choose the ranges, see ``axis_range``; ``chunks``
    (``rows``, ``check``) go to ``evaluate``."""
    names = check_names(problem, names, 2)
    center = full_center(problem, center)
    g1, g2 = check_resolution(resolution, 2)
    path = None if path is None else _points(path, 2, "path")
    scales = _default_scales(problem, names, center, span)
    axes = [np.linspace(*axis_range(n, center[n], span, None if path is None else path[:, k],
                                    scale=scales.get(n)), g)
            for k, (n, g) in enumerate(zip(names, (g1, g2)))]
    i, j = (problem.model.param_names.index(n) for n in names)
    theta = _theta(problem, center).expand(g2, g1, -1).clone()
    theta[..., i] = torch.as_tensor(axes[0], dtype=theta.dtype)[None, :]
    theta[..., j] = torch.as_tensor(axes[1], dtype=theta.dtype)[:, None]
    loss = evaluate(problem, theta.reshape(g1 * g2, -1), **chunks).reshape(g2, g1)
    return LossGrid(names, axes[0], axes[1], loss, center, problem.loss.name)


def _default_scales(problem: Problem, names, center, span) -> dict[str, float | None]:
    """The natural scales of the ``names`` whose view is the default (no ``span``)."""
    free = [n for n in names if (span.get(n) if isinstance(span, Mapping) else span) is None]
    if not free:
        return {}
    return natural_scales(problem.model, problem.x.double(), problem.y, center, free)


def loss_slice(problem: Problem, name: str, center: Mapping[str, float], span=None,
               resolution: int = 201, path=None, **chunks) -> LossSlice:
    """The loss against one parameter ``name``, the others at ``center``.

        >>> from gradfit.data import lesson_data
        >>> d = lesson_data()
        >>> p = as_problem("a*x^2 + b*x + c", d.x, d.y, loss="mae")
        >>> s = loss_slice(p, "a", {"a": 1.1, "b": 1.1, "c": 1.1}, span=(1.1, 2.1), resolution=3)
        >>> s.values.tolist(), [round(float(v), 4) for v in s.loss]
        ([1.1, 1.6, 2.1], [2.4219, 1.7631, 1.2776])
    """
    if not isinstance(name, str):
        raise InputError("bad parameter name", expected="one name, as 'a'", given=name)
    (name,) = check_names(problem, (name,), 1)
    center = full_center(problem, center)
    (g,) = check_resolution(resolution, 1)
    scale = _default_scales(problem, (name,), center, span).get(name)
    values = np.linspace(*axis_range(name, center[name], span, path, scale=scale), g)
    loss = loss_along(problem, (name,), values[:, None], center, **chunks)
    return LossSlice(name, values, loss, center, problem.loss.name)


__all__ = ["LossGrid", "LossSlice", "as_problem", "check_names", "full_center", "axis_range",
           "natural_scales", "default_half_width", "rms", "USUAL_SCALES",
           "loss_grid", "loss_slice", "loss_along", "evaluate", "check_resolution"]
