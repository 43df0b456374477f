"""A fitting problem: a model, data and a loss, as functions of one flat parameter tensor.

Optimizers see only this: ``objective(theta)`` (a scalar, or one value per parameter set
for ``theta`` shaped ``(..., P)``), ``residuals(theta)`` for least-squares methods, and
``predict(theta)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .losses import Loss
from .models import Model


@dataclass
class Problem:
    model: Model
    x: torch.Tensor                 # (n,) or (n, d)
    y: torch.Tensor                 # (n,)
    sigma: torch.Tensor | None      # (n,) or None
    loss: Loss

    @property
    def n(self) -> int:
        return self.y.shape[0]

    def predict(self, theta: torch.Tensor) -> torch.Tensor:
        return self.model(self.x, theta)

    def rows(self, idx: torch.Tensor) -> "Problem":
        """The problem on the points ``idx`` alone."""
        return Problem(self.model, self.x[idx], self.y[idx],
                       None if self.sigma is None else self.sigma[idx], self.loss)

    def residuals(self, theta: torch.Tensor) -> torch.Tensor:
        """``(pred - y) / sigma``, shape ``(..., n)``."""
        return self.loss.residuals(self.model(self.x, theta), self.y, self.sigma)

    def objective(self, theta: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor:
        """The loss at ``theta``; on the rows ``idx`` only when given (a mini-batch)."""
        if idx is None:     # shapes were checked when the problem was made
            r = self.model(self.x, theta) - self.y
            return self.loss.reduce(r if self.sigma is None else r / self.sigma, self.loss.delta)
        sigma = None if self.sigma is None else self.sigma[idx]
        return self.loss(self.model(self.x[idx], theta), self.y[idx], sigma)
