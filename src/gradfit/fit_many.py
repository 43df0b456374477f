"""``fit_many``: B independent fits of one model as one tensor program.

    >>> import numpy as np, gradfit
    >>> x = np.linspace(0, 3, 30)
    >>> k = np.array([0.5, 1.0, 2.0])
    >>> y = 2.0 * np.exp(-k[:, None] * x)
    >>> res = gradfit.fit_many("a*exp(-k*x)", x, y)
    >>> res.converged.tolist()
    [True, True, True]
    >>> np.round(res.params["k"], 10).tolist()
    [0.5, 1.0, 2.0]

Each problem is fitted as ``gradfit.fit`` would fit it alone (the same loss, the same stopping
rules, the same optimum), by the batched engines: ``batch_lm`` (lm, and auto for mse/rmse),
``batch_irls`` (irls, and auto for mae/huber) and ``batch_gd`` (gd, momentum, adam, adamw,
rmsprop, with per-problem learning rates and the schedules). A problem that stops leaves the
batch; one that cannot be fitted (NaN in its series, fewer points than free parameters, a
``guess`` that raises) is reported with its reason and message and the others go on.
LM stops at a relative step of ``xtol=1e-10`` unless told otherwise (``LM_XTOL``).
Problems run in chunks of ``chunk_size`` (by default sized to about 256 MB of work memory on
a CPU, a quarter of the free memory on a GPU).
"""
from __future__ import annotations

import time
from typing import Callable, Mapping

import numpy as np
import torch

from .errors import InputError
from .config import (check_bound_sides, check_optimizer_options, dtype_name, pairs, plain,
                     unused_p0, unused_p0_note)
from .fit import p0_in_order
from .fit_prepare import DTYPE, check_device
from .losses import check_method, get_loss
from .many_buckets import fit_by_lengths
from .many_data import ManyData, column_names, from_arrays, from_frame, from_long
from .many_problem import ManyProblem, ManyTransform
from .many_result import ManyResult, RowSettings
from .many_parallel import each_chunk
from .many_starts import start_matrix, spread_starts, bounds_matrix, fixed_matrix
from .multistart import NO_CLAIM, default_starts, pick_starts
from .models import check_default_inputs, make_model, table_inputs
from .optimizers import batched_optimizers, get_optimizer
from .settings import SETTINGS

CONVERGED = ("ftol", "gtol", "xtol")
CPU_WORK_BYTES = 256 * 2 ** 20
# LM's default xtol here: on a problem with residuals LM converges linearly (the relative
# step shrinks by a factor rho ~ 0.01-0.1 an iteration), so stopping at a relative step of
# 1e-10 leaves an error near rho * 1e-10, far inside 1e-8 of fit's answer, and saves the
# last third of the iterations that 1e-15 (lm.py's default, for one fit) would take
LM_XTOL = 1e-10


def fit_many(model, x=None, y=None, *, sigma=None, loss: str = "mse", optimizer: str = "auto",
             lr=None, steps: int = 1000, p0: Mapping | None = None,
             guess: Callable | None = None, bounds: Mapping | None = None,
             fixed: Mapping | None = None, starts: int | None = None, seed: int = 0,
             ftol: float | None = None, gtol: float | None = None, schedule: str = "constant",
             delta: float = 1.0, divergence: float = 1e4, dtype="float64", device="cpu",
             group=None, data=None, inputs=None, chunk_size: int | None = None,
             absolute_sigma: bool = False, progress: Callable | None = None,
             **options) -> ManyResult:
    """Fit ``model`` to B series at once; returns a ``ManyResult``.

    Data: ``y`` ``(B, n)`` with ``x`` ``(n,)`` / ``(n, d)`` shared or ``(B, n[, d])`` per
    problem; or long columns ``x``, ``y`` (one row a point) with a ``group`` label per row
    (ragged series); or ``data=`` a pandas DataFrame in long form with ``x``, ``y``,
    ``group`` (and ``sigma``) naming its columns (``x`` by default its column named x; the
    frame may also come second, in ``x``'s place: ``fit_many(model, frame, y=...,
    group=...)``). ``sigma``: ``(n,)`` or ``(B, n)``.
    ``p0``: name -> a number (shared) or B numbers; ``guess(x, y) -> dict`` per problem
    (numpy arrays of its real points), overridden by ``p0``. ``bounds``: name -> (lo, hi),
    each a number or B numbers; ``fixed``: name -> a number or B numbers.
    ``starts=K``: K starts per problem (the first from p0/guess, the others spread around
    it, seeded by ``seed``), all run at once; the best is kept. None: 1, or 5 for a flexible
    model (``relu:K``, ``mlp:...``) under ``auto``, as ``fit``; a flexible model's best of
    K > 1 starts is reported as what it is (reason ``starts``, not converged), as ``fit``.
    (``auto`` runs LM on a flexible model here, where ``fit`` runs L-BFGS: there is no
    batched L-BFGS, so their starts may end in different local minima.) ``lr``: a number or B
    numbers (gradient methods). ``progress(done, total)`` is called after each chunk (with
    ``progress`` and no ``chunk_size``, chunks of about a tenth of the problems).
    The other arguments are ``gradfit.fit``'s. ``data=`` a Dask DataFrame fits its groups on
    a Dask cluster (``gradfit.dask_fit.fit_table``; ``scheduler=``, ``workers=``,
    ``compute=False``) and returns a DataFrame, one row a group.
    """
    if data is None and _is_table(x):          # fit_many(model, frame, y="y", group="g")
        data, x = x, None
    if data is not None and x is None and _is_table(data) and "x" in data.columns:
        x = "x"                                # the column named x, unless told otherwise
    if type(data).__module__.split(".")[0] in ("dask", "dask_expr"):
        # a Dask DataFrame: each group fitted on the cluster (gradfit.dask_fit), the answer a
        # pandas DataFrame, one row a group (compute=False in options: the lazy Dask one)
        from .dask_fit import fit_table
        return fit_table(model, data, x=x, y=y, group=group, sigma=sigma, loss=loss,
                         optimizer=optimizer, lr=lr, steps=steps, p0=p0, guess=guess,
                         bounds=bounds, fixed=fixed, starts=starts, seed=seed, ftol=ftol,
                         gtol=gtol, schedule=schedule, delta=delta, divergence=divergence,
                         dtype=dtype, device=device, chunk_size=chunk_size,
                         absolute_sigma=absolute_sigma, **options)
    t0 = time.perf_counter()
    dtype = dtype_name(dtype)                   # np.float64, torch.float32: by name
    checked = {}
    for name, value in (("loss", loss), ("delta", delta), ("schedule", schedule),
                        ("seed", seed), ("ftol", ftol), ("gtol", gtol), ("steps", steps),
                        ("starts", starts), ("dtype", dtype),
                        ("divergence", divergence), ("absolute_sigma", absolute_sigma),
                        ("device", str(device) if isinstance(device, torch.device) else device)):
        checked[name] = SETTINGS[name].check(plain(value))   # fit's own rows: one voice
    seed, absolute_sigma = checked["seed"], checked["absolute_sigma"]
    bounds, fixed = (None if v is None else v if isinstance(v, Mapping) else
                     dict(pairs(name, v))        # a mapping (its values: a number or B)
                     for name, v in (("bounds", bounds), ("fixed", fixed)))
    for name, pair in (bounds or {}).items():    # as FitConfig's: no text, no bool
        check_bound_sides(name, pair, per_problem=True)
    check_device(device)
    tdtype = DTYPE[dtype]
    # steps=0, as fit: every problem's start, its loss, reason max_steps (the row allows
    # it; fit_many had said "expected 1..", fit took it: one rule)
    for name, f in (("guess", guess), ("progress", progress)):
        if f is not None and not callable(f):
            raise InputError(f"bad {name}", expected="a function, or None",
                             given=type(f).__name__)
    lossf = get_loss(loss, delta)
    # the options by the table's rows and rules, as FitConfig checks fit's (momentum 1.5,
    # weight_decay 7 had run; momentum -0.5 had raised torch's ValueError)
    not_here = [k for k in options if k in SETTINGS and SETTINGS[k].scope == "config"]
    if not_here:
        raise InputError(f"fit_many does not take {not_here[0]}", expected=_NOT_HERE.get(
            not_here[0], "the settings of fit_many's signature"))
    method = _method(optimizer, lossf)
    opts = check_optimizer_options(method, options)
    long = _long_columns(x, y, sigma, group, data) if group is not None else None
    coded = None
    if long is not None:
        # one long series among many short ones: fitted a length class at a time (each
        # with its problems' share of per-problem settings)
        kw = dict(loss=loss, optimizer=optimizer, lr=lr, steps=steps, p0=p0, guess=guess,
                  bounds=bounds, fixed=fixed, starts=starts, seed=seed, ftol=ftol, gtol=gtol,
                  schedule=schedule, delta=delta, divergence=divergence, dtype=dtype,
                  device=device, chunk_size=chunk_size, absolute_sigma=absolute_sigma,
                  **options, inputs=inputs if inputs is not None or data is None else
                  table_inputs(model, column_names(x, y, group, sigma)[0]))
        res, coded = fit_by_lengths(fit_many, model, *long, progress, kw)
        if res is not None:
            return _named(res, group)
    # the long columns once: the table is not read again
    d = _data(x, y, sigma, group, data, inputs) if long is None else \
        from_long(long[0], long[1], group=long[3], sigma=long[2], coded=coded)
    if inputs is None and data is not None:
        inputs = table_inputs(model, column_names(x, y, group, sigma)[0])
    if inputs is None:
        nd = 1 if d.x.ndim == (1 if d.shared_x else 2) else d.x.shape[-1]
        inputs = ("x",) if nd == 1 else tuple(f"x{i + 1}" for i in range(nd))
        check_default_inputs(model, inputs)
    m = make_model(model, inputs)
    from .fit_prepare import _check_uses_an_input
    _check_uses_an_input(model, m, inputs)
    names = m.param_names
    if p0 is not None and not isinstance(p0, Mapping) and not callable(p0):  # [1, 2]
        p0 = p0_in_order(p0, names)
    if not names:
        raise InputError(f"model {m.spec!r} has no parameters to fit",
                         expected="an expression with at least one free name")
    starts = default_starts(starts, optimizer, m)
    spec = get_optimizer(method)
    if method == "lm" and "xtol" not in options:
        opts["xtol"] = LM_XTOL
    B = d.B
    fixed_names, fixed_vals = fixed_matrix(names, fixed, B, d.bad)
    free = tuple(n for n in names if n not in fixed_names)
    if not free:
        raise InputError("every parameter is fixed", expected="at least one free parameter")
    lo, hi = bounds_matrix(free, names, bounds, B, d.bad, fixed_vals)
    _too_wide(free, bounds or {}, lo, hi, d.bad)
    values, given = start_matrix(m, d, p0, guess, seed)   # (B, P), (B, P); d.bad grows
    values[:, [names.index(n) for n in fixed_names]] = fixed_vals[:, [names.index(n) for n in fixed_names]]
    counts = d.counts
    for b in np.flatnonzero(counts < len(free)):
        d.bad.setdefault(int(b), f"too few points ({counts[b]}) for {len(free)} free "
                                 "parameters")
    rates = _rates(lr, spec.default_lr, B)

    # K starts per problem: problem b, start k is row b * K + k
    K = int(starts or 1)
    rows = np.repeat(np.arange(B), K)
    values_k, moved = spread_starts(values, given, lo, hi, names, free, K, seed)
    ok_rows = np.ones(len(rows), dtype=bool)
    if d.bad:
        ok_rows[np.isin(rows, np.fromiter(d.bad, dtype=np.int64))] = False
    out = _Outputs(len(rows), len(names), len(free), tdtype)
    work = np.flatnonzero(ok_rows)
    size = _chunk_size(d.y.shape[1], len(names), tdtype, device) if chunk_size is None else chunk_size
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 1:
        raise InputError("bad chunk_size", expected="a whole number >= 1", given=chunk_size)
    if progress is not None and chunk_size is None:
        size = _progress_size(size, len(work), device)
    cfg = dict(method=method, options=opts, steps=int(steps), ftol=ftol, gtol=gtol,
               schedule=schedule, divergence=divergence, seed=seed)
    def run(chunk):
        _run_chunk(m, d, lossf, rows[chunk], chunk, values_k, lo, hi, fixed_vals,
                   names, free, rates, cfg, tdtype, device, out, absolute_sigma)
    done = 0
    for chunk in each_chunk(run, work, size, device, points=d.y.shape[1]):
        done += len(chunk)
        if progress is not None:
            progress(done // K, len(work) // K)
    best = out.best_of(K, B, m.identifiable)
    if isinstance(p0, Mapping) and fixed:  # as fit says it: a fixed value wins over p0's
        said: dict[int, list[str]] = {}
        for name, (start, held, where) in unused_p0(p0, fixed, B).items():
            for b in where:
                said.setdefault(int(b), []).append(unused_p0_note(name, start[b], held[b]))
        for b, notes in said.items():
            out.message[best[b]] = "; ".join(notes) + f"; {out.message[best[b]]}"
    for b, note in moved.items():          # as fit says it: the start moved inside
        out.message[best[b]] = f"{note}; {out.message[best[b]]}"
    for b, why in d.bad.items():
        out.fail(b * K, why)
    settings = RowSettings(names, free, tuple(fixed_names), lo, hi, fixed_vals,
                           values_k[best], out.held[best])
    res = ManyResult.build(m, d, lossf, method, names, free, out, best, K,
                           time.perf_counter() - t0, absolute_sigma, settings)
    res.lr = rates if spec.default_lr is not None and method not in ("lm", "irls") else None
    return _named(res, group)


#: fit's settings that fit_many has no use for, and why
_NOT_HERE = {"time_limit": "no time_limit (steps bounds each fit; fit_many runs the problems "
                           "together)",
             "options": "the optimizer's options as keywords (momentum=0.5), not options={...}",
             "model": "the model as the first argument"}


def _too_wide(free, bounds, lo, hi, bad: dict) -> None:
    """``bounds.check_width`` as ``bounds_matrix`` checks low < high: two finite bounds
    further apart than the largest float, given once, are refused; among B pairs, such a
    pair fails its problem alone (its parameter had been NaN)."""
    from .bounds import check_width
    with np.errstate(over="ignore", invalid="ignore"):
        wide = np.isfinite(lo) & np.isfinite(hi) & np.isinf(hi - lo)
    for j in np.flatnonzero(wide.any(0)):
        name = free[j]
        rows = np.flatnonzero(wide[:, j])
        if all(np.ndim(v) == 0 for v in bounds[name]):
            check_width(name, float(lo[rows[0], j]), float(hi[rows[0], j]))
        for b in rows:
            try:
                check_width(name, float(lo[b, j]), float(hi[b, j]))
            except InputError as exc:
                bad.setdefault(int(b), f"{exc} (this problem)")
        lo[rows, j], hi[rows, j] = -np.inf, np.inf        # never run: only finite there


def _named(res: ManyResult, group) -> ManyResult:
    """A frame's group column keeps its name in the result's table."""
    if isinstance(group, str):
        res.group_name = group
    return res


def _long_columns(x, y, sigma, group, data):
    """``(x (N, d), y, sigma, group)`` of a long table (a frame's columns, or arrays), or
    None where ``_data`` is to say what is wrong with them."""
    from .many_data import _array, frame_columns
    try:
        if data is not None:
            xv, yv, g, sv = frame_columns(data, x=x, y=y, group=group, sigma=sigma)
            return xv, yv, sv, g
        if x is None or y is None:
            return None
        xa, ya = _array("x", x), _array("y", y)
        xa = xa[:, None] if xa.ndim == 1 else xa
        sa = None if sigma is None else _array("sigma", sigma).reshape(-1)
        if ya.ndim != 1 or xa.ndim != 2 or len(xa) != len(ya) or \
                (sa is not None and len(sa) != len(ya)):
            return None
        return xa, ya, sa, group
    except InputError:
        return None


def _is_table(v) -> bool:
    """A pandas or Dask DataFrame (not imported here: the core needs neither)."""
    return type(v).__module__.split(".")[0] in ("pandas", "dask", "dask_expr") and \
        hasattr(v, "columns")


def _data(x, y, sigma, group, data, inputs) -> ManyData:
    if data is not None:
        if x is None or y is None or group is None:
            raise InputError("a table needs its column names", expected="y= and group= "
                             "naming columns of data, and x= unless it has a column named x")
        return from_frame(data, x=x, y=y, group=group, sigma=sigma)
    if x is None or y is None:
        raise InputError("no data", expected="x and y, or data= a table")
    if group is not None:
        return from_long(x, y, group=group, sigma=sigma)
    return from_arrays(x, y, sigma, n_inputs=len(inputs) if inputs else 1)


def _method(optimizer: str, loss) -> str:
    if optimizer == "auto":
        return "lm" if loss.squared else "irls"
    get_optimizer(optimizer)
    batched = batched_optimizers()
    if optimizer not in batched:
        raise InputError(f"optimizer {optimizer!r} has no batched engine",
                         expected="one of auto, " + ", ".join(batched))
    check_method(optimizer, loss)
    return optimizer


def _rates(lr, default: float, B: int) -> np.ndarray:
    if lr is None:
        return np.full(B, default)
    expected = f"a positive finite number or {B} of them (shape ({B},), one per problem)"
    try:
        a = np.array(lr, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("bad learning rate", expected=expected, given=lr) from None
    if a.ndim > 1:
        raise InputError("bad learning rate", expected=expected,
                         given=f"an array of shape {a.shape}")
    a = a.reshape(-1)
    if a.size == 1:
        a = np.full(B, a[0])
    if a.shape != (B,):
        raise InputError("bad learning rate", expected=expected, given=f"{a.size} values")
    bad = np.flatnonzero(~(np.isfinite(a) & (a > 0)))
    if len(bad):
        raise InputError("bad learning rate", expected=expected,
                         given=f"{a[bad[0]]:g}" + (f" (problem {bad[0]})" if np.ndim(lr) else ""))
    return a


#: with ``progress``: chunks of about 1/PROGRESS_TICKS of the work, of PROGRESS_MIN rows
#: at least (below it, one call is short anyway: more chunks would cost more than tell)
PROGRESS_TICKS, PROGRESS_MIN = 10, 4096


def _progress_size(size: int, rows: int, device) -> int:
    """A chunk size that calls ``progress`` about ``PROGRESS_TICKS`` times: 50,000 problems
    had run as one chunk a core, every chunk ending at once, and the command line's bar
    never moved before the end. ``each_chunk`` splits ``size`` among the CPU's threads."""
    threads = torch.get_num_threads() if torch.device(device).type == "cpu" else 1
    tick = -(-rows // PROGRESS_TICKS)
    return min(size, max(tick * threads, PROGRESS_MIN))


def _chunk_size(n: int, P: int, dtype, device) -> int:
    item = torch.finfo(dtype).bits // 8
    per_problem = n * (P + 4) * item * 8          # residuals, Jacobians, temporaries
    budget = CPU_WORK_BYTES
    if str(device).startswith("cuda"):
        budget = max(budget, torch.cuda.mem_get_info(torch.device(device))[0] // 4)
    return max(1, budget // per_problem)


class _Outputs:
    """Results of every (problem, start) row, filled chunk by chunk."""

    def __init__(self, rows: int, P: int, F: int, dtype):
        self.theta = np.full((rows, P), np.nan)
        self.loss = np.full(rows, np.nan)
        self.steps = np.zeros(rows, dtype=np.int64)
        self.reason = np.full(rows, "failed", dtype="<U10")
        self.message = np.full(rows, "", dtype=object)
        self.cov = np.full((rows, F, F), np.nan)
        self.se = np.full((rows, F), np.nan)       # finite where pcov's diagonal overflows
        self.held = np.zeros((rows, F), dtype=bool)     # free parameters held on a bound
        self.has_cov = np.zeros(rows, dtype=bool)
        self.r2 = np.full(rows, np.nan)
        self.rmse = np.full(rows, np.nan)

    def fail(self, row: int, why: str) -> None:
        self.reason[row], self.message[row] = "failed", why

    def best_of(self, K: int, B: int, identifiable: bool = True) -> np.ndarray:
        """The row kept for each problem (``multistart.pick_starts``: the lowest loss
        among starts that neither failed nor diverged, a converged one within ``CLOSE`` of
        it preferred); with K > 1 the message says so, and a flexible model's best is no
        claim of an optimum (reason ``starts``, as ``multistart.best_of``)."""
        if K == 1:
            return np.arange(B)
        conv = np.isin(self.reason, CONVERGED).reshape(B, K)
        pick, none = pick_starts(self.loss.reshape(B, K), conv, self.reason.reshape(B, K),
                                 identifiable)
        rows = np.arange(B) * K + pick
        for b, r in enumerate(rows):
            if none[b]:
                self.message[r] = f"all {K} starts failed; the first: {self.message[r]}"
            elif identifiable:
                self.message[r] = f"best of {K} starts (start {pick[b]}): {self.message[r]}"
            else:
                self.message[r] = (f"best of {K} starts (start {pick[b]}); {NO_CLAIM}; "
                                   f"start {pick[b]} stopped: {self.message[r]}")
                self.reason[r] = "starts"
        return rows


def _no_steps(tr: ManyTransform, u0, k: int, device):
    """A chunk's outcome under ``steps=0``, as ``fit``'s: every start as it is, with reason
    ``max_steps`` (the engines had taken a step anyway, or refused 0)."""
    with torch.no_grad():
        theta = tr.external(u0, torch.arange(k, device=device))
    return (theta, torch.zeros(k, dtype=torch.int64), np.full(k, "max_steps", dtype="<U10"),
            np.full(k, "reached the step limit (0 steps)", dtype=object), None,
            torch.zeros((k, len(tr.free)), dtype=torch.bool))


def _goodness(prob: ManyProblem, theta, idx):
    """R^2 and RMSE per problem on the unweighted data (``result.goodness``)."""
    w = torch.ones_like(prob.y) if prob.mask is None else prob.mask.to(prob.y.dtype)
    n = prob.count
    res = ((prob.predict(theta, idx) - prob.y).square() * w).sum(-1)
    mean = (prob.y * w).sum(-1, keepdim=True) / n.unsqueeze(-1)
    tot = ((prob.y - mean).square() * w).sum(-1)
    r2 = torch.where(tot > 0, 1.0 - res / tot.clamp_min(1e-300), torch.nan)
    return r2, (res / n).sqrt()


def _run_chunk(m, d: ManyData, lossf, problems, rows, values_k, lo, hi, fixed_vals,
               names, free, rates, cfg, dtype, device, out: _Outputs, absolute_sigma):
    """Fit the rows ``rows`` (problem ``problems[i]`` each) and store their results."""
    def t(a):
        a = np.ascontiguousarray(a)
        if not a.flags.writeable:      # never a tensor over the user's read-only memory
            a = a.copy()
        return torch.as_tensor(a, dtype=dtype, device=device)

    if len(problems) and problems[-1] - problems[0] == len(problems) - 1 and \
            (np.diff(problems) == 1).all():
        problems = slice(int(problems[0]), int(problems[-1]) + 1)   # a view, not a copy
    x = t(d.x) if d.shared_x else t(d.x[problems])
    mask = None if d.mask is None else torch.as_tensor(d.mask[problems], device=device)
    prob = ManyProblem(m, x, t(d.y[problems]), None if d.sigma is None else t(d.sigma[problems]),
                       mask, lossf, d.shared_x)
    tr = ManyTransform(names, free, t(lo[problems]), t(hi[problems]), t(fixed_vals[problems]))
    start = t(values_k[rows])
    u0 = tr.internal(start)
    if cfg["steps"] == 0:          # as fit(steps=0): the starts, no step taken
        theta, steps, reason, message, cov, held = _no_steps(tr, u0, len(rows), device)
    else:
        from .many_engines import run_engine
        theta, steps, reason, message, cov, held = run_engine(prob, tr, u0, t(rates[problems]),
                                                              cfg, absolute_sigma)
    out.held[rows] = held.cpu().numpy()
    with torch.no_grad():
        idx = torch.arange(len(rows), device=device)
        loss = prob.objective(theta, idx)
        r2, rmse = _goodness(prob, theta, idx)
    out.r2[rows], out.rmse[rows] = r2.cpu().double().numpy(), rmse.cpu().double().numpy()
    out.theta[rows] = theta.cpu().double().numpy()
    out.loss[rows] = loss.cpu().double().numpy()
    out.steps[rows] = steps.cpu().numpy()
    out.reason[rows] = reason
    out.message[rows] = message
    if cov is not None:                # (pcov, standard errors)
        c = cov[0].cpu().double().numpy()
        out.cov[rows] = c
        out.se[rows] = cov[1].cpu().double().numpy()
        out.has_cov[rows] = ~np.isnan(c).all((1, 2))
