"""Fit a model along dimensions of an xarray DataArray: every other position is a problem.

``fit_along(model, da, dim)`` fits ``model`` to ``da`` along ``dim`` (``x`` = the
coordinate of ``dim``) at every position of the other dimensions, all at once by
``gradfit.fit_many``, and returns a Dataset over those dimensions with one variable per
parameter, ``{name}_stderr`` (squared losses), ``loss``, ``converged``, ``reason``,
``steps`` and ``message`` (why a position failed: ``y holds NaN at index 3 (of 25 points,
from 0): ...``). ``skipna=True`` (``curvefit``'s name) leaves a position's NaN (and inf)
points out of its fit, and the points where the coordinate is NaN out of every fit;
gradfit's default, False, leaves no data out unasked: such a position fails, saying where
its NaN is, and a NaN in the coordinate is refused by name (curvefit's default is True).
Several dimensions at once (``dim=("y", "x")``, curvefit's ``coords``) make a model of
several inputs, named as those dimensions, over their grid of coordinates: a 2-D Gaussian
fitted to every frame of an image stack. It answers the question of
``xarray.DataArray.curvefit`` (which loops scipy's
``curve_fit`` over positions) with one batched fit per chunk. A Dask-backed array is fitted
chunk by chunk in parallel (each chunk whole along ``dim``): lazily with ``compute=False``,
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

import numpy as np

from .data import check_real
from .errors import InputError
from .losses import get_loss
from .many_result import output_names
from .models import ExpressionModel, _mentions, make_model
from .result import REASONS

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
    return np.stack(cols, axis=-1), np.asarray(r.message, dtype=object)


def _fit_rows(model, x, flat, s, names, errs, kwargs):
    from .fit_many import fit_many
    return _pack(fit_many(model, x, flat, sigma=s, **kwargs), names, errs)


def _fit_with_gaps(model, x, flat, s, finite, names, errs, kwargs):
    """Rows ``flat`` ``(B, n)`` fitted to their ``finite`` points only: a long table of
    their points, one group a row (a row of no point fails, saying so)."""
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
        values[some], messages[some] = _pack(fit_many(
            model, xs[some][rows, cols], flat[some][rows, cols],
            sigma=None if s is None else s[some][rows, cols], group=rows,
            **_rows_of(kwargs, some, len(flat))), names, errs)
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
    chunk gets its own positions' values. ``skipna``: NaN (and inf) points of a position
    left out of its fit, and coordinate values that are NaN out of all (as ``curvefit``'s
    ``skipna=True``); False (gradfit's default: no data left out unasked): a position
    holding NaN fails, saying where, and a NaN in the coordinate is refused."""
    import xarray as xr
    if not isinstance(da, xr.DataArray):
        raise InputError("bad data", expected="an xarray DataArray", given=type(da).__name__)
    dims = _dims(dim, da)
    for bad in ("data", "group", "inputs", "x", "y"):
        if bad in kwargs:
            raise InputError(f"fit_along does not take {bad}=", expected="the data as a DataArray")
    if "drop_nan" in kwargs:
        raise InputError("fit_along does not take drop_nan=", expected="skipna=True "
                         "(xarray's name) to leave NaN points out of each position's fit")
    check_real(da)
    coords = []
    for d in dims:
        x = _coordinate(da, d)
        if not np.isfinite(x).all():      # one refusal, not the same failure at every position
            bad = int(np.flatnonzero(~np.isfinite(x))[0])
            if not skipna:
                raise InputError(f"the coordinate of {d!r} holds {x[bad]} at index {bad}",
                                 expected="finite numbers (skipna=True leaves such points "
                                 "out of every fit)")
            keep = np.flatnonzero(np.isfinite(x))
            if sigma is not None:
                sigma = _sigma_array(sigma, da, dims)
                sigma = sigma.isel({d: keep}) if d in sigma.dims else sigma
            if not len(keep):
                raise InputError(f"no points along {d!r}", expected="a finite coordinate "
                                 "value at one point at least", given=f"NaN or inf at all {len(x)}")
            da, x = da.isel({d: keep}), x[keep]
        coords.append(x)
    x = coords[0] if len(dims) == 1 else np.stack(
        [g.reshape(-1) for g in np.meshgrid(*coords, indexing="ij")], axis=-1)
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
    chunked = da.chunks is not None
    if chunked:
        da = da.chunk({d: -1 for d in dims})
    args = [da]
    core = [list(dims)]
    if sigma is not None:
        sigma = _sigma_array(sigma, da, dims)
        extra = [d for d in sigma.dims if d not in da.dims]
        if extra:
            raise InputError("bad sigma", expected="a DataArray over (some of) the data's "
                             f"dimensions ({', '.join(map(str, da.dims))})",
                             given=f"dimension {extra[0]!r}")
        sigma = _broadcast(sigma, da, "sigma").transpose(*da.dims)
        args.append(sigma.chunk(da.chunksizes) if chunked else sigma)
        core.append(list(dims))
    kwargs, where = _per_position(kwargs, da, dims, chunked)
    args += [a for _, a in where]
    core += [[] for _ in where]
    K = len(names) + len(errs) + 4
    k = len(dims)

    def block(y, *rest):
        s = rest[0] if sigma is not None else None
        given = rest[1:] if sigma is not None else rest
        kw = _with_positions(kwargs, [key for key, _ in where], given)
        # the grid's points in a row (their count, not -1: a block of no position, another
        # dimension of length 0, has none to infer it from)
        n = int(np.prod(y.shape[y.ndim - k:]))
        flat = y.reshape(y.shape[:y.ndim - k] + (n,))
        s = None if s is None else s.reshape(s.shape[:s.ndim - k] + (n,))
        values, messages = _fit_block(flat, model=model, x=x, sigma=s, names=names,
                                      errs=errs, kwargs=kw, skipna=skipna)
        if k > 1:
            messages = np.vectorize(lambda m: _on_grid(m, dims, y.shape[y.ndim - k:]),
                                    otypes=[object])(messages)
        return values, messages

    out, messages = xr.apply_ufunc(block, *args, input_core_dims=core,
                                   output_core_dims=[["_field"], []], dask="parallelized",
                                   output_dtypes=[np.float64, object],
                                   dask_gufunc_kwargs={"output_sizes": {"_field": K}})
    ds = _dataset(out, messages, names, errs)
    if chunked and compute:
        if scheduler is None and workers is None:
            return ds.compute()
        from .cluster import client_for
        with client_for(scheduler, workers) as client:
            return client.compute(ds).result()
    return ds


_AT_INDEX = re.compile(r"^(\w+) holds (.+?) at index (\d+) \(of \d+ points, from 0\)")


def _on_grid(message, dims, shape):
    """A message of ``fit_many`` about a point of a position's grid (its index among the
    flattened points) that says where on the grid: ``y holds NaN at index 49 (of 180
    points, from 0)`` -> ``the data hold NaN at y index 4, x index 1 (of 12 x 15)``."""
    if not isinstance(message, str):
        return message
    m = _AT_INDEX.match(message)
    if not m:
        return message
    at = np.unravel_index(int(m.group(3)), shape)
    what = "the data hold" if m.group(1) == "y" else f"{m.group(1)} holds"
    where = ", ".join(f"{d} index {int(i)}" for d, i in zip(dims, at))
    size = " x ".join(map(str, shape))
    return f"{what} {m.group(2)} at {where} (of {size}){message[m.end():]}"


def _dims(dim, da) -> tuple:
    """``dim`` as a tuple of the data's dimensions: one name, or a list or tuple of them,
    each once, each of at least one point."""
    dims = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
    if not dims:
        raise InputError("no dimension to fit along", expected="a dimension's name, or a list "
                         "of them: one of " + ", ".join(map(str, da.dims)))
    for d in dims:
        if not isinstance(d, str):
            raise InputError(f"bad dimension {d!r}", expected="a dimension's name (text): one "
                             "of " + ", ".join(map(str, da.dims)), given=type(d).__name__)
        if d not in da.dims:
            raise InputError(f"no dimension named {d!r}",
                             expected="one of " + ", ".join(map(str, da.dims)))
        if da.sizes[d] == 0:
            raise InputError(f"no points along {d!r}", expected=f"at least one point along "
                             f"{d!r}", given=f"a dimension of length 0 (sizes {dict(da.sizes)})")
    if len(set(dims)) < len(dims):
        raise InputError("a dimension named twice", expected="each dimension once",
                         given=", ".join(dims))
    return dims


def _coordinate(da, dim) -> np.ndarray:
    """The coordinate of ``dim`` (its positions 0, 1, ... when it has none) as numbers."""
    values = np.asarray(da[dim].values)
    if values.dtype.kind not in "biuf":
        raise InputError(f"the coordinate of {dim!r} holds {values.dtype} values",
                         expected="numbers (a time as seconds or days since a start, e.g. "
                         f"da.assign_coords({dim}=(da.{dim} - da.{dim}[0]) / np.timedelta64(1, 's')))")
    return values.astype(np.float64)


PER_POSITION = ("p0", "fixed", "bounds")


def _per_position(kwargs, da, dims, chunked):
    """``kwargs`` without the p0, fixed and bounds values that differ by position (a
    DataArray over ``da``'s other dimensions, or an array of their shape), and those as
    ``[((key, name, side), DataArray)]`` aligned with ``da`` (chunked like it), so that each
    block gets its own positions' values."""
    other = da.isel({d: 0 for d in dims}, drop=True)
    where, out = [], dict(kwargs)
    for key in PER_POSITION:
        given = kwargs.get(key)
        if not isinstance(given, dict):
            continue
        kept = {}
        for name, value in given.items():
            sides = list(value) if key == "bounds" and isinstance(value, (tuple, list)) \
                and len(value) == 2 else [value]
            if not any(_varies(v) for v in sides):
                kept[name] = value
                continue
            for i, v in enumerate(sides):
                a = _on_positions(v, other, f"{key} {name!r}")
                where.append(((key, name, i if key == "bounds" else None),
                              a.chunk(other.chunksizes) if chunked else a))
        out[key] = kept
    return out, where


def _varies(v) -> bool:
    return not isinstance(v, (str, bytes)) and v is not None and np.ndim(v) > 0


def _on_positions(v, other, what: str):
    """``v`` (a number, a DataArray over some of ``other``'s dimensions, or an array of
    ``other``'s shape) broadcast over ``other``'s dimensions, in their order."""
    import xarray as xr
    if v is None or not np.ndim(v):              # a side of bounds: the same everywhere
        v = np.full(other.shape, np.nan if v is None else float(v))
    if not isinstance(v, xr.DataArray):
        a = np.asarray(v, dtype=np.float64)
        if a.shape != other.shape:
            raise InputError(f"bad {what}", expected="a number, a DataArray over the other "
                             f"dimensions, or an array of shape {other.shape}",
                             given=f"shape {np.shape(a)}")
        v = xr.DataArray(a, dims=other.dims, coords=other.coords)
    extra = [d for d in v.dims if d not in other.dims]
    if extra:
        raise InputError(f"bad {what}", expected="a DataArray over the other dimensions "
                         f"({', '.join(map(str, other.dims))})", given=f"dimension {extra[0]!r}")
    return _broadcast(v.astype(np.float64), other, what).transpose(*other.dims)


def _broadcast(v, like, what: str):
    """``v.broadcast_like(like)``; coordinates that do not match are refused by name (was
    xarray's own AlignmentError)."""
    for d in v.dims:            # broadcast_like joins labels (outer): apply_ufunc then failed
        if d in like.dims and d in v.coords and d in like.coords and \
                not np.array_equal(v[d].values, like[d].values):
            raise InputError(f"bad {what}: its coordinates do not match the data's",
                             expected=f"the data's labels along {d!r}",
                             given=f"{list(v[d].values[:5])}")
    try:
        return v.broadcast_like(like)
    except ValueError as exc:                   # xarray's AlignmentError is a ValueError
        raise InputError(f"bad {what}: its coordinates do not match the data's",
                         expected="the data's coordinate labels on every dimension they share",
                         given=(str(exc).splitlines() or ["?"])[0][:200]) from None


def _sigma_array(sigma, da, dims):
    """``sigma`` as a DataArray: one already, or an array of the data's shape (its
    dimensions) or of the fitted dimensions' shape (along them), as ``p0`` takes arrays."""
    import xarray as xr
    if isinstance(sigma, xr.DataArray):
        return sigma
    a = np.asarray(sigma, dtype=np.float64)
    if a.shape == da.shape:
        return xr.DataArray(a, dims=da.dims, coords=da.coords)
    along = tuple(da.sizes[d] for d in dims)
    if a.shape == along:
        return xr.DataArray(a, dims=dims, coords={d: da[d] for d in dims if d in da.coords})
    if a.ndim == 0:
        return xr.DataArray(a)
    what = f"{dims[0]!r}'s length {along[0]}" if len(dims) == 1 else \
        f"the shape of {', '.join(map(repr, dims))}, {along}"
    raise InputError("bad sigma", expected=f"a DataArray, a number, an array of the data's "
                     f"shape {da.shape} or of {what}", given=f"shape {a.shape}")


def _with_positions(kwargs, keys, values):
    """``kwargs`` with each block's per-position values (flattened as its problems) put back."""
    if not keys:
        return kwargs
    out = {k: dict(kwargs.get(k) or {}) for k in PER_POSITION if kwargs.get(k) is not None}
    out = {**kwargs, **out}
    for (key, name, side), v in zip(keys, values):
        flat = np.asarray(v, dtype=np.float64).reshape(-1)
        d = out.setdefault(key, {})
        if key == "bounds":                      # NaN: that side unbounded
            pair = list(d.get(name, (None, None)))
            pair[side] = np.where(np.isnan(flat), -np.inf if side == 0 else np.inf, flat)
            d[name] = tuple(pair)
        else:
            d[name] = flat
    return out


def _dataset(out, messages, names, errs):
    """The packed ``(..., K)`` array and the messages -> a Dataset of named variables
    (``many_result.output_names``: a parameter named like a dimension, or a status
    variable like a parameter, is renamed rather than lost). Built in one call from
    variables and the coordinates once: assigning DataArrays one by one dropped a stacked
    (MultiIndex) dimension's levels from each again, with a FutureWarning."""
    import xarray as xr
    pn, en, sn = output_names(names, errs, ("loss", "converged", "reason", "steps", "message"),
                              taken=[str(d) for d in (*out.dims, *out.coords)])

    def field(i):
        return out.isel(_field=i, drop=True).variable
    variables = {pn[n]: field(i) for i, n in enumerate(names)}
    variables.update({en[n]: field(len(names) + j) for j, n in enumerate(errs)})
    at = len(names) + len(errs)
    variables[sn["loss"]] = field(at)
    variables[sn["converged"]] = field(at + 1).astype(bool)
    codes = out.isel(_field=at + 2, drop=True)
    variables[sn["reason"]] = xr.apply_ufunc(
        lambda c: np.array(CODES, dtype=object)[c.astype(int)], codes, dask="parallelized",
        output_dtypes=[object]).variable
    variables[sn["steps"]] = field(at + 3).astype(np.int64)
    variables[sn["message"]] = messages.variable
    for v in variables.values():    # the data's attributes (units of y) are not a rate's
        v.attrs = {}
    return xr.Dataset(variables, coords=out.isel(_field=0, drop=True).coords)
