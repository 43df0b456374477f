"""Fit a model along dimensions of an xarray DataArray: every other position is a problem.

``fit_along(model, da, dim)`` fits ``model`` to ``da`` along ``dim`` (``x`` = the
coordinate of ``dim``) at every position of the other dimensions, all at once by
``gradfit.fit_many``, and returns a Dataset over those dimensions with one variable per
parameter, ``{name}_stderr`` (squared losses), ``loss``, ``converged``, ``reason``,
``steps`` and ``message`` (why a position failed: ``the data hold NaN at time index 3 (of
25 points, from 0): ...``, an index along the data as given, before any point was
skipped; positions that say the same share one string). ``skipna=True`` (``curvefit``'s
name) leaves a position's NaN (and inf) points out of its fit, and the points where the
coordinate is NaN out of every fit;
gradfit's default, False, leaves no data out unasked: such a position fails, saying where
its NaN is, and a NaN in the coordinate is refused by name (curvefit's default is True).
Several dimensions at once (``dim=("y", "x")``, curvefit's ``coords``) make a model of
several inputs, named as those dimensions, over their grid of coordinates: a 2-D Gaussian
fitted to every frame of an image stack. It answers the question of
``xarray.DataArray.curvefit`` (which loops scipy's
``curve_fit`` over positions) with one batched fit per chunk. A Dask-backed array (the
data, or a sigma, p0, fixed or bounds beside data in memory) is fitted chunk by chunk in
parallel (each chunk whole along ``dim``): lazily with ``compute=False``,
else on ``scheduler``/``workers`` (``gradfit.cluster.client_for``) or the client already
running, or Dask's own scheduler when neither.

    >>> import numpy as np, xarray as xr
    >>> t = np.linspace(0, 4, 25)
    >>> k = xr.DataArray([[0.5, 1.0], [1.5, 2.0]], dims=("row", "col"))
    >>> da = 3.0 * np.exp(-k * xr.DataArray(t, dims="time", coords={"time": t}))
    >>> ds = fit_along("A*exp(-k*time)", da, "time")
    >>> np.round(ds["k"].values, 10).tolist(), bool(ds["converged"].all())
    ([[0.5, 1.0], [1.5, 2.0]], True)
"""
from __future__ import annotations

import re
import sys

import numpy as np

from .errors import InputError
from .losses import get_loss
from .many_result import output_names
from .models import ExpressionModel, _mentions, make_model
from .result import REASONS
from .xarray_args import (PER_POSITION, as_numbers, broadcast, by_name, check_flag,
                          check_scheduler, coordinate, dims_of, field_name, is_lazy,
                          per_position, sigma_array, with_positions)

CODES = list(REASONS)            # reason <-> a number, to travel in a float array


def _fields(model, dims: tuple, loss: str, delta: float, fixed) -> tuple[list[str], list[str]]:
    names = make_model(model, dims).param_names
    errs = [n for n in names if n not in (fixed or {})] if get_loss(loss, delta).squared else []
    return names, errs


def _fit_block(y, *, model, x, sigma, names, errs, kwargs, skipna=False):
    """``fit_many`` over a block ``(..., n)`` -> ``(..., K)`` floats (the parameters, their
    standard errors, loss, converged, reason code, steps) and ``(...)`` messages
    (``skipna``: the positions holding NaN or inf fitted to their finite points alone, as
    the groups of a long table; the others as one batch, as without it)."""
    shape = y.shape[:-1]
    flat = np.asarray(y, dtype=np.float64).reshape(-1, y.shape[-1])
    K = len(names) + len(errs) + 4
    if flat.shape[0] == 0:
        return np.zeros(shape + (K,)), np.empty(shape, dtype=object)
    s = None if sigma is None else np.asarray(sigma, dtype=np.float64).reshape(flat.shape)
    finite = np.isfinite(flat) & (True if s is None else np.isfinite(s))
    gaps = ~finite.all(1) if skipna else np.zeros(len(flat), dtype=bool)
    values = np.full((len(flat), K), np.nan)
    messages = np.empty(len(flat), dtype=object)
    whole = np.flatnonzero(~gaps)
    if len(whole):
        values[whole], messages[whole] = _fit_rows(
            model, x, flat[whole], None if s is None else s[whole], names, errs,
            _rows_of(kwargs, whole, len(flat)))
    holes = np.flatnonzero(gaps)
    if len(holes):
        values[holes], messages[holes] = _fit_with_gaps(
            model, x, flat[holes], None if s is None else s[holes], finite[holes], names,
            errs, _rows_of(kwargs, holes, len(flat)))
    return values.reshape(shape + (K,)), messages.reshape(shape)


def _pack(r, names, errs):
    cols = [r.params[n] for n in names] + [r.stderr[n] for n in errs]
    cols += [r.loss, r.converged.astype(float), np.array([CODES.index(c) for c in r.reason],
                                                        dtype=float), r.steps.astype(float)]
    messages = np.empty(len(r.message), dtype=object)
    messages[:] = list(r.message)
    return np.stack(cols, axis=-1), messages


def _fit_rows(model, x, flat, s, names, errs, kwargs):
    from .fit_many import fit_many
    return _pack(fit_many(model, x, flat, sigma=s, **kwargs), names, errs)


def _fit_with_gaps(model, x, flat, s, finite, names, errs, kwargs):
    """Rows ``flat`` ``(B, n)`` fitted to their ``finite`` points only: a long table of
    their points, one group a row (a row of no point fails, saying so). A message about a
    point names its index among the row's ``n`` points (``fit_many`` counts the finite
    points alone: sigma 0 at index 10 was 'at index 8' after two NaN)."""
    from .fit_many import fit_many
    K = len(names) + len(errs) + 4
    values = np.full((len(flat), K), np.nan)
    values[:, len(names) + len(errs) + 1:] = [0.0, CODES.index("failed"), 0.0]
    messages = np.full(len(flat), "no finite points left after skipping NaN (skipna=True): "
                       "expected at least one", dtype=object)
    some = np.flatnonzero(finite.any(1))
    if len(some):
        rows, cols = np.nonzero(finite[some])
        xs = np.broadcast_to(x, flat.shape + x.shape[1:])
        values[some], said = _pack(fit_many(
            model, xs[some][rows, cols], flat[some][rows, cols],
            sigma=None if s is None else s[some][rows, cols], group=rows,
            **_rows_of(kwargs, some, len(flat))), names, errs)
        for j in np.flatnonzero([" at index " in m for m in said]):
            said[j] = _reindexed(said[j], np.flatnonzero(finite[some[j]]), flat.shape[1])
        messages[some] = said
    return values, messages


def _rows_of(kwargs, rows, B):
    """``kwargs`` for the problems ``rows`` of ``B``: per-problem arrays (p0, fixed, a side
    of bounds: ``B`` values) cut to those rows."""
    def cut(v):
        return np.asarray(v)[rows] if np.ndim(v) == 1 and len(v) == B else v
    out = dict(kwargs)
    for key in PER_POSITION:
        given = kwargs.get(key)
        if isinstance(given, dict):
            out[key] = {n: tuple(cut(v) for v in pair) if key == "bounds" and
                        isinstance(pair, (tuple, list)) else cut(pair)
                        for n, pair in given.items()}
    return out


def fit_along(model, da, dim, *, sigma=None, skipna: bool = False, compute: bool = True,
              scheduler=None, workers: int | None = None, **kwargs):
    """Fit ``model`` along ``dim`` at every other position (see the module's docstring).

    ``dim``: a dimension's name, or several (a list or tuple: the model's inputs, over the
    grid of their coordinates). ``model``'s inputs are named as the dimensions
    (``"A*exp(-k*time)"`` along ``time``); ``sigma``: a DataArray like ``da``, an array of
    ``da``'s shape or of the fitted dimensions' shape, a number, or None; ``kwargs`` are
    ``gradfit.fit_many``'s (loss, optimizer,
    p0, bounds, fixed, starts, steps, ...). A value of ``p0`` or ``fixed``, or a side of
    ``bounds``, may differ by position: a DataArray over (some of) the other dimensions,
    broadcast over the rest, or an array of their shape (as ``curvefit``'s ``p0``); each
    chunk gets its own positions' values. A value of ``bounds`` is a pair ``(low, high)``
    (a tuple, a list, or an array of the two: ``np.array([0, 5])``); one DataArray or an
    array of the other dimensions' shape alone is refused. ``skipna``: NaN (and inf)
    points of a position left out of its fit, and coordinate values that are NaN out of
    all (as ``curvefit``'s ``skipna=True``); False (gradfit's default: no data left out
    unasked): a position holding NaN fails, saying where, and a NaN in the coordinate is
    refused. ``skipna`` and ``compute`` are True or False. When the data or any of sigma,
    p0, fixed and bounds is Dask-backed, the fit runs on Dask (computed unless
    ``compute=False``)."""
    import xarray as xr
    skipna, compute = check_flag(skipna, "skipna"), check_flag(compute, "compute")
    check_scheduler(scheduler, workers)
    if isinstance(da, xr.Dataset):
        return _fit_dataset(model, da, dim, sigma, skipna, compute, scheduler, workers, kwargs)
    if not isinstance(da, xr.DataArray):
        raise InputError("bad data", expected="an xarray DataArray or Dataset",
                         given=type(da).__name__)
    dims = dims_of(dim, da)
    for bad in ("data", "group", "inputs", "x", "y"):
        if bad in kwargs:
            raise InputError(f"fit_along does not take {bad}=", expected="the data as a DataArray")
    if "drop_nan" in kwargs:
        raise InputError("fit_along does not take drop_nan=", expected="skipna=True "
                         "(xarray's name) to leave NaN points out of each position's fit")
    da = as_numbers(da, "data")
    sizes, keeps, coords = {d: da.sizes[d] for d in dims}, {}, []
    for d in dims:
        x = coordinate(da, d)
        if not np.isfinite(x).all():      # one refusal, not the same failure at every position
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            if not skipna:
                raise InputError(f"the coordinate of {d!r} holds {x[bad]} at index {bad}",
                                 expected="finite numbers (skipna=True leaves such points "
                                 "out of every fit)")
            keep = np.flatnonzero(np.isfinite(x))
            if sigma is not None:
                sigma = sigma_array(sigma, da, dims)
                sigma = sigma.isel({d: keep}) if d in sigma.dims else sigma
            if not len(keep):
                raise InputError(f"no points along {d!r}", expected="a finite coordinate "
                                 "value at one point at least", given=f"NaN or inf at all {len(x)}")
            da, x, keeps[d] = da.isel({d: keep}), x[keep], keep
        coords.append(x)
    x = coords[0] if len(dims) == 1 else np.stack(
        [g.reshape(-1) for g in np.meshgrid(*coords, indexing="ij")], axis=-1)
    kwargs = by_name(kwargs, make_model(model, dims).param_names)
    names, errs = _fields(model, dims, kwargs.get("loss", "mse"), kwargs.get("delta", 1.0),
                          kwargs.get("fixed"))
    if isinstance(make_model(model, dims), ExpressionModel) and \
            not set(map(str, dims)) & set(_mentions(model)):
        example = "A*exp(-k*{0})".format(dims[0]) if len(dims) == 1 else \
            "A*exp(-(({0}-{0}0)^2+({1}-{1}0)^2)/(2*s^2))".format(*dims[:2])
        which = "the dimension " + repr(dims[0]) if len(dims) == 1 else \
            "any of the dimensions " + ", ".join(map(repr, dims))
        raise InputError(f"the model does not use {which} as its input",
                         expected=f"an expression of {' and '.join(map(str, dims))} (the "
                         f"coordinates along which it is fitted), e.g. '{example}'",
                         given=model)
    kwargs = {**kwargs, "inputs": dims}
    if sigma is not None:
        sigma = sigma_array(sigma, da, dims)
        extra = [d for d in sigma.dims if d not in da.dims]
        if extra:
            raise InputError("bad sigma", expected="a DataArray over (some of) the data's "
                             f"dimensions ({', '.join(map(str, da.dims))})",
                             given=f"dimension {extra[0]!r}")
        sigma = broadcast(sigma, da, "sigma").transpose(*da.dims)
    kwargs, where = per_position(kwargs, da, dims)
    given = ([] if sigma is None else [sigma]) + [a for _, a in where]
    # Dask runs it when any of them is Dask-backed (apply_ufunc then makes a graph): its
    # result was returned lazy, and a sigma chunked along dim refused, for data in memory
    chunked = is_lazy(da) or any(is_lazy(a) for a in given)
    if chunked:
        da = da.chunk(_chunking(da, dims, given))
        given = [a.chunk({d: da.chunksizes[d] for d in a.dims}) for a in given]
    field = field_name(da)
    K = len(names) + len(errs) + 4
    k = len(dims)
    shape = tuple(da.sizes[d] for d in dims)
    # in memory: the block's own messages, not apply_ufunc's output, which xarray puts
    # through pandas (a str a position again, where the same few texts were shared)
    held = []

    def block(y, *rest):
        s = rest[0] if sigma is not None else None
        kw = with_positions(kwargs, [key for key, _ in where], rest[1:] if s is not None else rest)
        # the grid's points in a row (their count, not -1: a block of no position, another
        # dimension of length 0, has none to infer it from)
        n = int(np.prod(y.shape[y.ndim - k:]))
        flat = y.reshape(y.shape[:y.ndim - k] + (n,))
        s = None if s is None else s.reshape(s.shape[:s.ndim - k] + (n,))
        values, messages = _fit_block(flat, model=model, x=x, sigma=s, names=names,
                                      errs=errs, kwargs=kw, skipna=skipna)
        messages = _located_all(messages, dims, shape, keeps, sizes)
        if chunked:
            return values, messages.view(SharedText)
        held.append(messages)
        return values, np.zeros(messages.shape, dtype=np.int8)

    out, messages = xr.apply_ufunc(block, da, *given,
                                   input_core_dims=[list(dims)] * (1 + (sigma is not None)) +
                                   [[] for _ in where],
                                   output_core_dims=[[field], []], dask="parallelized",
                                   output_dtypes=[np.float64, object],
                                   dask_gufunc_kwargs={"output_sizes": {field: K}})
    messages = messages.variable if chunked else \
        xr.Variable(messages.dims, held[0], fastpath=True)
    ds = _dataset(out, messages, names, errs, field)
    return _computed(ds, scheduler, workers) if chunked and compute else ds


def _fit_dataset(model, ds, dim, sigma, skipna, compute, scheduler, workers, kwargs):
    """``fit_along`` of every data variable of the Dataset ``ds``, as ``Dataset.curvefit``
    fits them: each result variable named after its data variable (``{var}_k``,
    ``{var}_loss``, ...), in one Dataset with ``ds``'s attributes. ``sigma``: a Dataset
    (its variable of each name for that data variable) or one sigma for all."""
    import xarray as xr
    dims = dim if isinstance(dim, (list, tuple)) else (dim,)
    if not ds.data_vars:
        raise InputError("a Dataset without data variables", expected="a Dataset with a "
                         "data variable to fit, or a DataArray")
    parts = []
    for name, da in ds.data_vars.items():
        lacking = [d for d in dims if d not in da.dims]
        if lacking:
            raise InputError(f"the data variable {name!r} has no dimension {lacking[0]!r}",
                             expected="data variables that all have the dimensions fitted "
                             f"along: select the others out first, e.g. ds[[{name!r}, ...]]"
                             .replace(f"[[{name!r}, ...]]", "[[...]]"),
                             given=f"its dimensions {tuple(map(str, da.dims))}")
        s = sigma
        if isinstance(sigma, xr.Dataset):
            if name not in sigma.data_vars:
                raise InputError(f"bad sigma: no variable {name!r}", expected="a Dataset "
                                 "of sigmas with each of the data's variables, or one sigma "
                                 "for all of them", given=", ".join(map(str, sigma.data_vars)))
            s = sigma[name]
        out = fit_along(model, da, dim, sigma=s, skipna=skipna, compute=False, **kwargs)
        renamed = {v: f"{name}_{v}" for v in out.data_vars}
        taken = {n for p in parts for n in (*p.data_vars, *p.coords)} | set(map(str, ds.coords))
        clash = [n for n in renamed.values() if n in taken]
        if clash:
            raise InputError(f"two results would be named {clash[0]!r}", expected="data "
                             "variables whose names, joined to the results' names, stay "
                             f"apart (rename {name!r})")
        parts.append(out.rename(renamed))
    ds_out = xr.merge(parts, compat="no_conflicts", join="outer", combine_attrs="drop")
    ds_out.attrs = dict(ds.attrs)
    chunked = any(is_lazy(v) for v in ds_out.variables.values())
    return _computed(ds_out, scheduler, workers) if chunked and compute else ds_out


class SharedText(np.ndarray):
    """An object array of texts (a lazy result's messages and reasons), kept as it is
    when a Dataset holding it is computed: xarray puts a plain object array through pandas,
    which gives every position its own copy of the same text (a str of 110 bytes a
    position). NumPy's functions (Dask's joining of blocks) keep the type;
    ``.values`` is a plain array of the same strings."""

    def __array_function__(self, func, types, args, kwargs):
        types = tuple(np.ndarray if t is SharedText else t for t in types)
        out = super().__array_function__(func, types, args, kwargs)
        return out.view(SharedText) if isinstance(out, np.ndarray) and out.dtype == object \
            else out


def _computed(ds, scheduler, workers):
    """``ds`` computed on ``scheduler``/``workers`` (``cluster.client_for``), or the client
    already running or Dask's own scheduler when neither, its text variables kept as the
    blocks made them: ``Dataset.compute`` puts each through pandas, which gives every
    position its own copy of the same message (a str of 110 bytes a position)."""
    import dask
    import xarray as xr
    lazy = [n for n, v in ds.variables.items() if is_lazy(v)]
    arrays = [ds.variables[n].data for n in lazy]
    if scheduler is None and workers is None:
        got = dask.compute(*arrays)
    else:
        from .cluster import client_for
        with client_for(scheduler, workers) as client:
            got = client.gather(client.compute(arrays))
    out = ds.copy(deep=False)
    for n, a in zip(lazy, got):
        v = ds.variables[n]
        v = xr.Variable(v.dims, np.asarray(a), v.attrs, v.encoding, fastpath=True)
        if n in ds.coords:
            out.coords[n] = v
        else:
            out[n] = v
    return out


def _chunking(da, dims, given) -> dict:
    """The data's chunks: whole along ``dims``; along the others its own, or (data in
    memory) those of the first Dask-backed argument over that dimension."""
    out = {d: -1 for d in dims}
    for d in da.dims:
        if d in dims or is_lazy(da):
            continue
        lazy = [a for a in given if is_lazy(a) and d in a.dims]
        out[d] = tuple(lazy[0].chunksizes[d]) if lazy else -1
    return out


_AT_INDEX = re.compile(r"^(\w+) holds (.+?) at index (\d+) \(of \d+ points, from 0\)")


def _reindexed(message, cols, n):
    """A ``fit_many`` message about the point at an index among ``cols`` (the points a
    position kept) that names its index among all ``n`` points."""
    m = _AT_INDEX.match(message)
    if not m or int(m.group(3)) >= len(cols):
        return message
    return (f"{m.group(1)} holds {m.group(2)} at index {int(cols[int(m.group(3))])} "
            f"(of {n} points, from 0){message[m.end():]}")


def _located(message, dims, shape, keeps, sizes):
    """A message of ``fit_many`` about a point of a position (its index among the points
    of the grid ``shape`` left after NaN coordinates were cut: ``keeps``) that says where
    along the data's dimensions, as given, and names the data as the data (``y holds NaN
    at index 3`` read as y's index 3 in a (y, x, time) stack): ``y holds NaN at index 49
    (of 180 points, from 0)`` -> ``the data hold NaN at y index 4, x index 1 (of 12 x
    15)``; along one dimension ``the data hold NaN at time index 3 (of 25 points, from
    0)``."""
    if not isinstance(message, str):
        return message
    m = _AT_INDEX.match(message)
    if not m:
        return message
    at = [int(keeps[d][i]) if d in keeps else int(i)
          for d, i in zip(dims, np.unravel_index(int(m.group(3)), shape))]
    what = "the data hold" if m.group(1) == "y" else f"{m.group(1)} holds"
    if len(dims) == 1:
        where = f"{dims[0]} index {at[0]} (of {sizes[dims[0]]} points, from 0)"
    else:
        where = ", ".join(f"{d} index {i}" for d, i in zip(dims, at)) + \
            f" (of {' x '.join(str(sizes[d]) for d in dims)})"
    return f"{what} {m.group(2)} at {where}{message[m.end():]}"


def _located_all(messages, dims, shape, keeps, sizes):
    """``_located`` over a block's messages, each distinct text once and kept once: the
    positions that say the same share one string (a str a position, about 110 bytes
    each, had made the result of a large cube as big as its data)."""
    seen: dict = {}
    out = np.empty(messages.shape, dtype=object)
    flat = out.reshape(-1)
    for i, m in enumerate(messages.reshape(-1).tolist()):
        got = seen.get(m)
        if got is None:         # interned: the blocks that one process makes share it too
            got = _located(m, dims, shape, keeps, sizes)
            got = seen[m] = sys.intern(got) if type(got) is str else got
        flat[i] = got
    return out


def _reasons(codes):
    """Reason codes -> their names, as an object array of the names' own strings."""
    return np.asarray(np.array(CODES, dtype=object)[np.asarray(codes).astype(int)],
                      dtype=object)


def _dataset(out, messages, names, errs, field="_field"):
    """The packed ``(..., K)`` array and the messages (a Variable) -> a Dataset of named variables
    (``many_result.output_names``: a parameter named like a dimension, or a status
    variable like a parameter, is renamed rather than lost). Built in one call from
    variables and the coordinates once: assigning DataArrays one by one dropped a stacked
    (MultiIndex) dimension's levels from each again, with a FutureWarning."""
    import xarray as xr
    pn, en, sn = output_names(names, errs, ("loss", "converged", "reason", "steps", "message"),
                              taken=[str(d) for d in (*out.dims, *out.coords)])

    def field_at(i):
        return out.isel({field: i}, drop=True).variable
    variables = {pn[n]: field_at(i) for i, n in enumerate(names)}
    variables.update({en[n]: field_at(len(names) + j) for j, n in enumerate(errs)})
    at = len(names) + len(errs)
    variables[sn["loss"]] = field_at(at)
    variables[sn["converged"]] = field_at(at + 1).astype(bool)
    codes = field_at(at + 2)      # -> the reasons, an object array at 0-d too (was <U4)
    data = codes.data.map_blocks(lambda c: _reasons(c).view(SharedText), dtype=object) \
        if is_lazy(codes) else _reasons(codes.values)
    # fastpath: not through pandas, which made a str a position of the same few
    variables[sn["reason"]] = xr.Variable(codes.dims, data, fastpath=True)
    variables[sn["steps"]] = field_at(at + 3).astype(np.int64)
    variables[sn["message"]] = messages
    for v in variables.values():    # the data's attributes (units of y) are not a rate's
        v.attrs = {}
    return xr.Dataset(variables, coords=out.isel({field: 0}, drop=True).coords)
