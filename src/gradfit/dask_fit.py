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

import os

import numpy as np

from .cluster import client_for, progress as show_progress
from .dask_tables import as_numbers, read_columns, read_errors
from .errors import InputError
from .losses import get_loss
from .many_data import column_names as _columns
from .many_result import group_column, output_names
from .models import make_model, table_inputs

STATUS = {"loss": "f8", "converged": "bool", "reason": "object", "steps": "i8", "r2": "f8",
          "rmse": "f8", "n_points": "i8", "message": "object"}      # ManyResult's, typed


def result_meta(model, x_cols, group_dtype, group: str, loss: str = "mse", fixed=None,
                delta: float = 1.0, inputs=None):
    """The empty pandas frame of the result's columns and dtypes."""
    import pandas as pd
    names = make_model(model, inputs or table_inputs(model, x_cols)).param_names
    errs = [n for n in names if n not in (fixed or {})] if get_loss(loss, delta).squared else []
    pn, en, sn = output_names(names, errs)          # ManyResult.to_pandas's columns
    cols = [(pn[n], "f8") for n in names] + [(en[n], "f8") for n in errs] + \
        [(sn[n], t) for n, t in STATUS.items()]
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
    ddf = as_numbers(read_columns(data, cols), group, drop_nan=drop_nan)
    meta = result_meta(model, x_cols, ddf[group].dtype, group, kwargs.get("loss", "mse"),
                       kwargs.get("fixed"), kwargs.get("delta", 1.0))
    parts = npartitions or ddf.npartitions
    fit = (fit_partition, model, x_cols, y, group, sigma, meta, kwargs)
    out = _plan(ddf, group, parts, fit, meta)
    if not compute:
        return out
    with client_for(scheduler, workers) as client, read_errors():
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
