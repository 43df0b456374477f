"""The page's view of the built-in datasets (the registry itself is ``gradfit.datasets``)."""
from __future__ import annotations

import numpy as np

from ..data import Dataset
from ..datasets import DATASETS, BuiltinDataset, make_dataset, outlier_index

__all__ = ["DATASETS", "BuiltinDataset", "make_dataset", "outlier_index", "points"]


def points(d: Dataset) -> dict:
    return {"x": np.asarray(d.x, dtype=float).tolist(), "y": np.asarray(d.y, dtype=float).tolist()}
