"""Many series on Dask: ``fit_many`` per partition of a long table of millions of rows.

The table is in long form, one row per point: a ``group`` column naming the series, the
input column(s) ``x``, the output ``y`` and optionally ``sigma``. It can be a Dask
DataFrame, a pandas DataFrame, or a path, folder or glob of Parquet or CSV files
(``'data/*.parquet'``). The labels each partition holds are read first (one key: the
groups whose rows lie in more than one partition); every partition fits the groups wholly
its own where it lies, with the batched engine ``gradfit.fit_many``, and only the rows of
the split groups are shuffled on ``group`` so that each comes together, then fitted the
same way. A table written a series, or a file of series, at a time moves (almost) nothing;
one whose rows are interleaved moves them all, as a full shuffle. The result has one row
per group: its label, the parameters, their standard errors (squared losses), ``loss``,
``converged``, ``reason``, ``steps``, ``r2``, ``rmse``, ``n_points`` and ``message``, as
``ManyResult.to_pandas``; a group that cannot be fitted says why in its row and the others
complete.

A task's result depends on its partition only, so a worker lost mid-fit costs time, not
results: Dask reruns its tasks elsewhere and every row comes out identical.

    fit_table("A*exp(-k*t)", "data/*.parquet", x="t", y="signal", group="id",
              p0={"A": 1, "k": 0.5})             # a local cluster, rows sorted by group
    fit_table(..., scheduler="tcp://HOST:8786")  # an existing cluster
    fit_table(..., compute=False)                # a lazy Dask DataFrame
"""
from __future__ import annotations

import glob
import os
import numpy as np

from .cluster import client_for, progress as show_progress
from .errors import InputError
from .losses import get_loss
from .many_data import column_names as _columns
from .many_result import group_column
from .models import make_model, table_inputs

STATUS = [("loss", "f8"), ("converged", "bool"), ("reason", "object"), ("steps", "i8"),
          ("r2", "f8"), ("rmse", "f8"), ("n_points", "i8"), ("message", "object")]


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        pq = sorted(glob.glob(os.path.join(path, "*.parquet")))
        csv = sorted(glob.glob(os.path.join(path, "*.csv")))
        if pq and csv:             # one kind was read and the other left out, silently
            raise InputError("the folder holds both Parquet and CSV files",
                             expected="a folder of one kind, or a glob such as "
                             f"'{os.path.join(path, '*.parquet')}'", given=path)
        found = pq or csv
    else:
        found = sorted(glob.glob(path))
    if not found:
        raise InputError("no data file matches", expected="a Parquet or CSV file, a folder "
                         "of them or a glob such as 'data/*.parquet'", given=path)
    return found


def read_columns(data, cols):
    """``read_table(data)`` narrowed to ``cols``; a missing column is refused by name (in
    every file: the reader takes the first file's columns as the table's)."""
    ddf = read_table(data)
    missing = [c for c in cols if c not in ddf.columns]
    if missing:
        raise InputError(f"no column named {missing[0]!r}",
                         expected="one of " + ", ".join(map(str, list(ddf.columns)[:20])))
    if isinstance(data, (str, os.PathLike)):
        for path in _files(os.fspath(data)):
            have = _file_columns(path)
            lacking = [c for c in cols if have is not None and c not in have]
            if lacking:
                raise InputError(f"no column named {lacking[0]!r} in this file",
                                 expected="every file with the columns " + ", ".join(cols),
                                 where=path)
    return ddf[cols]


def _file_columns(path: str):
    """The column names of one Parquet (its schema) or CSV file (its header), or None."""
    try:
        if path.lower().endswith((".parquet", ".pq")):
            import pyarrow.parquet as pq
            return set(pq.read_schema(path).names)
        import pandas as pd
        return set(pd.read_csv(path, nrows=0, dtype=object).columns)
    except Exception:       # noqa: BLE001 - unreadable here: the reader says why
        return None


def read_table(data):
    """A Dask DataFrame from a Dask or pandas DataFrame, or a path, folder or glob of
    Parquet (``.parquet``, ``.pq``) or CSV files."""
    import dask.dataframe as dd
    import pandas as pd
    if isinstance(data, dd.DataFrame):
        return data
    if isinstance(data, pd.DataFrame):
        return dd.from_pandas(data, npartitions=max(1, min(64, len(data) // 100_000 + 1)))
    if not isinstance(data, (str, os.PathLike)):
        raise InputError("bad data", expected="a Dask or pandas DataFrame, or a path or glob "
                         "of Parquet or CSV files", given=type(data).__name__)
    files = _files(os.fspath(data))
    kinds = {os.path.splitext(f)[1].lower() for f in files}
    try:
        if kinds <= {".parquet", ".pq"}:
            ddf = dd.read_parquet(files)
        elif kinds <= {".csv"}:
            # every cell as text: a guess of each column's type from the first rows fails
            # on a later row, and labels "1" and "01" would be one number (the value
            # columns become numbers by gradfit's own rule, as_numbers)
            ddf = dd.read_csv(files, dtype=object, keep_default_na=False)
        else:
            ddf = None
    except (ValueError, KeyError, OSError) as exc:
        while exc.__cause__ is not None:     # the reader's own words, not dask's wrapping
            exc = exc.__cause__
        raise InputError("cannot read the data", expected="Parquet or CSV files holding the "
                         "named columns", given=(str(exc) or type(exc).__name__).splitlines()[0],
                         where=files[0]) from None
    if ddf is not None:
        return ddf              # columns are picked later (dask pushes the pick into the reader)
    raise InputError("unknown data format", expected="Parquet (.parquet) or CSV (.csv) files",
                     given=", ".join(sorted(kinds)))


def as_numbers(ddf, group: str):
    """The table with its group labels as they are (a categorical column's categories as
    labels: Dask's placeholder category turned every label into NaN) and its value columns
    as float64, text cells read as the CSV reader reads them (``data.parse_cell``: empty a
    missing value, anything but a number refused by name)."""
    import pandas as pd
    if isinstance(ddf[group].dtype, pd.CategoricalDtype):
        ddf = ddf.assign(**{group: ddf[group].astype(object)})
    values = [c for c in ddf.columns if c != group]
    text = [c for c in values if ddf[c].dtype.kind not in "fiub"]
    meta = ddf._meta.astype({c: "f8" for c in values})
    if not values:
        return ddf
    return ddf.map_partitions(_numbers, values, text, meta=meta)


def _numbers(frame, values, text):
    from .data import parse_cell
    out = frame.copy()
    for c in values:
        if c not in text:
            out[c] = frame[c].astype("f8")
            continue
        cells = frame[c].astype(object).where(frame[c].notna(), "")
        strip = [str(v).strip() for v in cells.tolist()]
        out[c] = np.array([parse_cell(v, f"column {c!r}") for v in strip], dtype=float)
    return out


def result_meta(model, x_cols, group_dtype, group: str, loss: str = "mse", fixed=None,
                delta: float = 1.0, inputs=None):
    """The empty pandas frame of the result's columns and dtypes."""
    import pandas as pd
    names = make_model(model, inputs or table_inputs(model, x_cols)).param_names
    cols = [(n, "f8") for n in names]
    if get_loss(loss, delta).squared:
        cols += [(f"{n}_stderr", "f8") for n in names if n not in (fixed or {})]
    cols += STATUS
    cols = [(group_column(group, [c for c, _ in cols]), group_dtype)] + cols
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in cols})


def fit_partition(frame, model, x_cols, y, group, sigma, meta, kwargs, skip=None,
                  shuffled=True):
    """``fit_many`` over the groups of one pandas partition, as rows shaped like ``meta``
    (``skip``: labels of groups fitted elsewhere, left out; ``shuffled``: the partition
    came from a shuffle, whose rows may arrive in another order when a task is rerun)."""
    import torch
    from .fit_many import fit_many
    if torch.get_num_threads() != 1 and os.environ.get("OMP_NUM_THREADS") == "1":
        torch.set_num_threads(1)
    if skip is not None and len(skip):
        frame = frame[~frame[group].isin(skip)]
    if len(frame) == 0:
        return meta.copy()
    if shuffled:
        # the same rows in the same order however the shuffle delivered them: a rerun task
        # (a worker lost) gives the same numbers to the last bit (a partition read from
        # its files comes in their order every time)
        frame = frame.sort_values([group] + list(x_cols) + [y], kind="stable")
    res = fit_many(model, data=frame, x=x_cols if len(x_cols) > 1 else x_cols[0], y=y,
                   group=group, sigma=sigma, inputs=table_inputs(model, x_cols), **kwargs)
    out = res.to_pandas()
    for c in meta.columns:
        if c not in out.columns:
            out[c] = np.nan
    return out[list(meta.columns)].astype(meta.dtypes.to_dict())


def fit_table(model, data, *, x, y, group, sigma=None, scheduler=None,
              workers: int | None = None, compute: bool = True, progress: bool = False,
              npartitions: int | None = None, drop_nan: bool = False, **kwargs):
    """Fit ``model`` to every group of a long table on Dask (see the module's docstring).

    ``kwargs`` are ``gradfit.fit_many``'s (loss, optimizer, p0, bounds, fixed, starts,
    steps, ...). Returns a pandas DataFrame sorted by group (``compute=False``: the lazy
    Dask DataFrame, one partition per shuffled partition); ``scheduler``/``workers`` as
    ``gradfit.cluster.client_for``; ``progress``: a progress bar over the tasks;
    ``drop_nan``: rows holding NaN or inf in x, y or sigma are left out (else their group
    fails)."""
    for bad in ("data", "inputs"):
        if bad in kwargs:
            raise InputError(f"fit_table does not take {bad}=", expected="the table as data "
                             "and its column names as x=, y=, group=, sigma=")
    x_cols, cols = _columns(x, y, group, sigma)
    _check_settings(model, x_cols, kwargs)
    ddf = as_numbers(read_columns(data, cols), group)
    if drop_nan:
        values = [c for c in cols if c != group]
        ddf = ddf[ddf[values].map_partitions(lambda f: np.isfinite(f.to_numpy(dtype=float))
                                             .all(1), meta=(None, bool))]
    meta = result_meta(model, x_cols, ddf[group].dtype, group, kwargs.get("loss", "mse"),
                       kwargs.get("fixed"), kwargs.get("delta", 1.0))
    parts = npartitions or ddf.npartitions
    fit = (fit_partition, model, x_cols, y, group, sigma, meta, kwargs)
    out = _plan(ddf, group, parts, fit, meta)
    if not compute:
        return out
    with client_for(scheduler, workers) as client:
        future = client.compute(out)
        show_progress(future, progress)
        frame = future.result()
    if not len(frame):                   # every row is in a group's row: no rows at all
        raise InputError("no data rows", expected="a table with at least one row",
                         where=None if not isinstance(data, (str, os.PathLike)) else str(data))
    return frame.sort_values(meta.columns[0], kind="stable").reset_index(drop=True)


def _check_settings(model, x_cols, kwargs) -> None:
    """Names and per-group arrays checked here, before a cluster starts (a worker would say
    it only once it ran, among its own log)."""
    from .models import check_param_names
    m = make_model(model, kwargs.get("inputs") or table_inputs(model, x_cols))
    for what in ("p0", "bounds", "fixed"):
        given = kwargs.get(what) or {}
        check_param_names(m, given, what)
        for name, value in given.items():
            parts = value if what == "bounds" and isinstance(value, (tuple, list)) else (value,)
            if not all(v is None or np.ndim(v) == 0 for v in parts):
                raise InputError(f"per-group {what} values for {name!r} on a table",
                                 expected="one number for every group (or guess= for "
                                 "starting values from each group's data)",
                                 given=f"{np.size(value)} values")


def _plan(ddf, group, parts, fit, meta):
    """The lazy result (see the module's docstring): the labels each partition holds, the
    split ones among them (one key), each partition's own groups fitted where they lie and
    the rows of the split ones shuffled together and fitted after."""
    import dask
    import dask.dataframe as dd
    ddf = ddf.optimize()            # its partitions fixed once: both passes read the same
    seen = [dask.delayed(_labels)(part, group) for part in ddf.to_delayed()]
    split = dask.delayed(split_labels)(seen)
    own = ddf.map_partitions(*fit, split, False, meta=meta)
    moved = ddf.map_partitions(_rows_of, group, split, meta=ddf._meta)
    rest = moved.shuffle(on=group, npartitions=parts).map_partitions(*fit, meta=meta)
    return dd.concat([own, rest])


def _labels(frame, group):
    return frame[group].drop_duplicates().to_numpy()


def split_labels(seen) -> np.ndarray:
    """The labels found in more than one of the partitions' label arrays ``seen``."""
    import pandas as pd
    if not seen:
        return np.array([])
    # dropna=False: rows without a label (None, NaN) are one group, which fails in its row
    counts = pd.Series(np.concatenate(seen)).value_counts(dropna=False)
    return counts.index[counts.to_numpy() > 1].to_numpy()


def _rows_of(frame, group, labels):
    return frame[frame[group].isin(labels)]
