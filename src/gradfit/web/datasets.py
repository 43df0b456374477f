"""The page's view of the built-in datasets (the registry itself is ``gradfit.datasets``)."""
from __future__ import annotations

import numpy as np

from ..data import Dataset
from ..datasets import DATASETS, BuiltinDataset, make_dataset, outlier_index
from .schemas import usable_input_name

__all__ = ["DATASETS", "BuiltinDataset", "make_dataset", "outlier_index", "points"]


def input_names(columns) -> list[str]:
    """The names a model writes for the x ``columns``: each column's own name where it is
    one (``schemas.usable_input_name``), else
    ``x`` (one column) or ``x1``, ``x2`` (two), so that what the upload answers every other
    endpoint takes (a column ``my col``, ``1x`` or ``if`` had come back as an input name
    that ``/api/eval`` then refused).

        >>> input_names(["t"]), input_names(["my col"]), input_names(["if", "v"])
        (['t'], ['x'], ['x1', 'v'])
    """
    fallback = ["x"] if len(columns) == 1 else [f"x{i + 1}" for i in range(len(columns))]
    ok = [usable_input_name(c) for c in columns]
    names = [c if good else f for c, good, f in zip(columns, ok, fallback)]
    return names if len(set(names)) == len(names) else fallback


def points(d: Dataset) -> dict:
    """The page's ``Points``: ``x`` (and ``x2``), ``y``, ``sigma``, the input names."""
    x = np.asarray(d.x, dtype=float)
    out = {"x": (x[:, 0] if x.ndim == 2 else x).tolist(),
           "y": np.asarray(d.y, dtype=float).tolist(), "inputs": input_names(list(d.x_names))}
    if x.ndim == 2:
        out["x2"] = x[:, 1].tolist()
    if d.sigma is not None:
        out["sigma"] = np.asarray(d.sigma, dtype=float).tolist()
    return out
