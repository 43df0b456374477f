"""What the data plot draws of a model at some parameters: a curve over one input, or a
surface (a grid of values) over two; both 5% wider than the data on each side."""
from __future__ import annotations

import numpy as np
import torch

from ..models import Model

SURFACE_POINTS = 41         # grid points along each input of a surface


def span(values, k: int) -> np.ndarray:
    """``k`` points over the values' range, 5% to spare each side (1 when all are equal;
    less where that would pass the largest float).

    >>> span([-1.7e308, 1.7e308], 3).tolist()
    [-1.7e+308, 0.0, 1.7e+308]
    """
    lo, hi = float(np.min(values)), float(np.max(values))
    with np.errstate(over="ignore"):
        pad = 0.05 * (np.float64(hi) - np.float64(lo)) if hi > lo else 1.0
        a, b = np.float64(lo) - pad, np.float64(hi) + pad
        if not (np.isfinite(a) and np.isfinite(b)):
            a, b = np.float64(lo), np.float64(hi)
        if not np.isfinite(b - a):                 # a range wider than the largest float
            return 2 * np.linspace(a / 2, b / 2, k)
    return np.linspace(a, b, k)


def finite(a: np.ndarray) -> list:
    """A list for JSON: non-finite values become None."""
    a = np.asarray(a, dtype=float)
    return np.where(np.isfinite(a), a, None).tolist()


def _theta(model: Model, params: dict[str, float]) -> torch.Tensor:
    return torch.tensor([params[n] for n in model.param_names], dtype=torch.float64)


def curve(model: Model, params: dict[str, float], x: np.ndarray, k: int = 200) -> dict:
    """``{"x", "y"}`` (and each ReLU unit's ``parts``) over one input; for two inputs
    ``{"x1", "x2", "z"}`` with ``z[j][i]`` the model at ``(x1[i], x2[j])``."""
    x = np.asarray(x, dtype=float)
    theta = _theta(model, params)
    with torch.no_grad():
        if x.ndim == 2:
            g1, g2 = span(x[:, 0], SURFACE_POINTS), span(x[:, 1], SURFACE_POINTS)
            a, b = np.meshgrid(g1, g2)                    # (k2, k1)
            grid = torch.tensor(np.stack([a.ravel(), b.ravel()], 1))
            z = model(grid, theta).numpy().reshape(a.shape)
            return {"x1": g1.tolist(), "x2": g2.tolist(), "z": finite(z)}
        xs = span(x, k)
        xt = torch.tensor(xs)
        out = {"x": xs.tolist(), "y": finite(model(xt, theta).numpy())}
        if hasattr(model, "parts"):
            out["parts"] = [finite(row) for row in model.parts(xt, theta).numpy()]
    return out
