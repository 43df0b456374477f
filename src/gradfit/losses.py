"""Losses: how far a curve is from the data, one number per parameter set.

A loss takes predictions shaped ``(..., n)``, targets ``(n,)`` and optional per-point
uncertainties ``sigma`` ``(n,)``, and reduces over the data axis only, so a batch of
parameter sets gives a batch of losses. With ``sigma`` the residuals are scaled,
``r_i = (pred_i - y_i) / sigma_i``, so the mse becomes chi-square over n.

- ``mae``   ``mean |r|``          (the lesson's loss)
- ``mse``   ``mean r^2``
- ``rmse``  ``sqrt(mean r^2)``
- ``huber`` ``mean h(r)``, ``h(r) = r^2/2`` if ``|r| <= delta`` else ``delta*(|r| - delta/2)``

    >>> import torch
    >>> y = torch.tensor([1.0, 2.0, 3.0])
    >>> round(LOSSES["mae"](torch.tensor([1.0, 2.0, 5.0]), y).item(), 4)
    0.6667
    >>> LOSSES["mse"](torch.tensor([[1.0, 2.0, 5.0], [1.0, 2.0, 3.0]]), y).tolist()
    [1.3333333730697632, 0.0]

A loss refuses predictions whose last axis is not the data's: ``(n, 1)`` against ``(n,)``
would otherwise broadcast into an ``(n, n)`` mistake.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .errors import InputError


def check_shapes(pred: torch.Tensor, y: torch.Tensor) -> None:
    """Predictions ``(..., n)`` against targets ``(n,)``, nothing else."""
    if y.ndim != 1 or pred.ndim < 1 or pred.shape[-1] != y.shape[0]:
        raise InputError("predictions and targets do not match",
                         expected=f"predictions shaped (..., {y.shape[0] if y.ndim == 1 else 'n'}) "
                                  "for targets shaped (n,)",
                         given=f"predictions {tuple(pred.shape)}, targets {tuple(y.shape)}")


def _mae(r, delta):
    return r.abs().mean(-1)


def _mse(r, delta):
    return r.square().mean(-1)


def _rmse(r, delta):
    return r.square().mean(-1).sqrt()


def _huber(r, delta):
    return torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                          delta=delta).mean(-1)


@dataclass(frozen=True)
class Loss:
    """A named loss. ``squared`` marks the least-squares family (uncertainties, LM)."""

    name: str
    reduce: Callable[[torch.Tensor, float], torch.Tensor]
    squared: bool
    description: str
    delta: float = 1.0

    def residuals(self, pred, y, sigma=None):
        check_shapes(pred, y)
        r = pred - y
        return r if sigma is None else r / sigma

    def __call__(self, pred: torch.Tensor, y: torch.Tensor,
                 sigma: torch.Tensor | None = None) -> torch.Tensor:
        return self.reduce(self.residuals(pred, y, sigma), self.delta)

    def with_delta(self, delta: float) -> "Loss":
        return Loss(self.name, self.reduce, self.squared, self.description, float(delta))


LOSSES: dict[str, Loss] = {
    "mae": Loss("mae", _mae, False, "mean absolute error"),
    "mse": Loss("mse", _mse, True, "mean squared error"),
    "rmse": Loss("rmse", _rmse, True, "root mean squared error"),
    "huber": Loss("huber", _huber, False, "Huber loss (squared near zero, absolute beyond delta)"),
}


def check_method(method: str, loss: Loss) -> None:
    """Refuse an exact method that cannot minimise ``loss`` (one voice for ``fit``,
    ``fit_many`` and the playground's changes mid-run): LM needs a squared error (mse,
    rmse), IRLS is for mae and huber."""
    if method == "lm" and not loss.squared:
        raise InputError(f"optimizer 'lm' cannot minimise the {loss.name} loss",
                         expected="a squared-error loss: mse or rmse", given=loss.name)
    if method == "irls" and loss.name not in ("mae", "huber"):
        raise InputError("optimizer 'irls' is for the mae and huber losses",
                         expected="loss mae or huber (lm for mse)", given=loss.name)


def get_loss(name: "str | Loss", delta: float = 1.0) -> Loss:
    """The loss called ``name``, with Huber's ``delta``."""
    if isinstance(name, Loss):
        return name
    if name not in LOSSES:
        raise InputError(f"unknown loss {name!r}", expected="one of " + ", ".join(LOSSES))
    if not (delta > 0 and delta < float("inf")):
        raise InputError("bad huber delta", expected="a positive finite number", given=delta)
    return LOSSES[name].with_delta(delta)
