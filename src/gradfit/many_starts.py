"""Starting values, bounds and fixed values of many problems, as ``(B, P)`` matrices.

A value is shared (one number) or per problem (B numbers). Starts come from the model's
defaults, then ``guess(x, y) -> dict`` per problem (lmfit's idea), then ``p0``. A guess
that raises or gives a non-finite value fails that problem alone.

``starts=K`` adds K - 1 starts per problem, seeded: uniform between two finite bounds,
else ``v + max(|v|, 1) * N(0, 1)`` (moved inside a single bound), or for a flexible model
(a ReLU sum, a network) its own seeded random start for ``seed + k`` (an initialisation
spread over the data's range, as a network's: the spread around start 0 of a network on
x in [3, 7] had ended 60 times higher than these), the same draws for every problem;
``fit``'s starts are these, for its one problem (``multistart.start_point``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from .bounds import INSET
from .errors import InputError


class StartValues(np.ndarray):
    """``start_matrix``'s ``(B, P)`` starts, which know the model and each problem's inputs
    its default start was drawn for (``model``, ``inputs``: ``b -> x_b``, ``shared``: one
    for every problem): ``spread_starts`` draws a flexible model's other starts from the
    model itself at each problem's inputs, as ``fit`` does (``multistart.start_point``)."""

    model = None
    inputs = None
    shared = True

    def __array_finalize__(self, obj):
        for k in ("model", "inputs", "shared"):
            setattr(self, k, getattr(obj, k, getattr(StartValues, k)))


def known_starts(values: np.ndarray, model, x, shared: bool = True) -> StartValues:
    """``values`` as ``StartValues`` of ``model`` at inputs ``x``: a tensor (every row's),
    or with ``shared`` False a function ``b -> tensor``, row ``b``'s."""
    out = np.asarray(values, dtype=np.float64).view(StartValues)
    out.model, out.shared = model, shared
    out.inputs = x if not shared else (lambda b: x)
    return out


def each_inputs(data):
    """``(b -> x_b, shared)``: problem ``b``'s inputs as ``fit`` sees them alone (its real
    points, a float64 tensor: a copy, as the user's array may be read-only), and whether
    every problem has the same ones."""
    if data.shared_x and data.mask is None:
        x = torch.tensor(np.asarray(data.x, dtype=np.float64))
        return (lambda b: x), True
    return (lambda b: torch.tensor(np.asarray(data.series(b)[0], dtype=np.float64))), False


def initial_rows(model, names, inputs, shared: bool, B: int, seeds) -> np.ndarray:
    """``(B, S, P)``: ``model.initial(x_b, seed)`` of each problem ``b`` (``inputs(b)``)
    for each of the ``S`` ``seeds``, drawn as ``fit`` draws them for that problem alone (a
    ReLU sum spreads its kinks over the range of x: problem 0's range had served every
    problem); once where the inputs are shared, or where the model's starts do not depend
    on them (asked once, at other inputs), and once for each distinct series of inputs."""
    def draw(x):
        return [[own[n] for n in names] for own in (model.initial(x, s) for s in seeds)]

    def key(x):
        return x.numpy().tobytes() + str(tuple(x.shape)).encode()
    x0 = inputs(0)
    first = draw(x0)
    out = np.empty((B, len(seeds), len(names)))
    out[:] = first
    if shared or B == 1:
        return out
    other = torch.full((2,) + tuple(x0.shape[1:]), -7.25, dtype=torch.float64)
    other[1] = 11.5
    if draw(other) == draw(torch.full_like(other, 0.5)):
        return out                        # the model's starts ignore the inputs
    seen = {key(x0): 0}
    for b in range(1, B):
        x = inputs(b)
        b0 = seen.setdefault(key(x), b)
        out[b] = draw(x) if b0 == b else out[b0]
    return out


class PerProblem(np.ndarray):
    """B values of a setting, one per problem, even where B is 1: a length class of a long
    table (``many_buckets``) takes its problems' values so, and one bad value among them
    fails its problem alone, as among the table's B, not the whole call as one shared
    value would."""


def once(value) -> bool:
    """Whether a setting's ``value`` is one number shared by every problem."""
    return np.size(value) == 1 and not isinstance(value, PerProblem)


def per_problem(what: str, name: str, value, B: int) -> np.ndarray:
    """``value`` (one number, or B numbers in a 1-D array) as ``(B,)`` float64; anything
    else is refused, naming ``what`` and ``name`` (an (8, 12) plate of 96 values is not
    read in some order: which well is which is the caller's to say)."""
    expected = f"a number or {B} numbers (shape ({B},), one per problem)"
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"bad {what} for {name!r}", expected=expected,
                         given=repr(value)) from None
    if a.ndim > 1:
        raise InputError(f"bad {what} for {name!r}", expected=expected,
                         given=f"an array of shape {a.shape}")
    a = a.reshape(-1)
    if a.size == 1:
        return np.full(B, a[0])
    if a.size != B:
        raise InputError(f"bad {what} for {name!r}", expected=expected,
                         given=f"{a.size} numbers")
    return a


def _known(names, name: str, what: str) -> None:
    if name not in names:
        raise InputError(f"{what} names an unknown parameter {name!r}",
                         expected="one of " + ", ".join(names[:20]))


def fixed_matrix(names, fixed, B: int, bad: dict):
    """The fixed names and a ``(B, P)`` matrix holding their values (0 elsewhere)."""
    out = np.zeros((B, len(names)))
    _fill_columns(out, None, names, fixed, "fixed", "bad fixed value for {!r}", bad)
    return tuple(n for n in names if n in (fixed or {})), out


def _fill_columns(out, given, names, values, what: str, not_finite: str, bad: dict) -> None:
    """``out[:, j] = values[name]`` (a number or B finite numbers) for each named parameter;
    ``given[:, j] = True`` too when ``given`` is an array. One number that is not finite is
    refused; among B numbers, one that is not fails its problem alone (``bad[b]``: why)."""
    for name, value in (values or {}).items():
        _known(names, name, what)
        v = per_problem(what if what != "fixed" else "fixed value", name, value, out.shape[0])
        wrong = ~np.isfinite(v)
        if wrong.any() and once(value):
            raise InputError(not_finite.format(name), expected="finite numbers")
        for b in np.flatnonzero(wrong):
            bad.setdefault(int(b), f"{not_finite.format(name)} for this problem ({v[b]:g}): "
                                   "expected a finite number")
        out[:, names.index(name)] = np.where(wrong, out[:, names.index(name)], v)
        if given is not None:
            given[:, names.index(name)] = True


def bounds_matrix(free, names, bounds, B: int, bad: dict, fixed_vals=None):
    """``lo``, ``hi`` ``(B, F)``: +-inf where unbounded. Bounds given once with low >= high
    are refused; among B pairs, such a pair fails its problem alone (``bad[b]``: why). So is
    a fixed value (``fixed_vals`` ``(B, P)``) outside its own bounds (``fit``'s rule)."""
    lo, hi = np.full((B, len(free)), -math.inf), np.full((B, len(free)), math.inf)
    for name, pair in (bounds or {}).items():
        _known(names, name, "bounds")
        if name not in free:
            if fixed_vals is not None:
                _fixed_within(name, pair, fixed_vals[:, names.index(name)], B, bad)
            continue
        try:
            a, b = pair
        except (TypeError, ValueError):
            raise InputError(f"bad bounds for {name!r}", expected="a pair (low, high)",
                             given=repr(pair)) from None
        j = free.index(name)
        lo[:, j] = per_problem("bounds", name, -math.inf if a is None else a, B)
        hi[:, j] = per_problem("bounds", name, math.inf if b is None else b, B)
        wrong = ~(lo[:, j] < hi[:, j])          # NaN too
        if wrong.any() and once(a) and once(b):
            raise InputError(f"bad bounds for {name!r}", expected="low < high",
                             given=f"({lo[0, j]:g}, {hi[0, j]:g})")
        for k in np.flatnonzero(wrong):
            bad.setdefault(int(k), f"bad bounds for {name!r} for this problem: expected low "
                                   f"< high, got ({lo[k, j]:g}, {hi[k, j]:g})")
        lo[wrong, j], hi[wrong, j] = -math.inf, math.inf    # never run: only finite there
    return lo, hi


def _fixed_within(name, pair, value, B: int, bad: dict) -> None:
    try:
        a, b = pair
    except (TypeError, ValueError):
        raise InputError(f"bad bounds for {name!r}", expected="a pair (low, high)",
                         given=repr(pair)) from None
    low = per_problem("bounds", name, -math.inf if a is None else a, B)
    high = per_problem("bounds", name, math.inf if b is None else b, B)
    outside = ~((low <= value) & (value <= high))
    if not outside.any():
        return
    k = int(np.flatnonzero(outside)[0])
    text = (f"{name!r} is fixed at {value[k]:g}, outside its bounds {low[k]:g}..{high[k]:g}")
    if once(a) and once(b) and np.unique(value).size == 1:
        raise InputError(text, expected="a fixed value within its bounds, or no bounds for "
                         "a fixed parameter")
    for k in np.flatnonzero(outside):
        bad.setdefault(int(k), f"{name!r} is fixed at {value[k]:g}, outside its bounds "
                               f"{low[k]:g}..{high[k]:g} for this problem")


def start_matrix(model, data, p0, guess, seed: int):
    """``(B, P)`` starting values and ``(B, P)`` True where the user gave them."""
    names = model.param_names
    B = data.B
    if p0 is not None and not isinstance(p0, Mapping):
        raise InputError("bad p0", expected="a mapping name -> a number or B numbers "
                         "(a function of (x, y) goes to guess=)", given=type(p0).__name__)
    inputs, shared = each_inputs(data)
    values = initial_rows(model, names, inputs, shared, B, [seed])[:, 0]
    given = np.zeros((B, len(names)), dtype=bool)
    if guess is not None:
        for b in range(B):
            if b in data.bad:
                continue
            bx, by, _ = data.series(b)
            try:
                out = guess(bx, by)
            except Exception as exc:       # the user's function: any failure is this problem's
                data.bad[b] = f"guess failed: {type(exc).__name__}: {exc}"
                continue
            if not isinstance(out, Mapping):
                data.bad[b] = (f"guess returned {type(out).__name__}: expected a dict of "
                               f"parameter name -> starting value (of {', '.join(names)})")
                continue
            try:
                g = dict(out)
                for name, v in g.items():
                    _known(names, name, "guess")
                    v = _one_number(name, v)
                    if not math.isfinite(v):
                        raise ValueError(f"{name} = {v}")
                    values[b, names.index(name)] = v
                    given[b, names.index(name)] = True
            except _NotOneNumber as exc:
                data.bad[b] = str(exc)
            except Exception as exc:       # the user's function: any failure is this problem's
                data.bad[b] = f"guess failed: {type(exc).__name__}: {exc}"
    _fill_columns(values, given, names, p0, "p0", "p0 value of {!r} is not finite", data.bad)
    return known_starts(values, model, inputs if not shared else inputs(0), shared), given


class _NotOneNumber(ValueError):
    """A guess gave several values (an array, a list) for one parameter."""


def _one_number(name: str, v) -> float:
    """A guess's value ``v`` of parameter ``name`` as one float; several values are refused
    by name (``float`` had said only "only 0-dimensional arrays can be converted")."""
    if not isinstance(v, (str, bytes)) and np.ndim(v) > 0:
        n = int(np.size(v))
        if n != 1:
            kind = "an array" if isinstance(v, np.ndarray) else f"a {type(v).__name__}"
            raise _NotOneNumber(f"guess gave {name} = {kind} of {n} values: expected one "
                                "number")
        v = np.asarray(v).reshape(-1)[0]
    return float(v)


def spread_starts(values, given, lo, hi, names, free, K: int, seed: int) -> np.ndarray:
    """``(B * K, P)``: row ``b * K`` is problem b's start, the others spread around it (a
    flexible model's, where ``values`` are ``StartValues``: its own random starts); and
    ``{b: note}`` for the problems whose given start lay on or outside its bounds: it moves
    strictly inside as ``fit`` moves it (``bounds.ParamTransform.move_inside``: on the
    transform's scale a point on a bound has a zero derivative), and the note says so.
    Defaults outside their bounds move to the middle (or 1 inside a single bound)."""
    B = values.shape[0]
    model = getattr(values, "model", None)
    inputs, shared = getattr(values, "inputs", None), getattr(values, "shared", True)
    values = np.asarray(values)
    at = [names.index(n) for n in free]
    v = values[:, at]
    g = given[:, at]
    inside = (v > lo) & (v < hi)
    width = np.where(np.isfinite(lo) & np.isfinite(hi), hi - lo, np.nan)
    lower = np.where(np.isfinite(width), v <= lo + 0.5 * np.nan_to_num(width), np.isfinite(lo))
    step = np.where(np.isfinite(width), INSET * np.nan_to_num(width),
                    INSET * np.maximum(np.abs(np.where(lower, lo, hi)), 1.0))
    with np.errstate(invalid="ignore"):        # inf - step where a side is unbounded
        moved = np.where(lower, lo + step, hi - step)
    notes = {}
    for b, j in np.argwhere(~inside & g):
        where = ("on its lower bound" if v[b, j] == lo[b, j] else "on its upper bound"
                 if v[b, j] == hi[b, j] else "outside its bounds")
        notes[int(b)] = "; ".join(filter(None, [notes.get(int(b)), f"the start {free[j]}="
                                                f"{v[b, j]:g} was {where}; it moved inside "
                                                f"to {moved[b, j]:g}"]))
    v = np.where(~inside & g, moved, v)
    out_ = (v < lo) | (v > hi)
    v = np.where(((v == lo) | (v == hi)) & ~out_, moved, v)     # a default on a bound
    both, low, high = np.isfinite(lo) & np.isfinite(hi), np.isfinite(lo), np.isfinite(hi)
    lo0, hi0 = np.where(low, lo, 0.0), np.where(high, hi, 0.0)
    mid = np.where(both, (lo0 + hi0) / 2, np.where(low, lo0 + 1, hi0 - 1))
    v = np.where(out_, mid, v)
    values = values.copy()
    values[:, at] = v
    rows = np.repeat(values, K, axis=0)
    if K > 1:
        # the same draws for every problem, so that a problem's starts do not depend on
        # the batch it is in: fit (one problem) makes exactly these (multistart.start_point)
        rng = np.random.default_rng(seed)
        z, u = rng.standard_normal((K - 1, len(at))), rng.random((K - 1, len(at)))
        spread = v[:, None, :] + np.maximum(np.abs(v), 1.0)[:, None, :] * z
        if model is not None and not model.identifiable:
            # a flexible model: its own random start for seed + k (not around start 0),
            # at each problem's own inputs
            own = initial_rows(model, names, inputs, shared, B,
                               [seed + k for k in range(1, K)])
            spread = own[:, :, at].copy()
        uni = lo0[:, None, :] + (hi0 - lo0)[:, None, :] * u
        spread = np.where(both[:, None, :], uni, spread)
        spread = np.where(low[:, None, :] & ~both[:, None, :],
                          np.maximum(spread, lo[:, None, :] + 1e-3), spread)
        spread = np.where(high[:, None, :] & ~both[:, None, :],
                          np.minimum(spread, hi[:, None, :] - 1e-3), spread)
        rows = rows.reshape(B, K, -1)
        rows[:, 1:, at] = spread
        rows = rows.reshape(B * K, -1)
    return rows, notes
