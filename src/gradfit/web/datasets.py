"""The page's view of the built-in datasets (the registry itself is ``gradfit.datasets``)."""
from __future__ import annotations

import numpy as np

from ..data import Dataset
from ..datasets import DATASETS, BuiltinDataset, make_dataset, outlier_index

__all__ = ["DATASETS", "BuiltinDataset", "make_dataset", "outlier_index", "points"]


def points(d: Dataset) -> dict:
    """The page's ``Points``: ``x`` (and ``x2``), ``y``, ``sigma``, the input names."""
    x = np.asarray(d.x, dtype=float)
    out = {"x": (x[:, 0] if x.ndim == 2 else x).tolist(),
           "y": np.asarray(d.y, dtype=float).tolist(), "inputs": list(d.x_names)}
    if x.ndim == 2:
        out["x2"] = x[:, 1].tolist()
    if d.sigma is not None:
        out["sigma"] = np.asarray(d.sigma, dtype=float).tolist()
    return out
