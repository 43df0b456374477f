"""Long tables of very unequal series: fitted a length class at a time.

``fit_many`` pads the series of a long table to the longest one, so one series of 50,000
points among 20,000 of 5 made every series 50,000 long: 20 GB and a hundred times the
time. When padding would multiply the table's size by more than ``PAD_FACTOR`` (and
exceed ``PAD_MIN`` cells), the groups are split by length (lengths within a factor of
two of each other together), each class is fitted on its own, padded to its own longest
series, and the answers are put back in the table's order: the same numbers as one call,
at the cost of the points there are. Per-problem settings (arrays of B values of p0,
bounds, fixed, lr) are cut to each class's problems (``class_settings``): they had kept
one padded call, and one series of 100,000 points among 2,000 of 3 took 95 s and 4.3 GB
instead of 0.3 s.
"""
from __future__ import annotations

import numpy as np

from .many_data import _missing, group_codes
from .many_result import ManyResult, RowSettings

PAD_FACTOR = 4          # padded cells over real cells beyond which the lengths are split
PAD_MIN = 1 << 22       # ... and padded cells beyond this (below: one call is cheap anyway)


def length_classes(counts: np.ndarray) -> list[np.ndarray] | None:
    """The groups (indices) of each length class, or None when one padded call is fine."""
    padded = len(counts) * int(counts.max())
    if padded <= max(PAD_MIN, PAD_FACTOR * int(counts.sum())):
        return None
    key = np.ceil(np.log2(np.maximum(counts, 1))).astype(np.int64)
    classes = [np.flatnonzero(key == k) for k in np.unique(key)]
    return classes if len(classes) > 1 else None


def scalar_settings(p0, bounds, fixed, lr) -> bool:
    """Whether every setting is one value for all problems (a class can take it as is)."""
    def one(v):
        return v is None or np.ndim(v) == 0
    if p0 is not None and not (hasattr(p0, "items") and all(one(v) for v in p0.values())):
        return False
    for given in (fixed or {}).values():
        if not one(given):
            return False
    for pair in (bounds or {}).values():
        if not (isinstance(pair, (tuple, list)) and all(one(v) for v in pair)):
            return False
    return one(lr)


def fit_by_lengths(fit_many, model, x, y, sigma, group, progress, kwargs):
    """``(fit_many a length class at a time, None)`` (see the module's docstring), or
    ``(None, group_codes(group))`` when the table needs no split (the caller's one call
    takes the codes, not sorting the labels again). ``x`` ``(N, d)``, ``y``, ``sigma``,
    ``group``: long columns; ``kwargs``: the other arguments of ``fit_many``, whose
    per-problem settings each class takes for its own problems (``class_settings``)."""
    g = np.asarray(group)
    if g.ndim != 1 or len(g) != len(y) or len(y) == 0:
        return None, None                   # fit_many says what is wrong (no rows too)
    coded = group_codes(g)
    labels, codes, _ = coded
    classes = length_classes(np.bincount(codes, minlength=len(labels)))
    if classes is None:
        return None, coded
    B = len(labels)
    shared = scalar_settings(kwargs.get("p0"), kwargs.get("bounds"), kwargs.get("fixed"),
                             kwargs.get("lr"))
    if not shared and not _splittable(kwargs.get("p0")):
        return None, coded
    if not shared:
        _check_settings(kwargs, B)          # by the table's B, before any class runs
    parts, done = [], 0
    for groups in classes:
        rows = np.isin(codes, groups)
        tick = None if progress is None else \
            (lambda d, t, base=done: progress(base + d, B))
        kw = kwargs if shared else class_settings(kwargs, groups, B)
        part = fit_many(model, x[rows], y[rows], sigma=None if sigma is None else sigma[rows],
                        group=g[rows], progress=tick, **kw)
        parts.append((groups, part))
        done += len(groups)
    return _merge(parts, labels), None


def _splittable(p0) -> bool:
    """A ``p0`` a class can take its share of: None, a mapping, or values in the model's
    order that are each one number (B values each: one padded call)."""
    if p0 is None or hasattr(p0, "items"):
        return True
    try:
        return all(np.ndim(v) == 0 for v in p0)
    except TypeError:                       # not values at all: fit_many refuses it
        return False


def _check_settings(kwargs, B: int) -> None:
    """Refuse a per-problem setting of the wrong shape as one call of ``B`` problems does
    (its message names the table's B, not a class's)."""
    from .fit_many import _rates
    if kwargs.get("lr") is not None:
        _rates(kwargs["lr"], 1.0, B)
    class_settings(kwargs, np.arange(B), B)


def class_settings(kwargs, groups: np.ndarray, B: int) -> dict:
    """``kwargs`` with each setting of B values (p0, bounds, fixed, lr) cut to the problems
    ``groups`` of one class, in their order: a class's call numbers its problems as the
    table does, the first appearance of each label, and so keeps their order. The values
    stay per problem (``PerProblem``) even for a class of one problem: one bad value fails
    its problem alone, as in one call of the table."""
    from .many_starts import PerProblem, once, per_problem

    def cut(what, name, v):
        if v is None or once(v):
            return v
        return per_problem(what, name, v, B)[groups].view(PerProblem)
    out = dict(kwargs)
    p0 = kwargs.get("p0")
    if p0 is not None and hasattr(p0, "items"):
        out["p0"] = {n: cut("p0", n, v) for n, v in p0.items()}
    if kwargs.get("fixed"):
        out["fixed"] = {n: cut("fixed value", n, v) for n, v in dict(kwargs["fixed"]).items()}
    if kwargs.get("bounds"):
        out["bounds"] = {n: _cut_pair(cut, n, pair) for n, pair in dict(kwargs["bounds"]).items()}
    lr = kwargs.get("lr")
    if lr is not None and not once(lr):
        out["lr"] = np.asarray(lr, dtype=np.float64).reshape(-1)[groups].view(PerProblem)
    return out


def _cut_pair(cut, name, pair):
    """A bounds pair with each side cut to a class (a pair that is not one: as given, for
    ``fit_many`` to refuse)."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        return pair
    return tuple(cut("bounds", name, v) for v in pair)


def _key(v):
    return None if _missing(v) else v


def _merge(parts, labels) -> ManyResult:
    """One ``ManyResult`` in the table's order of groups from the classes' results."""
    B = len(labels)
    first = parts[0][1]
    places = []                             # (class result, its groups, their rows there)
    for groups, r in parts:
        at = {_key(v): i for i, v in enumerate(r.groups.tolist())}
        places.append((r, groups, np.array([at[_key(labels[b])] for b in groups.tolist()],
                                           dtype=np.int64)))

    def gather(get, dtype, shape=()):
        out = np.empty((B,) + shape, dtype=dtype)
        for r, groups, rows in places:
            out[groups] = np.asarray(get(r))[rows]
        return out
    F = 0 if first.covariance is None else first.covariance.shape[-1]
    return ManyResult(
        params={n: gather(lambda r, n=n: r.params[n], float) for n in first.params},
        loss=gather(lambda r: r.loss, float), converged=gather(lambda r: r.converged, bool),
        reason=gather(lambda r: r.reason.astype(object), object).astype(str),
        message=gather(lambda r: r.message, object), steps=gather(lambda r: r.steps, np.int64),
        stderr=None if first.stderr is None else
        {n: gather(lambda r, n=n: r.stderr[n], float) for n in first.stderr},
        covariance=None if first.covariance is None else
        gather(lambda r: r.covariance, float, (F, F)),
        r2=gather(lambda r: r.r2, float), rmse=gather(lambda r: r.rmse, float),
        groups=labels, loss_name=first.loss_name, model=first.model,
        optimizer=first.optimizer, wall_time=sum(r.wall_time for _, r in parts),
        starts=first.starts, n_points=gather(lambda r: r.n_points, np.int64),
        model_object=first.model_object, data=_Classes(places, B),
        settings=None if first.settings is None else RowSettings(
            *(getattr(first.settings, k) for k in ("names", "free", "fixed_names")),
            **{k: gather(lambda r, k=k: getattr(r.settings, k), getattr(first.settings, k).dtype,
                         getattr(first.settings, k).shape[1:]) for k in RowSettings.ARRAYS}),
        lr=None if first.lr is None else gather(lambda r: r.lr, float))


class _Classes:
    """``ManyData.series`` over the classes' data, in the table's order of groups."""

    def __init__(self, places, B: int):
        self.where = np.empty(B, dtype=object)
        for r, groups, rows in places:
            for b, i in zip(groups.tolist(), rows.tolist()):
                self.where[b] = (r, i)

    def series(self, b: int):
        r, i = self.where[b]
        return r.data.series(i)
