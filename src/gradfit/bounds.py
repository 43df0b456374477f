"""Bounds and fixed parameters, honoured by every optimizer through a change of variables.

The optimizer moves free internal values ``u``; the model sees ``theta = T(u)``, which lies
inside the bounds by construction (no clipping after the fact). As in MINUIT and lmfit:

- both bounds ``lo <= p <= hi``:  ``p = lo + (hi - lo) * (sin(u) + 1) / 2``
- lower bound only ``p >= lo``:   ``p = lo - 1 + sqrt(u^2 + 1)``
- upper bound only ``p <= hi``:   ``p = hi + 1 - sqrt(u^2 + 1)``
- fixed ``p = v``:                ``p`` is not a variable at all.

Any finite bounds work (``a >= 1e308``; a start 1e200 above its bound): ``sqrt(u^2 + 1)``
is ``|u|`` where ``u^2`` would overflow (``BIG_U``). Two bounds further apart than the
largest float (``(-1e308, 1e308)``) are refused (``check_width``): None is no bound.

    >>> import torch
    >>> t = ParamTransform(("a", "b", "c"), bounds={"a": (0, 10)}, fixed={"c": 1.0})
    >>> t.free
    ('a', 'b')
    >>> u = t.internal({"a": 2.5, "b": -3.0, "c": 1.0})
    >>> t.external(u).tolist()
    [2.5, -3.0, 1.0]
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from .errors import InputError

INF = math.inf
INSET = 0.01       # how far inside a start on or past a bound moves (of the width)
#: past this ``|u|``, ``u*u`` overflows: ``sqrt(u*u + 1)`` is taken as ``|u|`` (equal to
#: within 1e-300, relatively), so that a start far from a one-sided bound (``a >= 0`` with
#: p0 a=1e200, or the bound 1e308 itself) is no OverflowError and no inf
BIG_U = 1e150


def inside(v: float, lo: float, hi: float) -> tuple[float, str] | None:
    """Where a start ``v`` on or outside a bound moves, and where it was; None when it lies
    strictly inside: on the transform's scale a point on a bound has a zero derivative, so
    no method could leave it. Between two bounds it moves to ``INSET`` of the width inside
    the nearer one; past a single bound to ``INSET * max(|bound|, 1)`` inside it."""
    if lo < v < hi:
        return None
    if math.isfinite(lo) and math.isfinite(hi):
        step = INSET * (hi - lo)
        new = lo + step if v <= lo + 0.5 * (hi - lo) else hi - step
    elif math.isfinite(lo):
        new = lo + INSET * max(abs(lo), 1.0)
    else:
        new = hi - INSET * max(abs(hi), 1.0)
    where = ("on its lower bound" if v == lo else "on its upper bound" if v == hi
             else "outside its bounds")
    return new, where


class ParamTransform:
    """Maps free internal values ``(..., F)`` to the model's parameters ``(..., P)``."""

    def __init__(self, names: tuple[str, ...], bounds: Mapping[str, tuple] | None = None,
                 fixed: Mapping[str, float] | None = None, dtype=torch.float64, device="cpu"):
        self.names = tuple(names)
        self.bounds = _check_bounds(self.names, bounds or {})
        self.fixed = _check_fixed(self.names, fixed or {}, self.bounds)
        self.free = tuple(n for n in self.names if n not in self.fixed)
        if not self.free:
            raise InputError("every parameter is fixed", expected="at least one free parameter")
        self.identity = not self.bounds and not self.fixed
        self.dtype, self.device = dtype, device
        self._free_at = torch.tensor([self.names.index(n) for n in self.free], device=device)
        self._base = torch.tensor([self.fixed.get(n, 0.0) for n in self.names], dtype=dtype,
                                  device=device)
        kinds = [self.bounds.get(n, (-INF, INF)) for n in self.free]
        self._lo = torch.tensor([lo for lo, _ in kinds], dtype=dtype, device=device)
        self._hi = torch.tensor([hi for _, hi in kinds], dtype=dtype, device=device)
        fl, fh = torch.isfinite(self._lo), torch.isfinite(self._hi)
        self._both, self._lower, self._upper = fl & fh, fl & ~fh, ~fl & fh
        self._lo0 = torch.where(fl, self._lo, 0.0)
        self._hi0 = torch.where(fh, self._hi, 0.0)

    @staticmethod
    def _root(u: torch.Tensor) -> torch.Tensor:
        """``sqrt(u^2 + 1)``, without overflow where ``|u| > BIG_U`` (there: ``|u|``)."""
        big = u.abs() > BIG_U
        small = torch.where(big, 0.0, u)        # no inf in the branch not taken (autograd)
        return torch.where(big, u.abs(), torch.sqrt(small * small + 1))

    def external(self, u: torch.Tensor) -> torch.Tensor:
        """``(..., F)`` internal -> ``(..., P)`` model parameters."""
        if self.identity:
            return u
        root = self._root(u)
        p = torch.where(self._both, self._lo0 + (self._hi0 - self._lo0) * (torch.sin(u) + 1) / 2, u)
        p = torch.where(self._lower, self._lo0 - 1 + root, p)
        p = torch.where(self._upper, self._hi0 + 1 - root, p)
        if not self.fixed:
            return p
        out = self._base.expand(*p.shape[:-1], len(self.names)).clone()
        out[..., self._free_at] = p
        return out

    @property
    def free_at(self) -> torch.Tensor:
        """The positions of the free parameters among all."""
        return self._free_at

    def slope(self, u: torch.Tensor) -> torch.Tensor:
        """``d external / d u`` of the free parameters ``(..., F)`` (each depends on its own
        ``u`` alone)."""
        root = self._root(u)
        g = torch.where(self._both, (self._hi0 - self._lo0) / 2 * torch.cos(u), torch.ones_like(u))
        g = torch.where(self._lower, u / root, g)
        return torch.where(self._upper, -u / root, g)

    def move_inside(self, values: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
        """Starts on or outside a bound move strictly inside, and say so (``inside``)."""
        out, notes = dict(values), []
        for name, (lo, hi) in self.bounds.items():
            if name in self.fixed:
                continue
            moved = inside(out[name], lo, hi)
            if moved is not None:
                out[name], where = moved
                notes.append(f"the start {name}={values[name]:g} was {where}; it moved inside "
                             f"to {out[name]:g}")
        return out, notes

    def internal(self, values: Mapping[str, float]) -> torch.Tensor:
        """Model parameters by name -> the internal ``(F,)`` that gives them."""
        u = []
        for name in self.free:
            v = float(values[name])
            lo, hi = self.bounds.get(name, (-INF, INF))
            if not lo <= v <= hi:
                raise InputError(f"the start of {name!r} lies outside its bounds",
                                 expected=f"{lo:g} <= {name} <= {hi:g}", given=v)
            if math.isfinite(lo) and math.isfinite(hi):
                s = min(max(2 * (v - lo) / (hi - lo) - 1, -1.0), 1.0)
                u.append(math.asin(s))
            elif math.isfinite(lo):
                u.append(_one_sided(name, v - lo))
            elif math.isfinite(hi):
                u.append(_one_sided(name, hi - v))
            else:
                u.append(v)
        return torch.tensor(u, dtype=self.dtype, device=self.device)


def check_width(name, lo: float, hi: float) -> None:
    """Refuse two finite bounds further apart than the largest float (``(-1e308, 1e308)``:
    ``hi - lo`` is inf, and the change of variables had made the parameter NaN, "diverged
    at step 0"). An unbounded side is None (or inf), not a huge number."""
    if math.isfinite(lo) and math.isfinite(hi) and math.isinf(hi - lo):
        raise InputError(f"bounds for {name!r} are too far apart: {hi:g} - ({lo:g}) is beyond "
                         "the largest float (1.8e308)", expected="bounds less than 1.8e308 "
                         "apart, or no bound on a side (None; on the command line an empty "
                         "side, a=0:)")


def _one_sided(name: str, d: float) -> float:
    """``u`` of a value ``d >= 0`` from its one bound: ``sqrt((d + 1)^2 - 1)``, which
    overflowed (OverflowError) past d = 1e154; ``sqrt(d) * sqrt(d + 2)`` there."""
    if math.isinf(d):             # a start 1e308 above a bound at -1e308: no float holds it
        raise InputError(f"the start of {name!r} is too far from its bound: their distance "
                         "is beyond the largest float (1.8e308)", expected="a start and a "
                         "bound within 1.8e308 of each other, or no bound (None)")
    if d > BIG_U:
        return math.sqrt(d) * math.sqrt(d + 2)
    return math.sqrt((d + 1) ** 2 - 1)


def _check_folding(name, what: str) -> None:
    """A name Python reads as another (``µ`` as ``μ``) is said to be one, not unknown."""
    from .expr import folding_advice, folding_problem
    problem = folding_problem(name) if isinstance(name, str) else None
    if problem:
        raise InputError(f"{what} {name!r}, which is not how a model can write it: {problem}",
                         expected=folding_advice(name))


def _check_bounds(names, bounds) -> dict[str, tuple[float, float]]:
    out = {}
    for name, pair in bounds.items():
        if name not in names:
            _check_folding(name, "bounds name")
            raise InputError(f"bounds name an unknown parameter {name!r}",
                             expected="one of " + ", ".join(names[:20]))
        try:
            lo, hi = (float(-INF if pair[0] is None else pair[0]),
                      float(INF if pair[1] is None else pair[1]))
        except (TypeError, ValueError, IndexError):
            raise InputError(f"bad bounds for {name!r}", expected="a pair (low, high)",
                             given=repr(pair)) from None
        if math.isnan(lo) or math.isnan(hi) or not lo < hi:
            raise InputError(f"bad bounds for {name!r}", expected="low < high", given=f"{lo:g}:{hi:g}")
        check_width(name, lo, hi)
        if math.isfinite(lo) or math.isfinite(hi):
            out[name] = (lo, hi)
    return out


def _check_fixed(names, fixed, bounds) -> dict[str, float]:
    out = {}
    for name, value in fixed.items():
        if name not in names:
            _check_folding(name, "fixed names")
            raise InputError(f"fixed names an unknown parameter {name!r}",
                             expected="one of " + ", ".join(names[:20]))
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if not math.isfinite(v):
            raise InputError(f"bad fixed value for {name!r}", expected="a finite number", given=value)
        out[name] = v
    return out


class TransformedProblem:
    """A problem seen through a ``ParamTransform``: optimizers move ``u``, the model sees
    ``T(u)``. It offers what optimizers use of a ``Problem``."""

    def __init__(self, base, transform: ParamTransform):
        self.base, self.transform = base, transform
        self.loss, self.model, self.x, self.y, self.sigma = (base.loss, base.model, base.x,
                                                              base.y, base.sigma)

    @property
    def n(self) -> int:
        return self.base.n

    def predict(self, u):
        return self.base.predict(self.transform.external(u))

    def rows(self, idx) -> "TransformedProblem":
        return TransformedProblem(self.base.rows(idx), self.transform)

    def residuals(self, u):
        return self.base.residuals(self.transform.external(u))

    def objective(self, u, idx=None):
        return self.base.objective(self.transform.external(u), idx)
