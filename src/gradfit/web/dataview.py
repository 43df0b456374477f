"""The page's data as the core takes it: input columns by their names, sigma, and the
points held out as a test set (``holdout_mask``). Fits, landscapes and exact fits see the
training points only; the test points are measured, never fitted."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..holdout import holdout_mask
from .schemas import Points


@dataclass
class PageData:
    x: np.ndarray               # (n,) or (n, 2)
    y: np.ndarray               # (n,)
    sigma: np.ndarray | None    # (n,) or None
    inputs: tuple[str, ...]     # the model's input names, one per x column
    test: np.ndarray            # (n,) bool: held out

    def part(self, test: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``(x, y, sigma)`` of the training points (``test=False``) or the test points."""
        m = self.test if test else ~self.test
        return self.x[m], self.y[m], None if self.sigma is None else self.sigma[m]

    @property
    def n_test(self) -> int:
        return int(self.test.sum())


def page_data(points: Points, test_fraction: float = 0.0, split_seed: int = 0,
              model: str | None = None) -> PageData:
    x = np.asarray(points.x, dtype=float)
    if points.x2 is not None:
        x = np.stack([x, np.asarray(points.x2, dtype=float)], axis=1)
    sigma = None if points.sigma is None else np.asarray(points.sigma, dtype=float)
    return PageData(x, np.asarray(points.y, dtype=float), sigma,
                    model_inputs(model, points.inputs),
                    holdout_mask(len(points.x), test_fraction, split_seed))


def model_inputs(model: str | None, inputs) -> tuple[str, ...]:
    """The input names a model of the data reads, as the command line reads a table's
    (``models.table_inputs``): ``a*x^2+b*x+c`` on an uploaded column ``id`` reads x as
    that column (x had become a fourth parameter, and the exact fit failed)."""
    from ..models import table_inputs
    return table_inputs(model, list(inputs)) if isinstance(model, str) else tuple(inputs)


def of(req) -> PageData:
    """The data of a request (``ProblemIn`` or one of its kind)."""
    return page_data(req.data, req.test_fraction, req.split_seed, getattr(req, "model", None))
