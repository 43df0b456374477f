"""The data of many fits: B series, padded into tensors, with what is wrong with each.

Shapes: ``y`` ``(B, n)``; ``x`` shared ``(n,)`` / ``(n, d)`` or per problem ``(B, n)`` /
``(B, n, d)``; ``sigma`` ``(n,)`` shared or ``(B, n)``. Ragged series (a long table with a
group column) are padded to the longest: ``mask`` ``(B, n)`` marks the real points, a
padded ``x`` repeats the series' first point (so a model stays finite there) and padded
residuals are 0, so a padded problem has the same optimum, loss and Jacobian as the series
alone. A series that cannot be fitted (NaN, too few points, a bad sigma) is not refused:
it gets a message in ``bad`` and the others go on.

    >>> import numpy as np
    >>> d = from_long(np.array([0., 1, 2, 0, 1]), np.array([1., 2, 3, 5, 6]),
    ...               group=np.array(["a", "a", "a", "b", "b"]))
    >>> d.y.tolist(), d.mask.tolist(), d.groups.tolist()
    ([[1.0, 2.0, 3.0], [5.0, 6.0, 5.0]], [[True, True, True], [True, True, False]], ['a', 'b'])
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import check_not_times, real_array
from .errors import DataError, InputError


@dataclass
class ManyData:
    """Numpy arrays of B series (see the module's docstring); ``bad[b]``: why series ``b``
    cannot be fitted, or absent."""

    x: np.ndarray                 # (n,) | (n, d) shared, or (B, n) | (B, n, d)
    y: np.ndarray                 # (B, n)
    sigma: np.ndarray | None      # (B, n) or None
    mask: np.ndarray | None       # (B, n) bool, None when every series is full
    shared_x: bool
    groups: np.ndarray | None = None
    bad: dict[int, str] = field(default_factory=dict)

    @property
    def B(self) -> int:
        return self.y.shape[0]

    @property
    def counts(self) -> np.ndarray:
        return (np.full(self.B, self.y.shape[1]) if self.mask is None
                else self.mask.sum(1))

    def series(self, b: int):
        """The real points of series ``b``: ``x``, ``y``, ``sigma`` (numpy)."""
        keep = slice(None) if self.mask is None else self.mask[b]
        x = self.x if self.shared_x else self.x[b]
        s = None if self.sigma is None else self.sigma[b][keep]
        return x[keep], self.y[b][keep], s


def _array(name, value) -> np.ndarray:
    try:
        return real_array(value, name)
    except DataError:
        raise
    except (TypeError, ValueError) as exc:
        lengths = _lengths(value)
        if len(lengths) > 1:                      # series of different lengths
            shown = ", ".join(map(str, sorted(lengths)[:5]))
            raise InputError(f"the rows of {name} differ in length ({shown})",
                             expected="rows of one length, or long columns with group= "
                             "(series of any lengths)") from None
        raise InputError(f"bad {name}", expected="an array of numbers", given=str(exc)) from None


def _lengths(value) -> set:
    try:
        return {len(row) for row in value}
    except TypeError:
        return set()


def from_arrays(x, y, sigma=None, n_inputs: int = 1) -> ManyData:
    """``y`` ``(B, n)`` with ``x`` shared or per problem, ``sigma`` shared or per problem."""
    ya = _array("y", y)
    if ya.ndim == 1:
        ya = ya[None, :]
    if ya.ndim != 2 or ya.shape[1] == 0 or ya.shape[0] == 0:
        raise InputError("bad y for many fits", expected="y shaped (B, n), B problems of n points",
                         given=f"shape {ya.shape}")
    B, n = ya.shape
    xa = _array("x", x)
    per = (xa.ndim == 2 and n_inputs == 1 and xa.shape == (B, n)) or \
          (xa.ndim == 3 and xa.shape[:2] == (B, n))
    shared = (xa.ndim == 1 and xa.shape[0] == n) or (xa.ndim == 2 and xa.shape[0] == n
                                                    and n_inputs > 1 and not per)
    if xa.ndim == 2 and xa.shape == (n, 1):
        xa, shared = xa[:, 0], True
    if not (per or shared):
        raise InputError("x and y do not match", expected="x shaped (n,) or (n, d) shared by "
                         "every problem, or (B, n) or (B, n, d) per problem, for y (B, n)",
                         given=f"x {xa.shape}, y {ya.shape}")
    sa = None
    if sigma is not None:
        sa = _array("sigma", sigma)
        if sa.ndim == 0 or (sa.ndim == 1 and sa.shape[0] == n):   # one for all, or per point
            sa = np.broadcast_to(sa, (B, n)).copy()
        if sa.shape != (B, n):
            raise InputError("sigma does not match y", expected=f"one number, shape ({n},) or "
                             f"{(B, n)}",
                             given=f"shape {sa.shape}")
    data = ManyData(xa, ya, sa, None, shared)
    _check(data)
    return data


def from_long(x, y, *, group, sigma=None, coded=None) -> ManyData:
    """Long-form columns (one row per point) and a ``group`` label per row -> padded series,
    in order of first appearance of each group (``coded``: ``group_codes(group)``, where
    the caller has it)."""
    xa, ya = _array("x", x), _array("y", y)
    g = np.asarray(group)
    if xa.ndim == 1:
        xa = xa[:, None]
    if ya.ndim != 1 or g.ndim != 1 or xa.ndim != 2 or not (len(xa) == len(ya) == len(g)):
        raise InputError("the columns of a long table do not match", expected="x, y and group "
                         "with one value per row", given=f"x {xa.shape}, y {ya.shape}, group {g.shape}")
    sa = None if sigma is None else _array("sigma", sigma).reshape(-1)
    if sa is not None and sa.shape != ya.shape:
        raise InputError("sigma does not match y", expected=f"{len(ya)} values", given=len(sa))
    if len(ya) == 0:
        raise InputError("no data", expected="at least one row")
    labels, codes, unlabelled = group_codes(g) if coded is None else coded
    B = len(labels)
    counts = np.bincount(codes, minlength=B)
    n = int(counts.max())
    rows = np.argsort(codes, kind="stable")             # rows by group, in table order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(rows)) - np.repeat(starts, counts)
    gb = codes[rows]
    mask = np.zeros((B, n), dtype=bool)
    mask[gb, pos] = True
    d = xa.shape[1]
    X = np.repeat(xa[rows][starts][:, None, :], n, axis=1)  # padding: the first point
    X[gb, pos] = xa[rows]
    Y = np.repeat(ya[rows][starts][:, None], n, axis=1)
    Y[gb, pos] = ya[rows]
    S = None
    if sa is not None:
        S = np.ones((B, n))
        S[gb, pos] = sa[rows]
    data = ManyData(X[..., 0] if d == 1 else X, Y, S, None if mask.all() else mask, False,
                    groups=labels)
    _check(data)
    if unlabelled is not None:
        data.bad[unlabelled] = (f"{counts[unlabelled]} row(s) have no group label (empty, "
                                "NaN or None): expected a label on every row")
    return data


def group_codes(g: np.ndarray):
    """The labels in order of first appearance, each row's index among them, and the index
    of the missing label (None, NaN, pandas' NA, the empty text '': one group, which
    fails) or None. Labels of mixed types (1, 'b', 2.5) are taken as they are, unsorted.
    '' is missing as an empty cell of a CSV file is (``cli.many``): one rule, and a
    missing label is then the only empty cell of a result's label column."""
    if g.dtype.kind in "US" and (g == g.dtype.type()).any():
        g = g.astype(object)
    if g.dtype == object:         # element by element: tuples stay labels, not rows
        values = [None if _missing(v) or _empty(v) else v for v in g]
        check_bool_labels(values)
        g = np.empty(len(values), dtype=object)
        g[:] = values
    try:
        labels, first, codes = np.unique(g, return_index=True, return_inverse=True)
    except TypeError:                    # None among texts, or types that do not compare
        seen: dict = {}                  # label -> its index, in order of appearance
        try:
            codes = np.fromiter((seen.setdefault(v, len(seen)) for v in g.tolist()),
                                dtype=np.int64, count=len(g))
        except TypeError:
            raise InputError("bad group labels", expected="a text or a number on each row",
                             given=", ".join(sorted({type(v).__name__ for v in g}))) from None
        labels = np.empty(len(seen), dtype=object)
        labels[:] = list(seen)
    else:
        order = np.argsort(first, kind="stable")        # groups in order of appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        labels, codes = labels[order], rank[codes.reshape(-1)]
    gone = [i for i, v in enumerate(labels.tolist()) if _missing(v)]
    return labels, codes, (gone[0] if gone else None)


#: the row of a group whose every row drop_nan left out (it had vanished from the table)
ALL_DROPPED = ("every row holds NaN, inf or an empty cell in x, y or sigma: drop_nan "
               "(--drop-nan) left no point to fit")


def keep_groups(keep: np.ndarray, labels) -> tuple[np.ndarray, list]:
    """``drop_nan``'s rows to keep, ``keep``, amended so that no group vanishes: a group
    with no row left keeps its first (its series then fails, in its row); and the labels
    of those groups, for ``mark_all_dropped``."""
    if keep.all():
        return keep, []
    names, codes, unlabelled = group_codes(np.asarray(labels))
    kept = np.bincount(codes, weights=keep, minlength=len(names)) > 0
    if kept.all():
        return keep, []
    _, first = np.unique(codes, return_index=True)      # each group's first row
    keep = keep.copy()
    keep[first[~kept]] = True
    if unlabelled is not None:        # rows without a label fail as such, said so
        kept[unlabelled] = True
    return keep, names[~kept].tolist()


def mark_all_dropped(res, labels: list) -> None:
    """The rows of ``res`` (a ``ManyResult``) of the groups ``labels`` that ``keep_groups``
    kept a row of: no point (``n_points`` 0), ``ALL_DROPPED`` their message."""
    if not labels:
        return
    gone = {None if _missing(v) else v for v in labels}
    rows = [i for i, v in enumerate(res.groups.tolist()) if (None if _missing(v) else v)
            in gone]
    res.message = res.message.copy()
    res.n_points = np.array(res.n_points, copy=True)
    res.message[rows] = ALL_DROPPED
    res.n_points[rows] = 0


def check_bool_labels(values, group: str | None = None) -> None:
    """Refuse labels that mix booleans with numbers (``group``: their column, to name it):
    to Python True is 1 and False is 0, so one process had fitted the series 1 and True
    as one (called converged) where Dask kept them apart."""
    types = set(map(type, values))             # at C speed: most columns hold no bool
    if not any(issubclass(t, (bool, np.bool_)) for t in types):
        return
    flags = {v for v in values if isinstance(v, (bool, np.bool_))}
    nums = {v for v in values if isinstance(v, (int, float, np.integer, np.floating))
            and not isinstance(v, (bool, np.bool_)) and not _missing(v)}
    if nums:
        def shown(vs):
            return ", ".join(sorted(map(repr, vs))[:3])
        where = f" in column {group!r}" if group is not None else ""
        col = group if group is not None else "group"
        raise InputError(f"group labels{where} mix booleans ({shown(flags)}) with numbers "
                         f"({shown(nums)})", expected="labels of one type (True is 1 and "
                         "False is 0 to Python: the series True and 1 would be one): convert "
                         f"them first, as frame[{col!r}] = frame[{col!r}].astype(str)")


def _empty(v) -> bool:
    """The empty text (or bytes): no label, as an empty CSV cell."""
    return isinstance(v, (str, bytes)) and len(v) == 0


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or type(v).__name__ in ("NAType",
                                                                                  "NaTType")


def column_names(x, y, group, sigma) -> tuple[list[str], list[str]]:
    """The x columns and every column used (``group`` None: one series)."""
    xs = list(x) if isinstance(x, (list, tuple)) else [x]
    named = [("x", xs), ("y", [y])] + ([("group", [group])] if group is not None else []) \
        + ([("sigma", [sigma])] if sigma is not None else [])
    role: dict = {}
    for what, v in named:
        if not v or not all(isinstance(c, str) and c for c in v):
            raise InputError(f"bad {what} column name", expected="a column name (a text)",
                             given=", ".join(map(repr, v)) or "none")
        for c in v:                # one role each, once (as data.py's columns of one fit)
            if c in role:
                raise InputError(f"column {c!r} is listed twice in {what}" if role[c] == what
                                 else f"column {c!r} is used as both {role[c]} and {what}",
                                 expected="each column in one role, once")
            role[c] = what
    return xs, xs + [y] + ([group] if group is not None else []) + \
        ([sigma] if sigma is not None else [])


def from_frame(frame, *, x, y, group, sigma=None) -> ManyData:
    """A pandas DataFrame in long form; ``x`` a column name or a list of them."""
    xv, yv, g, sv = frame_columns(frame, x=x, y=y, group=group, sigma=sigma)
    return from_long(xv, yv, group=g, sigma=sv)


def frame_columns(frame, *, x, y, group, sigma=None):
    """A long frame's columns ``(x (N, d), y, group, sigma)`` as arrays, unpadded; a
    missing or doubled column is refused by name."""
    cols, names = column_names(x, y, group, sigma)
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise InputError(f"no column named {missing[0]!r}",
                         expected="one of " + ", ".join(map(str, frame.columns[:20])))
    twice = [c for c in names if (frame.columns == c).sum() > 1]
    if twice:
        raise InputError(f"duplicate column name {twice[0]!r}", expected="distinct column names")
    xv = np.stack([_numbers(frame, c) for c in cols], 1)
    sv = None if sigma is None else _numbers(frame, sigma)
    g = _labels(frame[group])
    if g.dtype == object:
        check_bool_labels(g.tolist(), group)       # named by its column here
    return xv, _numbers(frame, y), g, sv


def _labels(column) -> np.ndarray:
    """A group column's labels as they are: a nullable column (Int64) holding NA as
    objects, never as float64, whose rounding above 2^53 had merged two wells' ids."""
    from pandas.api.types import is_extension_array_dtype
    if is_extension_array_dtype(column.dtype) and column.isna().any():
        return column.to_numpy(dtype=object)
    return column.to_numpy()


def _numbers(frame, name) -> np.ndarray:
    """Column ``name`` as float64 (missing values NaN); a cell that is not a number is
    refused by its row label and column."""
    column = frame[name]
    check_not_times(column, f"column {name!r}")
    try:
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        for row, v in zip(frame.index, column.to_numpy(dtype=object)):
            try:
                float(v)
            except (TypeError, ValueError):
                raise InputError("not a number", expected="a number (a missing value as NaN "
                                 "or None)", given=v if isinstance(v, str) else repr(v),
                                 where=f"row {row!r}, column {name!r}") from None
        raise


def _check(data: ManyData) -> None:
    """Mark series with non-finite values or a bad sigma (the others go on), saying which
    value, where: ``y holds NaN at index 3 (of 20 points, from 0): expected finite numbers``."""
    m = np.ones(data.y.shape, dtype=bool) if data.mask is None else data.mask
    x_ok, x = np.isfinite(data.x), data.x
    if data.x.ndim == (2 if data.shared_x else 3):       # (.., n, d): a point's d inputs
        x_ok, x = x_ok.all(-1), np.where(x_ok, 0.0, x).sum(-1)
    x_ok, x = np.broadcast_to(x_ok, data.y.shape), np.broadcast_to(x, data.y.shape)
    with np.errstate(invalid="ignore"):
        checks = [("x", x, x_ok, "finite numbers"),
                  ("y", data.y, np.isfinite(data.y), "finite numbers")]
        if data.sigma is not None:
            s = data.sigma
            checks.append(("sigma", s, np.isfinite(s) & (s > 0), "positive finite numbers"))
    for name, values, good, expected in checks:
        wrong = m & ~good
        for b in np.flatnonzero(wrong.any(1)):
            if int(b) in data.bad:
                continue
            at = int(np.argmax(wrong[b]))
            i, n = int(m[b, :at].sum()), int(m[b].sum())   # among the series' own points
            v = values[b, at]
            data.bad[int(b)] = (f"{name} holds {'NaN' if v != v else f'{v:g}'} at index {i} "
                                f"(of {n} points, from 0): expected {expected}")
    # so that a bad series cannot poison the tensors of the others (on copies: the
    # caller's arrays stay as they were)
    if data.bad:
        data.y = data.y.copy()
        data.sigma = None if data.sigma is None else data.sigma.copy()
        data.x = data.x if data.shared_x else data.x.copy()
    for b in data.bad:
        data.y[b] = np.where(np.isfinite(data.y[b]), data.y[b], 0.0)
        if data.sigma is not None:
            data.sigma[b] = 1.0
        if not data.shared_x:
            data.x[b] = np.where(np.isfinite(data.x[b]), data.x[b], 0.0)
