"""What least squares needs of ``[J r]`` on many points, computed over blocks of points.

On a long series the whole block ``[J r]`` ``(n, P+1)`` is large (10^7 points, 4 parameters:
400 MB) and every pass over it goes to main memory. LM needs only small sums of it, additive
over any split of the rows into blocks ``b``:

    M = [J r]^T [J r] = sum_b [J_b r_b]^T [J_b r_b]       (``J^T J``, ``J^T r``, ``S``)

and the final rank check and covariance need the singular values of ``J D^-1``, which are
those of its triangular factor ``R`` (``J D^-1 = Q R``), itself built block by block: the
``R`` of the stacked ``[R; J_b D^-1]`` is the ``R`` of all rows seen so far (Householder QR
on ``2P`` rows, as backward stable as one QR of the whole ``J``; no squared condition
number, unlike reading singular values off ``J^T J``).

Blocks of ``BLOCK`` points keep an expression's values and tangents (forward mode,
``expr_jacobian``) in cache: 7x faster than the whole series at 10^7 points on one core.
A block's rows are ``[J f-y]^T`` divided by ``sigma``. On the CPU the points are cut into
one contiguous span per torch thread, each summed on its own core; the spans' sums are
added in order, so a rerun with as many threads gives the same numbers.

    >>> import torch
    >>> from gradfit.models import make_model
    >>> block = expression_block(make_model("a*x + b"))
    >>> x = torch.linspace(0, 1, 5, dtype=torch.float64); y = 2 * x + 1
    >>> th = torch.tensor([2.0, 0.0], dtype=torch.float64)
    >>> block_moments(block, x, y, None, th, size=2)[2].tolist()      # [J^T r, S]: r = -1
    [-2.5, -5.0, 5.0]
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

#: points of a block: its values and tangents stay in cache
BLOCK = 2 ** 15


def expression_block(model):
    """``(x, theta (P,), y) -> [J f-y]^T`` ``(P+1, m)`` for a text expression the
    forward-mode program supports, else None."""
    from .expr_jacobian import ExpressionJacobian, supports
    from .models import ExpressionModel
    if not (isinstance(model, ExpressionModel) and supports(model.expression)):
        return None
    ej, names = ExpressionJacobian(model.expression), model.input_names

    def block(x, th, y):
        cols = [x] if x.ndim == 1 else list(x.unbind(-1))
        return ej(dict(zip(names, cols)), th[None], y[None])[0]
    return block


def _blocks(block, x, y, sigma, th, size):
    """The blocks' ``[J r]^T`` ``(P+1, m)``, in order."""
    for a in range(0, int(y.shape[0]), size):
        jr = block(x[a:a + size], th, y[a:a + size])
        yield jr if sigma is None else jr / sigma[a:a + size]


def _by_spans(reduce, block, x, y, sigma, th, size) -> list:
    """``reduce(blocks)`` over contiguous spans of the points, one span per torch thread on
    the CPU (at least two blocks each), side by side, each thread on its own with one torch
    thread (``many_parallel``'s reasoning: a block's operations are too small for torch's
    threads to repay their start and wait); the spans' results in order."""
    n = int(y.shape[0])
    k = torch.get_num_threads() if y.device.type == "cpu" else 1
    k = max(1, min(k, n // (2 * size)))
    cuts = [n * i // k for i in range(k + 1)]

    def run(a, b):
        before = torch.get_num_threads()
        torch.set_num_threads(1)            # this thread's setting only
        try:
            return reduce(_blocks(block, x[a:b], y[a:b],
                                  None if sigma is None else sigma[a:b], th, size))
        finally:
            torch.set_num_threads(before)
    if k == 1:
        return [run(0, n)] if y.device.type == "cpu" else [reduce(_blocks(block, x, y, sigma,
                                                                          th, size))]
    with ThreadPoolExecutor(k, thread_name_prefix="gradfit-blocks") as pool:
        return list(pool.map(run, cuts[:-1], cuts[1:]))


def block_moments(block, x, y, sigma, th, *, size: int = BLOCK) -> torch.Tensor:
    """``M = [J r]^T [J r]`` ``(P+1, P+1)`` summed over blocks of ``size`` points."""
    P = th.shape[-1]

    def total(blocks):
        M = torch.zeros(P + 1, P + 1, dtype=th.dtype, device=th.device)
        for jr in blocks:
            M.addmm_(jr, jr.T)
        return M
    return torch.stack(_by_spans(total, block, x, y, sigma, th, size)).sum(0)


def block_r(block, x, y, sigma, th, d, *, size: int = BLOCK) -> torch.Tensor | None:
    """The triangular factor ``R`` ``(P, P)`` of ``J D^-1`` (``d``: the column scales),
    built over blocks of ``size`` points; None where ``J`` is not finite."""
    def factor(blocks):
        R = None
        for jr in blocks:
            jb = jr[:-1].T / d
            if not bool(torch.isfinite(jb).all()):
                return None
            R = _r(jb if R is None else torch.cat([R, jb]))
        return R
    parts = _by_spans(factor, block, x, y, sigma, th, size)
    return None if any(R is None for R in parts) else _r(torch.cat(parts))


def _r(a: torch.Tensor) -> torch.Tensor:
    return torch.linalg.qr(a, mode="r")[1]
