"""A cusp of a compiled expression, for autograd: ``sqrt(u)``, ``u^c`` (a number 0 < c < 1)
or ``u^v`` (v not a number), whose slope ``f'(u)`` is infinite at ``u = 0``.

Autograd's chain rule takes a derivative through such a node as ``f'(u) * u'`` one factor
at a time, backwards: ``inf`` from the cusp, then ``inf * 0 = NaN`` where ``u`` does not
move (``sqrt(a^2*x)`` at x = 0 is 0 for every a, so its derivative in a is 0), and a fit
by a gradient method, mae or huber stopped as diverged at its first step. The forward
Jacobian (``expr_jacobian``) takes the product with ``_mul0``: 0 where ``u'`` is 0, and
infinite where it is not (``sqrt(x - c)`` at x = c, which no finite slope describes). The
same rule is given to autograd here, point by point: where ``u`` is 0 and the forward
program's tangents ``d u / d p_j`` are all 0 (``at_rest``), the node is evaluated at
``u = 1`` and its value there replaced by ``f(0)`` (no gradient flows into ``u``: 0, and
no ``inf`` is ever formed, so second derivatives and forward mode stay finite too);
elsewhere it is the plain ``f(u)``, an infinite slope included.

    >>> import torch
    >>> from gradfit.expr import parse_expression
    >>> e = parse_expression("sqrt(a^2*x) + b")
    >>> a = torch.tensor(2.0, requires_grad=True)
    >>> f = e({"x": torch.tensor([0.0, 4.0]), "a": a, "b": torch.tensor(1.0)})
    >>> f.tolist(), torch.autograd.grad(f[0], a)[0].item()   # d/da 2|a|sqrt(x) at x = 0
    ([1.0, 5.0], 0.0)
"""
from __future__ import annotations

from typing import Callable

import torch


def cusp(fn: Callable, arg: Callable, exponent, source: str, params: tuple,
         inputs: tuple) -> Callable:
    """The closure ``(values, consts) -> fn(u[, exponent])`` of a cusp node: ``arg`` the
    compiled argument ``u`` (``source``, the text of ``u``, depends on ``params``),
    ``exponent`` None (``sqrt``), a number or a compiled closure."""
    found: list = []        # the mask of resting points, made at the first call

    def node(v, c):
        u = arg(v, c)
        e = exponent(v, c) if callable(exponent) else exponent
        args = () if e is None else (e,)
        if not found:
            from .expr_jacobian import resting
            found.append(resting(source, params, inputs))
        still = found[0]
        if still is None or not isinstance(u, torch.Tensor) or not u.is_floating_point() \
                or _no_zero(u):
            return fn(u, *args)
        keep = still(v, u)
        moved = fn(torch.where(keep, 1.0, u), *args)
        if not callable(exponent):          # sqrt(0) = 0^c = 0
            return torch.where(keep, 0.0, moved)
        return torch.where(keep, fn(u.detach(), e.detach()), moved)   # 0^v, v held
    return node


def _no_zero(u: torch.Tensor) -> bool:
    """Whether ``u`` is nowhere 0 (then no point is at a cusp: the plain node, at the cost
    of one comparison); False where that cannot be asked (under ``vmap``, which allows no
    branch on a tensor's values: the rule is then applied everywhere)."""
    try:
        return not bool((u == 0).any())
    except RuntimeError:
        return False
