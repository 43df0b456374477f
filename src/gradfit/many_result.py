"""What ``fit_many`` returns: a table of B fits, one row per problem.

``params``: name -> ``(B,)`` values; ``loss``, ``converged``, ``reason``, ``message``,
``steps``, ``r2``, ``rmse`` ``(B,)``; ``stderr``: name -> ``(B,)`` for squared losses (NaN
where undefined; fixed names absent), else None; ``covariance`` ``(B, F, F)``; ``groups``:
the group labels of a long table (else None), their column in the table ``group_name`` (a
frame's group column keeps its name there, unless a result column has it); ``settings``
what each problem was fitted with (``RowSettings``). ``result[i]`` is problem ``i`` (a
label first, else a position) as a ``FitResult`` (without a per-step history: fit_many
does not record one, so ``history`` and ``trajectory`` hold the final point only).
"""
from __future__ import annotations

import csv
import html
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .result import REASONS, FitResult


STATUS = ("loss", "converged", "reason", "steps", "r2", "rmse", "n_points", "message")


def output_names(params, stderr_of, status=STATUS, taken=()):
    """The columns of a result table: ``(params, stderr, status)`` dicts from the names
    they stand for to their columns. A parameter keeps its own name (``param_<name>``
    where ``taken``, a Dataset's dimensions, has it); a standard error is
    ``<name>_stderr`` and a status column its own name, with ``fit_`` before it where a
    parameter has that name (a parameter ``loss`` had lost its values to the loss's)."""
    used = set(taken)
    out = []
    for names, first in ((params, lambda n: n if n not in used else f"param_{n}"),
                         (stderr_of, lambda n: f"{n}_stderr"), (status, lambda n: n)):
        cols = {}
        for n in names:
            c = first(n)
            while c in used:
                c = f"fit_{c}"
            used.add(c)
            cols[n] = c
        out.append(cols)
    return tuple(out)


def group_column(name: str, others) -> str:
    """The result table's column for the group labels: the group column's own ``name``,
    unless a result column (a parameter, ``loss``, ...) has it, then ``group`` (or
    ``group_<name>``)."""
    for c in (str(name), "group", f"group_{name}"):
        if c not in others:
            return c
    return f"group_{name}_"


@dataclass
class RowSettings:
    """What each problem was fitted with, for its row as a ``FitResult``: ``lo``, ``hi``
    ``(B, F)`` its bounds on the free parameters ``free`` (+-inf: none), ``fixed`` ``(B, P)``
    its values of ``fixed_names``, ``start`` ``(B, P)`` its start (of the start kept), and
    ``held`` ``(B, F)`` the free parameters it ended holding on a bound."""
    names: tuple
    free: tuple
    fixed_names: tuple
    lo: np.ndarray
    hi: np.ndarray
    fixed: np.ndarray
    start: np.ndarray
    held: np.ndarray

    ARRAYS = ("lo", "hi", "fixed", "start", "held")

    def row(self, i: int) -> dict:
        """``at_bound``, ``bounds``, ``fixed`` and ``start`` of problem ``i``, as ``fit``
        reports them."""
        lo, hi = self.lo[i], self.hi[i]
        return {
            "at_bound": tuple(n for j, n in enumerate(self.free) if self.held[i, j]),
            "bounds": {n: (float(lo[j]), float(hi[j])) for j, n in enumerate(self.free)
                       if np.isfinite(lo[j]) or np.isfinite(hi[j])},
            "fixed": {n: float(self.fixed[i, self.names.index(n)]) for n in self.fixed_names},
            "start": {n: float(v) for n, v in zip(self.names, self.start[i])}}


@dataclass
class ManyResult:
    params: dict[str, np.ndarray]
    loss: np.ndarray
    converged: np.ndarray
    reason: np.ndarray
    message: np.ndarray
    steps: np.ndarray
    stderr: dict[str, np.ndarray] | None
    covariance: np.ndarray | None
    r2: np.ndarray
    rmse: np.ndarray
    groups: np.ndarray | None
    loss_name: str
    model: str
    optimizer: str
    wall_time: float
    starts: int = 1
    n_points: np.ndarray = field(default=None, repr=False)
    model_object: Any = field(default=None, repr=False)
    data: Any = field(default=None, repr=False)
    group_name: str = "group"
    settings: RowSettings | None = field(default=None, repr=False)
    #: each problem's learning rate (gradient methods; None for lm and irls)
    lr: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def build(cls, m, d, lossf, method, names, free, out, rows, K, wall, absolute_sigma,
              settings: RowSettings | None = None):
        theta = out.theta[rows]
        params = {n: theta[:, j].copy() for j, n in enumerate(names)}
        reason = out.reason[rows].copy()
        stderr = cov = None
        if lossf.squared:
            cov, se = out.cov[rows].copy(), out.se[rows].copy()
            if settings is not None:      # a parameter held on a bound: no error of its own
                held = settings.held
                cov[held[:, :, None] | held[:, None, :]] = np.nan
                se[held] = np.nan
            # the errors as computed, not sqrt(diag(cov)): a variance may overflow (1e314)
            # where its error (1e157) does not
            stderr = {n: se[:, j].copy() for j, n in enumerate(free)}
        return cls(params=params, loss=out.loss[rows].copy(),
                   converged=np.isin(reason, [r for r, v in REASONS.items() if v[0]]),
                   reason=reason, message=out.message[rows].copy(), steps=out.steps[rows].copy(),
                   stderr=stderr, covariance=cov, r2=out.r2[rows].copy(),
                   rmse=out.rmse[rows].copy(), groups=d.groups, loss_name=lossf.name,
                   model=m.spec, optimizer=method, wall_time=wall, starts=K,
                   n_points=d.counts, model_object=m, data=d, settings=settings)

    def __len__(self) -> int:
        return len(self.loss)

    def summary(self) -> str:
        """``'9998 of 10000 converged (xtol: 9990, gtol: 8, failed: 2)'``."""
        counts = Counter(self.reason.tolist())
        parts = ", ".join(f"{k}: {v}" for k, v in counts.most_common())
        return f"{int(self.converged.sum())} of {len(self)} converged ({parts})"

    def __repr__(self) -> str:
        return f"ManyResult({self.model!r}, {self.summary()})"

    def _repr_html_(self, rows: int = 10) -> str:
        """The summary and the table's first ``rows`` rows, for notebooks (Jupyter calls
        this; a cell had shown only the one-line repr)."""
        cols = self._columns()
        names = list(cols)
        shown = min(rows, len(self))
        cell = (lambda v: f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v))
        head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(cell(cols[n][i]))}</td>" for n in names)
            + "</tr>" for i in range(shown))
        more = (f"<p>... {len(self) - shown} more row(s) (<code>to_pandas()</code> holds them "
                "all)</p>" if len(self) > shown else "")
        return (f"<div><p><b>{html.escape(self.model)}</b>, {html.escape(self.loss_name)}, "
                f"{html.escape(self.optimizer)}: {html.escape(self.summary())}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                f"{more}</div>")

    def _columns(self) -> dict[str, list]:
        pnames, enames, snames = output_names(self.params, self.stderr or {})
        cols: dict[str, Any] = {}
        for n, v in self.params.items():
            cols[pnames[n]] = list(v)
        for n, v in (self.stderr or {}).items():
            cols[enames[n]] = list(v)
        for n in STATUS:
            cols[snames[n]] = list(getattr(self, n))
        if self.groups is not None:
            cols = {group_column(self.group_name, cols): list(self.groups), **cols}
        return cols

    def to_pandas(self):
        """A DataFrame, one row per problem (needs pandas)."""
        import pandas as pd
        cols = self._columns()
        if self.groups is not None:
            name = next(iter(cols))
            labels = [v for v in cols[name] if v is not None]
            if len(labels) < len(cols[name]) and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
                # whole-number labels and a missing one: Int64, not float64 (whose rounding
                # above 2^53 had given two wells one id)
                cols[name] = pd.array(cols[name], dtype="Int64")
        return pd.DataFrame(cols)

    def to_csv(self, path=None) -> str | None:
        """The table as CSV: written to ``path``, or returned as text when ``path`` is None.
        The file is written whole or not at all (``_write_whole``): a full disk leaves a
        file already at ``path`` as it was, and raises the ``OSError``."""
        cols = self._columns()
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for row in zip(*cols.values()):
            w.writerow([_cell(v) for v in row])
        if path is None:
            return buf.getvalue()
        _write_whole(path, buf.getvalue())
        return None

    def __getitem__(self, i) -> FitResult:
        """Problem ``i`` (a group label of a long table, else a whole number: its position)
        as a ``FitResult``."""
        i = self._position(i)
        x, y, s = self.data.series(i)
        params = {n: float(v[i]) for n, v in self.params.items()}
        row = self.settings.row(i) if self.settings is not None else {}
        held = row.get("at_bound", ())
        stderr = cov = None
        if self.stderr is not None:       # over the free parameters not held by a bound
            keep = [j for j, n in enumerate(self.stderr) if n not in held]
            c = self.covariance[i][np.ix_(keep, keep)]
            if keep and not np.isnan(c).any():      # (inf: an entry that overflows)
                names = list(self.stderr)
                stderr = {names[j]: float(self.stderr[names[j]][i]) for j in keep}
                cov = c.copy()
        final = np.array(list(params.values()))
        return FitResult(
            params=params, loss=float(self.loss[i]), loss_name=self.loss_name, model=self.model,
            optimizer=self.optimizer, lr=float(self.lr[i]) if self.lr is not None else math.nan,
            steps=int(self.steps[i]),
            converged=bool(self.converged[i]), reason=str(self.reason[i]),
            message=self.message[i], history=np.array([self.loss[i]]), trajectory=final[None],
            grad_norms=np.array([]), wall_time=self.wall_time / max(len(self), 1),
            n_points=int(self.n_points[i]), stderr=stderr, covariance=cov,
            r2=float(self.r2[i]), rmse=float(self.rmse[i]), start=row.get("start", {}),
            model_object=self.model_object, x=x, y=y, sigma=s,
            at_bound=held, bounds=row.get("bounds", {}), fixed=row.get("fixed", {}),
            jacobian=getattr(self.model_object, "jacobian_kind", "autograd"))

    def _position(self, i) -> int:
        """A group label first (wells numbered 2, 3, 1: ``result[1]`` is well 1, as a
        pandas Series of those labels reads it), else a position."""
        if self.groups is not None and not isinstance(i, (bool, np.bool_)):
            try:
                found = [j for j, g in enumerate(self.groups.tolist())
                         if g == i or (g != g and i != i)]
            except (TypeError, ValueError):      # an array compared with a label
                found = []
            if found:
                return found[0]
        if isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_)):
            if not -len(self) <= i < len(self):
                raise IndexError(f"no problem {i}: expected a whole number from {-len(self)} "
                                 f"to {len(self) - 1}")
            return int(i) % len(self)
        found = [] if self.groups is None else [
            j for j, g in enumerate(self.groups.tolist()) if g == i or (g != g and i != i)]
        if not found:
            raise KeyError(f"no problem {i!r}: expected a whole number from {-len(self)} to "
                           f"{len(self) - 1}" + ("" if self.groups is None else
                                                 " or one of the group labels"))
        return found[0]


def _write_whole(path, text: str) -> None:
    """``text`` into a new file beside ``path``, then moved over it (``os.replace``), so
    that an error while writing (a full disk) leaves an earlier file there whole: it had
    been truncated and left half-written. A ``path`` that is not a regular file (a device,
    a FIFO) or in a folder where no file can be made is written in place. (The command
    line's ``cli.writing.replace_file`` does the same for any writer.)"""
    import errno
    import os
    import secrets
    import stat
    real = os.path.realpath(os.fspath(path))
    try:
        mode = os.stat(real).st_mode
    except OSError:
        mode = None
    folder, name = os.path.split(real)
    tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
    fd = None
    if mode is None or stat.S_ISREG(mode):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except OSError as exc:
            if mode is None or exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
    if fd is None:                          # in place: a device, or no file can be made
        with open(path, "w", newline="") as f:
            f.write(text)
        return
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            if mode is not None:
                os.chmod(tmp, stat.S_IMODE(mode))
            f.write(text)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _cell(v):
    if isinstance(v, (float, np.floating)):
        return "" if not math.isfinite(v) else repr(float(v))
    if isinstance(v, (np.bool_, bool)):
        return str(bool(v))
    if isinstance(v, np.integer):
        return int(v)
    return v
