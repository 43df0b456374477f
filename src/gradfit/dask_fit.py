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
``ManyResult.to_pandas`` (its columns and dtypes), the groups in order of first appearance
(the files in sorted order, each file's rows in its order), as ``fit_many`` orders them in
one process; a group that cannot be fitted says why in its row and the others complete.
Each group's numbers are ``fit_many``'s for it up to rounding: a problem's last digits
depend on the batch it runs in (how many problems, padded to which length), which LM's
stopping tests amplify by the problem's conditioning (README: "the same answers").

A task's result depends on its partition only, so a worker lost mid-fit costs time, not
results: Dask reruns its tasks elsewhere and every row comes out identical.

    fit_table("A*exp(-k*t)", "data/*.parquet", x="t", y="signal", group="id",
              p0={"A": 1, "k": 0.5})             # a local cluster, rows in table order
    fit_table(..., scheduler="tcp://HOST:8786")  # an existing cluster
    fit_table(..., compute=False)                # a lazy Dask DataFrame
"""
from __future__ import annotations

import os

import numpy as np

from .cluster import client_for, progress as show_progress
from .dask_tables import as_numbers, check_labels, read_columns, read_errors
from .errors import InputError
from .losses import get_loss
from .many_data import check_bool_labels, column_names as _columns, keep_groups, \
    mark_all_dropped
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
                  shuffled=True, drop_nan=False):
    """``fit_many`` over the groups of one pandas partition, as rows shaped like ``meta``
    (``skip``: labels of groups fitted elsewhere, left out; ``shuffled``: the partition
    came from a shuffle, whose rows may arrive in another order when a task is rerun;
    ``drop_nan``: rows holding NaN or inf left out, a group left with none failing in its
    row, as in one process: ``many_data.keep_groups``)."""
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
    emptied: list = []
    if drop_nan:
        used = list(x_cols) + [y] + ([sigma] if sigma is not None else [])
        keep = np.isfinite(frame[used].to_numpy(dtype=np.float64)).all(1)
        keep, emptied = keep_groups(keep, frame[group].to_numpy())
        frame = frame[keep]
    res = fit_many(model, data=frame, x=x_cols if len(x_cols) > 1 else x_cols[0], y=y,
                   group=group, sigma=sigma, inputs=table_inputs(model, x_cols), **kwargs)
    mark_all_dropped(res, emptied)
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
    fails); a group left with no row fails in its row (``many_data.ALL_DROPPED``)."""
    for bad in ("data", "inputs"):
        if bad in kwargs:
            raise InputError(f"fit_table does not take {bad}=", expected="the table as data "
                             "and its column names as x=, y=, group=, sigma=")
    x_cols, cols = _columns(x, y, group, sigma)
    _check_settings(model, x_cols, kwargs)
    table, files = read_columns(data, cols, group)
    # drop_nan's rows are left out where each group's rows come together (fit_partition):
    # a group left with none fails in its row, as in one process (it had vanished)
    ddf = as_numbers(table, group)
    meta = result_meta(model, x_cols, ddf[group].dtype, group, kwargs.get("loss", "mse"),
                       kwargs.get("fixed"), kwargs.get("delta", 1.0))
    parts = npartitions or ddf.npartitions
    fit = (fit_partition, model, x_cols, y, group, sigma, meta, kwargs)
    out, order = _plan(ddf, group, parts, fit, meta, drop_nan)
    if not compute:
        return out
    with client_for(scheduler, workers) as client, read_errors(files):
        futures = client.compute([out, order])
        show_progress(futures, progress)
        frame, order = (f.result() for f in futures)
        order = order["label"].to_numpy(dtype=object)
    if not len(frame):                   # every row is in a group's row: no rows at all
        raise InputError("no data rows", expected="a table with at least one row",
                         where=None if not isinstance(data, (str, os.PathLike)) else str(data))
    return as_in_memory(frame, meta.columns[0], order)


def as_in_memory(frame, label: str, order):
    """The computed rows as ``fit_many(...).to_pandas()`` gives them: the groups in their
    order of first appearance ``order``, columns of objects typed as pandas types them
    (text as str, whole numbers as int64, Int64 with a missing label), not as Dask's
    string[pyarrow] or objects."""
    import pandas as pd
    from .many_data import _empty, _missing

    def key(v):      # '' is no label, as NaN is (group_codes): the failed group's place
        return None if _missing(v) or _empty(v) else v
    place: dict = {}
    for i, v in enumerate(np.asarray(order, dtype=object).tolist()):
        place.setdefault(key(v), i)
    at = np.fromiter((place.get(key(v), len(place)) for v in
                      frame[label].to_numpy(dtype=object).tolist()), dtype=np.int64,
                     count=len(frame))
    frame = frame.iloc[np.argsort(at, kind="stable")].reset_index(drop=True)
    for c in frame.columns:
        if frame[c].dtype == object or isinstance(frame[c].dtype, pd.StringDtype):
            values = frame[c].to_numpy(dtype=object)
            given = [v for v in values if not _missing(v)]
            if c == label and len(given) < len(values) and given and all(
                    isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))
                    for v in given):
                frame[c] = pd.array([None if _missing(v) else v for v in values], dtype="Int64")
            else:
                frame[c] = pd.Series([None if _missing(v) else v for v in values],
                                     dtype=object).infer_objects()
    return frame


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


def _plan(ddf, group, parts, fit, meta, drop_nan=False):
    """The lazy result (see the module's docstring): the labels each partition holds, the
    split ones among them (one key), each partition's own groups fitted where they lie and
    the rows of the split ones shuffled together and fitted after."""
    import dask
    import dask.dataframe as dd
    import pandas as pd
    ddf = ddf.optimize()            # its partitions fixed once: both passes read the same
    seen = [dask.delayed(_labels)(part, group) for part in ddf.to_delayed()]
    split = dask.delayed(split_labels)(seen, group)
    own = ddf.map_partitions(*fit, split, False, drop_nan, meta=meta)
    moved = ddf.map_partitions(_rows_of, group, split, meta=ddf._meta)
    rest = moved.shuffle(on=group, npartitions=parts).map_partitions(*fit, None, True,
                                                                      drop_nan, meta=meta)
    # the order of first appearance as a frame of one partition: one computation with the
    # fits (the labels read once), of expressions only (a Delayed beside them had Dask
    # materialise the graph, with a warning); labels as they are, not made text by Dask
    with dask.config.set({"dataframe.convert-string": False}):
        order = dd.from_delayed([dask.delayed(first_seen)(seen, True)],
                                meta=pd.DataFrame({"label": pd.Series(dtype=object)}),
                                verify_meta=False)
    return dd.concat([own, rest]), order


def _labels(frame, group):
    if frame[group].dtype == object:     # before drop_duplicates, which merges 1 and True
        check_bool_labels(frame[group].tolist(), group)
    return frame[group].drop_duplicates().to_numpy()


def split_labels(seen, group: str | None = None) -> np.ndarray:
    """The labels found in more than one of the partitions' label arrays ``seen``
    (``group``: their column, whose labels are checked: ``check_labels``)."""
    import pandas as pd
    if not seen:
        return np.array([])
    if group is not None and any(np.asarray(s).dtype == object for s in seen):
        check_bool_labels(np.concatenate(seen).tolist(), group)    # before pd.unique
        check_labels(pd.unique(np.concatenate(seen)), group)
    # dropna=False: rows without a label (None, NaN) are one group, which fails in its row
    counts = pd.Series(np.concatenate(seen)).value_counts(dropna=False)
    return counts.index[counts.to_numpy() > 1].to_numpy()


def first_seen(seen, frame: bool = False):
    """The labels of the partitions' label arrays ``seen`` (in partition order), each once,
    in order of first appearance (``frame``: as the column ``label`` of a frame)."""
    import pandas as pd
    out = pd.unique(np.concatenate(seen)) if seen else np.array([])
    return pd.DataFrame({"label": np.asarray(out, dtype=object)}) if frame else out


def _rows_of(frame, group, labels):
    return frame[frame[group].isin(labels)]
