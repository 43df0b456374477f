"""The protocol every optimizer's stepper follows, stated once.

The fit loop drives a stepper and reads only what this base class declares: no attribute
is looked up "if present". A stepper holds ``theta`` (a flat leaf tensor ``(P,)``);
``step()`` computes the loss and its gradient norm at the current ``theta``, returns them
and then moves ``theta`` (so record ``i`` describes the point step ``i`` started from).

- ``stop``: None, or ``(reason, text)`` once the stepper knows it is done (a key of
  ``result.REASONS``); the loop then ends with it.
- ``own_stopping``: the stepper stops by its own certified rule (lm, irls), so the loop's
  ``ftol``/``gtol`` are off unless the user sets them.
- ``has_lr``: whether a learning rate means anything to it (not for lm and irls);
  ``lr`` is the rate in use, ``set_lr(value)`` changes it while running.
- ``replaces_storage``: each update gives ``theta`` new storage, so a view taken before a
  step keeps the old values and the loop needs no copy.
- ``chosen``: the method ``auto`` picked (None otherwise).
- ``linear``: for an exact linear least-squares solve, its ``LinearSolution`` (rank and
  covariance come from it), else None.
- ``svd``: ``(s, V^T, d)`` of the Jacobian scaled by ``d`` at the end, when the stepper has
  judged its rank itself (lm), else None.
"""
from __future__ import annotations

import math

import torch


def grad_norm(g: torch.Tensor) -> float:
    """The Euclidean norm as a float, without squaring past the largest number (a gradient
    of 1e200 has a norm; ``vector_norm`` says inf); for a few parameters one read-out beats
    a kernel."""
    if g.numel() <= 64 and g.device.type == "cpu":
        return math.hypot(*g.tolist())
    top = g.abs().max() if g.numel() else g.new_zeros(())
    top = torch.where(top > 0, top, 1.0)
    return float(top * torch.linalg.vector_norm(g / top))


class Stepper:
    stop: tuple[str, str] | None = None
    own_stopping: bool = False
    has_lr: bool = True
    replaces_storage: bool = False
    chosen: str | None = None
    linear = None
    svd = None
    lr: float = 0.0

    def step(self) -> tuple[float, float]:      # pragma: no cover - every stepper has one
        raise NotImplementedError

    def set_lr(self, value: float) -> None:
        """Change the learning rate from the next step on."""
        self.lr = float(value)
