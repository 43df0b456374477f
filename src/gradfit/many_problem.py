"""Many problems as one: B series as tensors, and per-problem bounds and fixed values.

``ManyProblem`` is ``problem.Problem`` for B series at once. Every function takes the
parameter sets ``theta`` ``(k, P)`` of the problems ``idx`` ``(k,)`` (the ones still
running) and gives ``(k, n)`` or ``(k,)``:

- ``residuals``: ``(f(x_b, theta_b) - y_b) / sigma_b``, 0 at padded points;
- ``objective``: the loss of each problem over its own ``n_b`` points (a masked mean), so a
  padded series has the loss of the series alone.

``ManyTransform`` is ``bounds.ParamTransform`` with bounds and fixed values per problem
(the same formulas: ``lo + (hi - lo)(sin u + 1)/2`` for two bounds, ``lo - 1 + sqrt(u^2+1)``
for a lower one, ``hi + 1 - sqrt(u^2+1)`` for an upper one); the fixed names are shared.
"""
from __future__ import annotations

import torch

from .bounds import BIG_U, ParamTransform
from .batch_lm import data_norm
from .losses import Loss
from .models import CallableModel, ExpressionModel, Model


class ManyProblem:
    def __init__(self, model: Model, x, y, sigma, mask, loss: Loss, shared_x: bool):
        self.model, self.x, self.y, self.sigma, self.mask = model, x, y, sigma, mask
        self.loss, self.shared_x = loss, shared_x
        self.count = (torch.full((y.shape[0],), y.shape[1], dtype=y.dtype, device=y.device)
                      if mask is None else mask.sum(-1).to(y.dtype))
        yw = y if sigma is None else y / sigma
        self.ydata = data_norm(yw if mask is None else yw * mask)

    @property
    def B(self) -> int:
        return self.y.shape[0]

    def predict(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.shared_x:
            return self.model(self.x, theta)
        return batched_call(self.model, self.x[idx], theta)

    def residuals(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        r = self.predict(theta, idx) - self.y[idx]
        if self.sigma is not None:
            r = r / self.sigma[idx]
        if self.mask is not None:
            r = torch.where(self.mask[idx], r, 0.0)
        return r

    def jacobian(self, tr: "ManyTransform"):
        """``(u, idx) -> [J r]^T`` ``(k, F+1, n)``: the exact Jacobian of the residuals of
        the problems ``idx`` at the internal ``u`` ``(k, F)``, with the residuals as a last
        column (stored transposed, rows contiguous); by forward mode on the expression's
        tree where it can (``expr_jacobian``), else by autograd; over blocks of rows."""
        block = self._block(tr)
        return lambda u, idx: by_chunks(block, u, idx, self.y.shape[-1])

    def normal(self, tr: "ManyTransform"):
        """``(u, idx) -> M = [J r]^T [J r]`` ``(k, F+1, F+1)`` (``spd.moments``): all an LM
        iteration needs, computed block by block so that the ``(k, F+1, n)`` block is never
        formed whole on the CPU."""
        from .spd import moments
        block = self._block(tr)
        return lambda u, idx: by_chunks(block, u, idx, self.y.shape[-1], moments)

    def _block(self, tr: "ManyTransform"):
        """``[J r]^T`` of the given rows, in one pass."""
        from .batch_lm import residuals_and_jacobians
        from .expr_jacobian import ExpressionJacobian, supports
        if not (isinstance(self.model, ExpressionModel) and supports(self.model.expression)):
            def by_autograd(u, idx):
                r, jac = residuals_and_jacobians(
                    lambda v, i: self.residuals(tr.external(v, i), i), u, idx)
                return torch.cat([jac.transpose(-1, -2), r.unsqueeze(-2)], -2)
            return by_autograd
        ej = ExpressionJacobian(self.model.expression)
        names = self.model.input_names

        def fn(u, idx):
            x = self.x if self.shared_x else self.x[idx]
            cols = [x] if x.ndim == (1 if self.shared_x else 2) else list(x.unbind(-1))
            theta = tr.external(u, idx)
            jr = ej(dict(zip(names, cols)), theta, self.y[idx])     # [J f-y]^T
            if not tr.identity:
                slope = torch.cat([tr.slope(u, idx), torch.ones_like(u[:, :1])], -1)
                keep = torch.cat([tr.free_at, tr.free_at.new_tensor([theta.shape[-1]])])
                jr = jr[:, keep] * slope.unsqueeze(-1)
            if self.sigma is not None:
                jr = jr / self.sigma[idx].unsqueeze(-2)
            if self.mask is not None:
                jr = torch.where(self.mask[idx].unsqueeze(-2), jr, 0.0)
            return jr
        return fn

    def objective(self, theta: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss of each problem ``(k,)``, a mean over its own points."""
        return self.reduce(self.residuals(theta, idx), idx)

    def reduce(self, r: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The loss ``(k,)`` of residuals ``r`` ``(k, n)`` of the problems ``idx``, a mean
        over each one's own points (a ragged batch's padding left out)."""
        if self.mask is None:
            return self.loss.reduce(r, self.loss.delta)
        name, n, keep = self.loss.name, self.count[idx], self.mask[idx]
        r = torch.where(keep, r, 0.0)
        if name == "mae":
            return r.abs().sum(-1) / n
        if name in ("mse", "rmse"):
            mse = r.square().sum(-1) / n
            return mse if name == "mse" else mse.sqrt()
        h = torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                           delta=self.loss.delta)
        return torch.where(keep, h, 0.0).sum(-1) / n


CHUNK = 2 ** 15       # elements of a (rows, n) temporary per thread: held in cache


def by_chunks(fn, u: torch.Tensor, idx: torch.Tensor, points: int, reduce=None) -> torch.Tensor:
    """``reduce(fn(u, idx))`` (``reduce`` optional), computed over blocks of rows on the CPU.

    An expression's value and tangents are a few dozen ``(k, n)`` temporaries: over the
    whole batch each is megabytes, freshly mapped and faulted in by the allocator on every
    call and streamed through memory; over blocks of ``CHUNK`` elements they stay in
    cache. Each block has ``CHUNK`` elements per torch thread, so that an operation is
    still shared among the threads. Rows are independent, so the blocks give the same
    numbers as one pass. On a GPU one pass is best."""
    k = u.shape[0]
    rows = max(1, CHUNK * torch.get_num_threads() // max(1, points))
    if u.device.type != "cpu" or k <= rows:
        out = fn(u, idx)
        return out if reduce is None else reduce(out)
    out = None
    for s in range(0, k, rows):
        part = fn(u[s:s + rows], idx[s:s + rows])
        part = part if reduce is None else reduce(part)
        if out is None:
            out = part.new_empty((k,) + part.shape[1:])
        out[s:s + rows] = part
    return out


def batched_call(model: Model, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``model`` at per-problem inputs ``x`` ``(k, n[, d])`` and ``theta`` ``(k, P)``."""
    if theta.shape[0] == 0:         # no rows: vmap would run a built-in model on none
        return theta.new_empty(x.shape[:2])
    if isinstance(model, ExpressionModel):
        cols = [x] if x.ndim == 2 else list(x.unbind(-1))
        env = dict(zip(model.input_names, cols))
        env.update(zip(model.param_names, theta.unsqueeze(-1).unbind(-2)))
        out = model.expression(env)
        return out.expand(x.shape[:2]) if out.shape != x.shape[:2] else out
    if isinstance(model, CallableModel):
        args = list(theta.unsqueeze(-1).unbind(-2))
        args.insert(model._x_at, x)
        out = model.fn(*args)
        out = torch.as_tensor(out, dtype=theta.dtype, device=theta.device)
        return out.expand(x.shape[:2]) if out.shape != x.shape[:2] else out
    return torch.vmap(lambda xx, pp: model(xx, pp))(x, theta)


class ManyTransform:
    """Free internal ``u`` ``(k, F)`` of problems ``idx`` -> model parameters ``(k, P)``."""

    def __init__(self, names, free, lo, hi, fixed_values):
        """``lo``, ``hi`` ``(B, F)`` (+-inf where unbounded); ``fixed_values`` ``(B, P)``
        (the values of fixed names; the rest unused)."""
        self.names, self.free = tuple(names), tuple(free)
        self.identity = len(self.free) == len(self.names) and not (
            torch.isfinite(lo).any() or torch.isfinite(hi).any())
        dev = lo.device
        self.free_at = torch.tensor([self.names.index(n) for n in self.free], device=dev)
        self.base = fixed_values
        fl, fh = torch.isfinite(lo), torch.isfinite(hi)
        self.both, self.lower, self.upper = fl & fh, fl & ~fh, ~fl & fh
        self.lo0, self.hi0 = torch.where(fl, lo, 0.0), torch.where(fh, hi, 0.0)
        self.lo, self.hi = lo, hi
        # (B,): the problems with a bound
        self.bounded = torch.broadcast_to(fl | fh, (fixed_values.shape[0], len(self.free))).any(-1)

    def external(self, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        if self.identity:
            return u
        lo, hi = self.lo0[idx], self.hi0[idx]
        root = ParamTransform._root(u)
        p = torch.where(self.both[idx], lo + (hi - lo) * (torch.sin(u) + 1) / 2, u)
        p = torch.where(self.lower[idx], lo - 1 + root, p)
        p = torch.where(self.upper[idx], hi + 1 - root, p)
        if len(self.free) == len(self.names):
            return p
        out = self.base[idx].clone()
        out[:, self.free_at] = p
        return out

    def slope(self, u: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """``d external / d u`` of the free parameters ``(k, F)`` (each depends on its own
        ``u`` alone)."""
        lo, hi = self.lo0[idx], self.hi0[idx]
        root = ParamTransform._root(u)
        g = torch.where(self.both[idx], (hi - lo) / 2 * torch.cos(u), torch.ones_like(u))
        g = torch.where(self.lower[idx], u / root, g)
        return torch.where(self.upper[idx], -u / root, g)

    def internal(self, values: torch.Tensor) -> torch.Tensor:
        """Model parameters ``(B, P)`` (inside their bounds) -> internal ``(B, F)``."""
        v = values[:, self.free_at]
        lo, hi = self.lo0, self.hi0
        s = (2 * (v - lo) / torch.where(self.both, hi - lo, 1.0) - 1).clamp(-1.0, 1.0)
        u = torch.where(self.both, torch.asin(s), v)
        u = torch.where(self.lower, _one_sided(v - lo), u)
        return torch.where(self.upper, _one_sided(hi - v), u)

    def outside(self, values: torch.Tensor) -> torch.Tensor:
        """``(B,)`` True where a free value lies outside its bounds."""
        v = values[:, self.free_at]
        return ((v < self.lo) | (v > self.hi)).any(-1)

    def move_inside(self, values: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """Default starts (``given`` False, ``(B, F)``) outside their bounds move inside, as
        ``ParamTransform.move_inside``: to the middle of two bounds, or 1 inside one."""
        v = values[:, self.free_at]
        out_ = ~given & ((v < self.lo) | (v > self.hi))
        mid = torch.where(self.both, (self.lo0 + self.hi0) / 2,
                          torch.where(self.lower, self.lo0 + 1, self.hi0 - 1))
        values = values.clone()
        values[:, self.free_at] = torch.where(out_, mid, v)
        return values


def _one_sided(d: torch.Tensor) -> torch.Tensor:
    """``u`` of values ``d >= 0`` from their one bound, ``sqrt((d + 1)^2 - 1)``, as
    ``bounds._one_sided``: ``sqrt(d) sqrt(d + 2)`` past ``BIG_U`` (the square overflows)."""
    d = d.clamp_min(0)
    big = d > BIG_U
    small = torch.where(big, 0.0, d)
    return torch.where(big, d.sqrt() * (d + 2).sqrt(), torch.sqrt(((small + 1) ** 2 - 1).clamp_min(0)))
