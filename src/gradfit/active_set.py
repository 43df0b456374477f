"""Bounds that are active at the optimum, found and certified: a primal active-set method.

The change of variables in ``bounds.py`` keeps every iterate inside its bounds, but its
derivative vanishes on a bound, so a method that stops by a rule on the Jacobian or the
gradient cannot tell an optimum on a bound from a start there, and its resolution near a
bound is absolute (a parameter of 1e-10 above a bound at 0 keeps few digits). The exact
methods (``lm``, ``irls``) therefore finish here, from the point the transformed fit reached:

1. parameters within a hair of a bound form the active set ``A``, held on the bound exactly;
2. the others are fitted *without* bounds, from the last point (full precision);
3. if that fit leaves the box, go from the last feasible point towards it as far as the
   first bound it crosses (that parameter joins ``A``, on its bound exactly), and back to 2;
4. else check the Karush-Kuhn-Tucker conditions: every parameter in ``A`` must be held by
   its bound, the loss rising when it moves inwards. With the multiplier
   ``mu_i = dL/dp_i`` at a lower bound and ``-dL/dp_i`` at an upper one, scaled to a cosine
   (``|mu_i| <= 1``, Cauchy-Schwarz), each must be ``>= -MU_TOL``; the most negative one
   leaves ``A`` and back to 2. With none negative the point is a KKT point, the optimum
   for convex problems (linear least squares, the linear programme of a linear mae fit)
   and a local optimum otherwise.

For smooth losses (mse, rmse, huber) ``dL/dp`` is the gradient, which vanishes in the free
parameters at the inner fit's optimum. For mae, at a vertex with rows ``Z`` on the curve,
the multipliers come from the subgradient: ``g = J_N^T sign(r_N) + J_Z^T l`` where ``l``
solves ``J_Z[:, F]^T l = -J_N[:, F]^T sign(r_N)`` over the free parameters ``F``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Generator

import torch

NEAR = 1e-7          # a value this close to a bound (relative to the scale) starts on it
MU_TOL = 1e-9        # a multiplier above -MU_TOL holds its parameter
FEAS_TOL = 1e-12     # an inner solution this far (relative) past a bound is on it
STUCK_MU = 1.5e-8    # a free parameter on a bound with its multiplier below -STUCK_MU (about
                     # sqrt(eps): beyond the rounding of an interior optimum's gradient) is
                     # not at an optimum: the loss falls inwards
HEADING = 1e-2       # an exact fit that stopped short (the step limit, a runaway) with no
                     # parameter this close (relative) to a bound was not held up by one:
                     # the active-set method is not run (its unbounded fit would go on
                     # crawling where the bounded one did, as many steps again)


@dataclass
class Refined:
    """Where the active-set method ended."""

    params: dict[str, float]
    at_bound: dict[str, str]                 # name -> "lower" / "upper"
    inner: object                            # the last inner FitResult
    certified: bool
    detail: str
    steps: int = 0
    multipliers: dict[str, float] = field(default_factory=dict)


@dataclass
class InnerEnd:
    """As much of an inner fit's ``FitResult`` as ``refinement`` reads (``fit_many``'s
    batched finish and the out-of-core fit make these)."""

    params: dict[str, float]
    steps: int
    reason: str
    message: str

    @property
    def converged(self) -> bool:
        return self.reason in ("gtol", "ftol", "xtol")

    @property
    def ok(self) -> bool:
        return self.reason not in ("diverged", "failed")


def _scale(value: float, lo: float, hi: float) -> float:
    width = hi - lo if math.isfinite(lo) and math.isfinite(hi) else 0.0
    return max(abs(value), abs(lo) if math.isfinite(lo) else 0.0,
               abs(hi) if math.isfinite(hi) else 0.0, width, 1e-300)


def near_bounds(values: dict[str, float], bounds: dict[str, tuple[float, float]],
                tol: float = NEAR) -> dict[str, str]:
    """Parameters within ``tol`` (relative) of a bound, with the side."""
    out = {}
    for name, (lo, hi) in bounds.items():
        v, s = values[name], _scale(values[name], lo, hi)
        if math.isfinite(lo) and v - lo <= tol * s:
            out[name] = "lower"
        elif math.isfinite(hi) and hi - v <= tol * s:
            out[name] = "upper"
    return out


def held_up_by_a_bound(values: dict[str, float],
                       bounds: dict[str, tuple[float, float]]) -> bool:
    """Whether a fit that stopped short at ``values`` may have been creeping towards a
    bound (a parameter within ``HEADING`` of one), so that the active-set method can
    finish it; ``fit`` and ``fit_many`` ask the same question."""
    return bool(near_bounds(values, bounds, HEADING))


def refine(problem, names: tuple[str, ...], bounds: dict[str, tuple[float, float]],
           fixed: dict[str, float], start: dict[str, float],
           solve: Callable[[dict, dict, dict], object]) -> Refined:
    """The active-set method above. ``solve(p0, fixed, bounds)`` runs the exact method to its
    end and returns a ``FitResult``; ``start`` lies inside the bounds."""
    def at(values, active):
        return multipliers(problem, names, values, active, fixed)
    return drive(refinement(names, bounds, fixed, start, at), solve)


def drive(steps: Generator, solve: Callable[[dict, dict, dict], object]) -> Refined:
    """Run ``refinement`` to its end, each inner fit by ``solve``."""
    try:
        request = next(steps)
        while True:
            request = steps.send(solve(*request))
    except StopIteration as end:
        return end.value


def inner_share(left: int, bounded: bool) -> int:
    """The steps an inner fit of the finish may take of the ``left`` its budget holds: all
    of them within the box, half (at least 100) without bounds. An unbounded fit that runs
    out of the box may crawl (a double exponential running off to another minimum took all
    1000, and the fit with the crossed bound held then had none: ``max_steps`` 12% above
    the optimum); stopped at half, it is followed where it goes (a crossing, or on from its
    end)."""
    left = max(int(left), 0)
    return left if bounded else min(left, max(left // 2, 100))


def refinement(names: tuple[str, ...], bounds: dict[str, tuple[float, float]],
               fixed: dict[str, float], start: dict[str, float],
               multipliers_at: Callable[[dict, dict], dict]) -> Generator:
    """``refine`` as a generator: it yields each inner fit it needs as ``(p0, fixed,
    bounds)`` and is sent that fit's result (``steps``, ``ok``, ``converged``, ``params``,
    ``reason``, ``message``); it returns the ``Refined``. ``fit_many`` runs the inner fits
    of many problems as one batch (``many_refine``); ``multipliers_at(values, active)``
    gives the multipliers of the active bounds at ``values``."""
    x = _clamp(dict(start), bounds)
    active = near_bounds(x, bounds)
    released: dict[str, int] = {}
    steps, inner, detail = 0, None, ""
    rounds = 0
    while rounds < 4 * len(bounds) + 6:
        rounds += 1
        held = {**fixed, **{n: _side_value(bounds[n], s) for n, s in active.items()}}
        x.update({n: held[n] for n in active})
        boxed = walked = False
        if len(held) == len(names):            # every parameter fixed: nothing to solve
            inner = None
            y = dict(x)
        else:
            inner = yield dict(x), held, {}
            steps += inner.steps
            walked = not inner.ok and _walked(inner)
            if not inner.ok and not walked:     # the unbounded fit broke down: keep the box
                boxed = True
                inner = yield dict(x), held, {n: b for n, b in bounds.items()
                                              if n not in active}
                steps += inner.steps
            y = dict(inner.params)
            if not all(map(math.isfinite, y.values())):
                return Refined(x, active, inner, False, "the fit within the bounds broke down",
                               steps)
        crossing = _first_crossing(x, y, bounds, active)
        if crossing is not None:
            t, name, side = crossing
            x = _clamp({n: x[n] + t * (y[n] - x[n]) for n in names}, bounds)
            x[name] = _side_value(bounds[name], side)
            active[name] = side
            continue
        if walked:
            # it walked inside the box: a bound may still stop the walk further on (the
            # fit within the box follows it there), or nothing does (that fit fails too)
            boxed = True
            inner = yield dict(x), held, {n: b for n, b in bounds.items() if n not in active}
            steps += inner.steps
            y = dict(inner.params)
            if not inner.ok:                    # walked within the box too: no minimum
                return Refined(_clamp(y, bounds), active, inner, False, "", steps)
        x = _clamp(y, bounds)
        if not boxed and inner is not None and inner.reason == "max_steps" and inner.steps:
            # the unbounded fit had half the steps left (``solve``'s share) and stopped
            # inside the box: it goes on from there, with half of what is left again
            rounds -= 1
            continue
        landed = False
        for name, side in near_bounds(x, bounds, FEAS_TOL).items():
            if name not in active and released.get(name, 0) == 0:
                active[name] = side             # landed on a bound: hold it there
                landed = True
        if landed and inner is not None and not inner.converged:
            # the fit that failed had it free: on its bound the change of variables has no
            # slope, and its Jacobian column vanished (a 4PL's hill run to its bound:
            # "lost rank", no certificate, where the bound holds it); fit again with it held
            continue
        mu = multipliers_at(x, active)
        wrong = {n: m for n, m in mu.items() if m < -MU_TOL}
        if not wrong:
            # every parameter on a bound, held or not, must be held by it (the KKT
            # conditions in full): a released one that the fit within the box left on its
            # bound, where the change of variables has no slope, is not at an optimum
            left = {n: s for n, s in near_bounds(x, bounds, FEAS_TOL).items() if n not in active}
            stuck = [n for n, m in multipliers_at(x, left).items() if m < -STUCK_MU]
            if stuck:
                return Refined(x, active, inner, False,
                               f"{', '.join(stuck)} on a bound where the loss falls inwards",
                               steps, mu)
            ok = inner is None or inner.converged
            return Refined(x, active, inner, ok, detail, steps, mu)
        leave = min(wrong, key=wrong.get)
        released[leave] = released.get(leave, 0) + 1
        del active[leave]
    return Refined(x, active, inner, False, "the set of active bounds did not settle", steps)


def _walked(inner) -> bool:
    """An unbounded inner fit that failed by walking along a flat valley or running off
    (LM's WALK or RUNAWAY): its end is a finite point of lower loss, not a
    breakdown, and where it crossed a bound on the way, that bound is held as for a fit
    that ended (a 4PL's hill past its bound while top and ec50 slide: the fit in the box
    instead crawled at the bound's pole for its whole budget)."""
    from .lm_codes import RUNAWAY, WALK, message
    if not any(message(c, {}) in inner.message for c in (WALK, RUNAWAY)):
        return False
    return all(map(math.isfinite, inner.params.values()))


def _side_value(bound: tuple[float, float], side: str) -> float:
    return bound[0] if side == "lower" else bound[1]


def _clamp(values: dict[str, float], bounds) -> dict[str, float]:
    out = dict(values)
    for name, (lo, hi) in bounds.items():
        out[name] = min(max(out[name], lo), hi)
    return out


def _first_crossing(x, y, bounds, active):
    """The first bound that the segment from ``x`` (inside) to ``y`` crosses: ``(t, name,
    side)``, or None when ``y`` is inside (to within rounding)."""
    best = None
    for name, (lo, hi) in bounds.items():
        if name in active:
            continue
        v, s = y[name], _scale(y[name], lo, hi)
        for side, b, past in (("lower", lo, v < lo - FEAS_TOL * s),
                              ("upper", hi, v > hi + FEAS_TOL * s)):
            if past:
                d = v - x[name]
                t = (b - x[name]) / d if d != 0 else 0.0
                t = min(max(t, 0.0), 1.0)
                if best is None or t < best[0]:
                    best = (t, name, side)
    return best


def multipliers(problem, names, values: dict[str, float], active: dict[str, str],
                fixed: dict[str, float]) -> dict[str, float]:
    """The scaled KKT multiplier of each active bound (``>= 0``: the bound holds it)."""
    if not active:
        return {}
    theta = torch.tensor([values[n] for n in names], dtype=problem.y.dtype,
                         device=problem.y.device)
    from .lm import problem_residuals_and_jacobian
    r, jac = problem_residuals_and_jacobian(problem, theta)
    if _exact(problem, r, jac, theta):
        # every residual within its rounding level: no parameter can lower the loss, and
        # the signs of J^T r are rounding noise (a quadratic through 3 points with c1 on
        # its bound had been 'the loss falls inwards' at a loss of 4e-28)
        return {name: 0.0 for name in active}
    if problem.loss.name == "mae":
        g, scale = _mae_gradient(r, jac, names, active, fixed)
    else:
        rl = r.detach().requires_grad_(True)
        with torch.enable_grad():
            (dl,) = torch.autograd.grad(problem.loss.reduce(rl, problem.loss.delta), rl)
        g = jac.transpose(0, 1) @ dl
        scale = torch.linalg.vector_norm(jac, dim=0) * torch.linalg.vector_norm(dl)
    out = {}
    for name, side in active.items():
        i = names.index(name)
        s = float(scale[i])
        m = float(g[i]) / s if s > 0 else 0.0
        out[name] = m if side == "lower" else -m
    return out


def _exact(problem, r, jac, theta) -> bool:
    """Whether every residual is within 16 of its rounding level (``irls_check``'s)."""
    from .irls_check import rounding_level
    sigma = getattr(problem, "sigma", None)
    ys = problem.y if sigma is None else problem.y / sigma
    if ys.shape != r.shape:         # residuals of the normal equations alone (out of core)
        return False
    level = rounding_level(r[None], jac[None], theta[None], ys[None])[0]
    return bool((r.abs() <= 16 * level).all())


def _mae_gradient(r, jac, names, active, fixed):
    """``J_N^T sign(r_N) + J_Z^T l`` with ``l`` making it vanish in the free parameters."""
    tol = 1e-9 * max(float(r.abs().max()), 1e-300)
    on = r.abs() <= tol
    sign = torch.where(on, torch.zeros_like(r), torch.sign(r))
    g = jac.transpose(0, 1) @ sign
    free = [i for i, n in enumerate(names) if n not in active and n not in fixed]
    if free and bool(on.any()):
        jz = jac[on][:, free]                                      # (|Z|, F)
        lam = torch.linalg.lstsq(jz.transpose(0, 1), -g[free].unsqueeze(-1)).solution[:, 0]
        g = g + jac[on].transpose(0, 1) @ lam.clamp(-1.0, 1.0)
    return g, jac.abs().sum(0)
