"""``fit_along``'s arguments checked and shaped: its dimensions and their coordinates, the
data and ``sigma`` as numbers, and the values of ``p0``, ``fixed`` and ``bounds`` that
differ by position (DataArrays over the other dimensions, aligned with the data).

A value of ``bounds`` is a pair ``(low, high)`` as in ``fit`` and ``fit_many`` (a tuple,
a list, or an array whose first axis holds the two sides); each side may differ by
position. One array or DataArray that is not such a pair is refused, never read as one
side::

    >>> import numpy as np, xarray as xr
    >>> other = xr.DataArray(np.zeros(2), dims="x")
    >>> _bound_pair(np.array([0.0, 5.0]), other, "k")
    (np.float64(0.0), np.float64(5.0))
    >>> _bound_pair(xr.full_like(other, 1.0), other, "k")
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: bad bounds 'k': one DataArray (taken as neither side): expected a pair (low, high), each side None, a number, a DataArray over the other dimensions (x) or an array of shape (2,), e.g. (0.0, hi) with hi a DataArray
"""
from __future__ import annotations

import numbers

import numpy as np

from .errors import DataError, InputError

PER_POSITION = ("p0", "fixed", "bounds")


def check_flag(value, name: str) -> bool:
    """``value`` if it is True or False (numpy's too): ``skipna="no"`` was taken as True."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"bad {name}", expected="True or False",
                     given=value if value is not None else _Plain("None"))


class _Plain:
    """A ``given`` shown as it is (InputError quotes a str, and leaves out None)."""

    def __init__(self, text: str):
        self.text = text

    def __str__(self) -> str:
        return self.text


def check_scheduler(scheduler, workers) -> None:
    """``workers`` and a ``scheduler`` address checked whether or not Dask will run: they
    were ignored unchecked for data in memory."""
    from .cluster import address, check_workers
    check_workers(workers)
    if scheduler is not None and (isinstance(scheduler, str) or
                                  type(scheduler).__module__.split(".")[0] != "distributed"):
        address(scheduler)


def is_lazy(v) -> bool:
    """Whether ``v`` is Dask-backed (a DataArray of Dask, or a Dask array)."""
    chunks = getattr(v, "chunks", None)
    return chunks is not None and not isinstance(v, np.ndarray)


def field_name(da) -> str:
    """A name for the packed results' dimension that is none of the data's names (a data
    dimension named ``_field`` was a raw apply_ufunc error)."""
    name = "_field"
    taken = {str(n) for n in (*da.dims, *da.coords)}
    while name in taken:
        name = "_" + name
    return name


def dims_of(dim, da) -> tuple:
    """``dim`` as a tuple of the data's dimensions: one name, or a list or tuple of them,
    each once, each of at least one point."""
    dims = tuple(dim) if isinstance(dim, (list, tuple)) else (dim,)
    known = ("one of " + ", ".join(map(str, da.dims))) if da.dims else \
        "a dimension of the data (they have none: 0-d data, one number)"
    if not dims:
        raise InputError("no dimension to fit along", expected="a dimension's name, or a list "
                         "of them: " + known)
    for d in dims:
        if not isinstance(d, str):
            raise InputError(f"bad dimension {d!r}", expected="a dimension's name (text): " +
                             known, given=type(d).__name__)
        if d not in da.dims:
            raise InputError(f"no dimension named {d!r}", expected=known)
        if da.sizes[d] == 0:
            raise InputError(f"no points along {d!r}", expected=f"at least one point along "
                             f"{d!r}", given=f"a dimension of length 0 (sizes {dict(da.sizes)})")
    if len(set(dims)) < len(dims):
        raise InputError("a dimension named twice", expected="each dimension once",
                         given=", ".join(dims))
    return dims


def coordinate(da, dim) -> np.ndarray:
    """The coordinate of ``dim`` (its positions 0, 1, ... when it has none) as numbers."""
    import pandas as pd
    index = da.indexes.get(dim)
    if isinstance(index, pd.MultiIndex):
        levels = ", ".join(map(repr, index.names))
        raise InputError(f"the dimension {dim!r} is stacked (a MultiIndex of {levels})",
                         expected=f"a dimension of numbers: unstack it, da.unstack({dim!r}), "
                         f"and fit along its levels, dim=({levels})")
    values = np.asarray(da[dim].values)
    if values.dtype.kind not in "biuf":
        raise InputError(f"the coordinate of {dim!r} holds {values.dtype} values",
                         expected="numbers (a time as seconds or days since a start, e.g. "
                         f"da.assign_coords({dim}=(da.{dim} - da.{dim}[0]) / np.timedelta64(1, 's')))")
    return values.astype(np.float64)


def _number(v, na=None):
    """``v`` (a value of an object array) as a float, NaN for a missing value (None, NaN,
    ``pd.NA``: ``na``), or None when it is not a real number (text, a time, a complex
    number, any other object)."""
    if v is None or (na is not None and v is na):
        return np.nan
    if isinstance(v, (bool, np.bool_, numbers.Real)) or (
            isinstance(v, numbers.Number) and not isinstance(v, numbers.Complex)):
        return float(v)               # a Decimal too; a complex number is refused
    return None


def _scalar_ok(v) -> bool:
    """Whether ``v`` (one side of a bounds' pair, the same everywhere) is None or a number."""
    if v is None:
        return True
    if isinstance(v, (str, bytes)):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _object_floats(values: np.ndarray, dims, what: str, offset=None) -> np.ndarray:
    """An object array as float64, or a DataError naming the first value that is not a
    number and where it is (``offset``: the block's first index along each dimension)."""
    import pandas as pd
    flat = values.reshape(-1)
    out = np.empty(flat.shape, dtype=np.float64)
    for i, v in enumerate(flat):
        f = _number(v, pd.NA)
        if f is None:
            at = np.unravel_index(i, values.shape)
            at = [int(j) + (offset[n] if offset else 0) for n, j in enumerate(at)]
            where = ", ".join(f"{d} index {j}" for d, j in zip(dims, at))
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise DataError(f"bad {what}: {shown} ({type(v).__name__})" +
                            (f" at {where}" if where else "") + " is not a number",
                            expected="numbers (a missing value as NaN, None or pd.NA)")
        out[i] = f
    return out.reshape(values.shape)


def as_numbers(a, what: str):
    """The DataArray ``a`` with numbers for values: numbers stay as they are, an object
    array of numbers (None or ``pd.NA`` for a missing one) becomes float64 (for Dask, block
    by block as it is computed), and text, times and complex numbers are refused."""
    import xarray as xr
    from .data import check_real
    check_real(a, what)
    kind = a.dtype.kind
    if kind in "biuf":
        return a
    if kind in "US":
        raise DataError(f"bad {what}: text values", expected="numbers (text of numbers "
                        "converted first, e.g. da.astype(float))", given=str(a.dtype))
    if kind != "O":
        raise DataError(f"bad {what}: {a.dtype} values", expected="numbers")
    dims = tuple(map(str, a.dims))
    if not is_lazy(a):
        return a.copy(data=_object_floats(np.asarray(a.values), dims, what))

    def block(b, block_info=None):
        info = (block_info or {}).get(0) or {}
        offset = [lo for lo, _ in info.get("array-location", [])] or None
        return _object_floats(np.asarray(b), dims, what, offset)
    return xr.DataArray(a.data.map_blocks(block, dtype=np.float64), dims=a.dims,
                        coords=a.coords, name=a.name, attrs=a.attrs)


def sigma_array(sigma, da, dims):
    """``sigma`` as a DataArray of numbers: one already, or an array of the data's shape
    (its dimensions) or of the fitted dimensions' shape (along them), as ``p0`` takes
    arrays, or a number."""
    import xarray as xr
    if isinstance(sigma, xr.DataArray):
        return as_numbers(sigma, "sigma")
    if isinstance(sigma, (str, bytes)):
        raise InputError("bad sigma", expected="a DataArray, a number or an array of numbers",
                         given=sigma if isinstance(sigma, str) else repr(sigma))
    a = np.asarray(sigma)
    if a.dtype.kind not in "biuf":
        a = as_numbers(xr.DataArray(a), "sigma").values
    a = a.astype(np.float64)
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


def same_labels(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two coordinates' labels are the same, NaN equal to NaN (a label NaN made a
    DataArray built from the data itself 'not match' it)."""
    import pandas as pd
    if a.shape != b.shape:
        return False
    try:
        return bool(pd.Index(a).equals(pd.Index(b)))
    except (TypeError, ValueError):
        return bool(np.array_equal(a, b))


def broadcast(v, like, what: str):
    """``v.broadcast_like(like)``; coordinates that do not match are refused by name (was
    xarray's own AlignmentError)."""
    for d in v.dims:            # broadcast_like joins labels (outer): apply_ufunc then failed
        if d in like.dims and d in v.coords and d in like.coords and \
                not same_labels(v[d].values, like[d].values):
            raise InputError(f"bad {what}: its coordinates do not match the data's",
                             expected=f"the data's labels along {d!r}",
                             given=f"{v[d].values[:5].tolist()}")
    try:
        return v.broadcast_like(like)
    except ValueError as exc:                   # xarray's AlignmentError is a ValueError
        raise InputError(f"bad {what}: its coordinates do not match the data's",
                         expected="the data's coordinate labels on every dimension they share",
                         given=(str(exc).splitlines() or ["?"])[0][:200]) from None


def _varies(v) -> bool:
    return not isinstance(v, (str, bytes)) and v is not None and np.ndim(v) > 0


def _side(other) -> str:
    return (f"None, a number, a DataArray over the other dimensions "
            f"({', '.join(map(str, other.dims))}) or an array of shape {other.shape}")


def _bound_pair(value, other, name) -> tuple:
    """A value of ``bounds`` as its two sides ``(low, high)``: a tuple or list of two, or an
    array whose first axis holds them (``np.array([0, 5])`` as in ``fit_many``); one
    DataArray, an array of another shape or a number is refused (an array had been taken
    as the lower bounds, one a position)."""
    import xarray as xr
    expected = f"a pair (low, high), each side {_side(other)}, e.g. (0.0, hi) with hi a " \
               "DataArray"
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InputError(f"bad bounds {name!r}: {len(value)} values", expected=expected,
                             given=value)
        pair = tuple(value)
    elif isinstance(value, xr.DataArray):
        raise InputError(f"bad bounds {name!r}: one DataArray (taken as neither side)",
                         expected=expected)
    elif _varies(value):
        shape = tuple(np.shape(value))
        if shape[0] != 2 or shape[1:] not in ((), tuple(other.shape)):
            raise InputError(f"bad bounds {name!r}: an array of shape {shape}",
                             expected=expected + f"; or an array of shape (2,) or "
                             f"{(2, *other.shape)} (low, high along its first axis)")
        pair = (value[0], value[1])
    else:
        raise InputError(f"bad bounds {name!r}", expected=expected, given=value)
    for i, v in enumerate(pair):
        if not _varies(v) and not _scalar_ok(v):
            raise InputError(f"bad bounds {name!r}: its {('low', 'high')[i]} side",
                             expected=_side(other), given=v if isinstance(v, str) else repr(v))
    return pair


def by_name(kwargs, names) -> dict:
    """``kwargs`` with a ``p0`` or ``fixed`` given as one DataArray over a ``param``
    dimension labelled by the parameters' names (``curvefit``'s ``curvefit_coefficients``,
    perhaps over the other dimensions too) as a dict, name -> its values: the labels say
    which value is which, in any order (a DataArray had been read as values in the model's
    order of ``names``, its labels unread)."""
    import xarray as xr
    out = dict(kwargs)
    for key in ("p0", "fixed"):
        value = kwargs.get(key)
        if not isinstance(value, xr.DataArray):
            continue
        expected = (f"a dict, parameter name -> value, or a DataArray with a 'param' "
                    f"dimension labelled by the names ({', '.join(names)}), as curvefit's "
                    "curvefit_coefficients")
        if "param" not in value.dims or "param" not in value.coords:
            raise InputError(f"bad {key}: a DataArray without a labelled 'param' dimension",
                             expected=expected, given=f"dimensions {tuple(value.dims)}")
        labels = [str(v) for v in value["param"].values]
        unknown = [n for n in labels if n not in names]
        if unknown or len(set(labels)) < len(labels):
            raise InputError(f"bad {key}: " + (f"{unknown[0]!r} is not a parameter" if unknown
                             else "a parameter labelled twice"), expected=expected,
                             given=", ".join(labels))
        out[key] = {n: value.isel(param=i, drop=True) for i, n in enumerate(labels)}
        out[key] = {n: v.item() if not v.dims else v for n, v in out[key].items()}
    return out


def per_position(kwargs, da, dims):
    """``kwargs`` without the p0, fixed and bounds values that differ by position (a
    DataArray over ``da``'s other dimensions, or an array of their shape; a side of a
    bounds' pair), and those as ``[((key, name, side), DataArray)]`` aligned with ``da``
    (not yet chunked like it), so that each block gets its own positions' values."""
    other = da.isel({d: 0 for d in dims}, drop=True)
    where, out = [], dict(kwargs)
    for key in PER_POSITION:
        given = kwargs.get(key)
        if not isinstance(given, dict):
            continue
        kept = {}
        for name, value in given.items():
            sides = _bound_pair(value, other, name) if key == "bounds" else (value,)
            if not any(_varies(v) for v in sides):
                kept[name] = sides if key == "bounds" else value
                continue
            for i, v in enumerate(sides):
                what = f"bounds {name!r} ({('low', 'high')[i]} side)" if key == "bounds" \
                    else f"{key} {name!r}"
                where.append(((key, name, i if key == "bounds" else None),
                              on_positions(v, other, what)))
        out[key] = kept
    return out, where


def on_positions(v, other, what: str):
    """``v`` (a number, a DataArray over some of ``other``'s dimensions, or an array of
    ``other``'s shape) broadcast over ``other``'s dimensions, in their order."""
    import xarray as xr
    if v is None or not np.ndim(v):              # a side of bounds: the same everywhere
        v = np.full(other.shape, np.nan if v is None else float(v))
    if not isinstance(v, xr.DataArray):
        a = np.asarray(v)
        if a.shape != other.shape:
            raise InputError(f"bad {what}", expected="a number, a DataArray over the other "
                             f"dimensions, or an array of shape {other.shape}",
                             given=f"shape {np.shape(a)}")
        v = xr.DataArray(a, dims=other.dims, coords=other.coords)
    extra = [d for d in v.dims if d not in other.dims]
    if extra:
        raise InputError(f"bad {what}", expected="a DataArray over the other dimensions "
                         f"({', '.join(map(str, other.dims))})", given=f"dimension {extra[0]!r}")
    v = as_numbers(v, what).astype(np.float64)
    return broadcast(v, other, what).transpose(*other.dims)


def with_positions(kwargs, keys, values):
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
