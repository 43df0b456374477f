"""Exact Jacobians of text expressions by forward-mode differentiation on their tree.

Each node of the (already checked) expression is evaluated to a value and its tangents
``{j: d value / d p_j}``, kept sparse: a parameter contributes only where it appears, and
a part that depends on parameters alone stays shaped ``(k, 1)``. The rules:

    (u v)' = u' v + u v'      (u / v)' = (u' - (u/v) v') / v      (u^c)' = c u^(c-1) u'
    (u^v)' = u^v (v' log u + v u' / u)      f(u)' = f'(u) u'  (exp, log, sin, cos, tan,
    sqrt, abs, tanh, sigmoid, relu, atan)

For a Gaussian ``A*exp(-(x-mu)^2/(2*s^2))+C`` this costs about three evaluations of the
model, where reverse-over-reverse autograd costs about fifteen. The tree is read from the
expression's checked source with ``ast`` (nothing is evaluated as code); ``min`` and
``max`` are left to autograd (``supports`` says False).

    >>> import torch
    >>> from gradfit.models import make_model
    >>> m = make_model("a*exp(-b*x)")
    >>> x = torch.tensor([0.0, 1.0], dtype=torch.float64)
    >>> f, jac = ExpressionJacobian(m.expression)({"x": x}, torch.tensor([[2.0, 1.0]], dtype=torch.float64))
    >>> torch.allclose(jac[0, 1], torch.tensor([1 / math.e, -2 / math.e], dtype=torch.float64))
    True
"""
from __future__ import annotations

import ast
import math

import torch

from .expr import CONSTANTS, parse_source

_UNARY = {
    "exp": lambda u, w: w, "log": lambda u, w: 1.0 / u, "sin": lambda u, w: torch.cos(u),
    "cos": lambda u, w: -torch.sin(u), "tan": lambda u, w: 1.0 + w * w,
    "sqrt": lambda u, w: 0.5 / w, "abs": lambda u, w: torch.sign(u),
    "tanh": lambda u, w: 1.0 - w * w, "sigmoid": lambda u, w: w * (1.0 - w),
    "relu": lambda u, w: (u > 0).to(w.dtype), "atan": lambda u, w: 1.0 / (1.0 + u * u),
    "arctan": lambda u, w: 1.0 / (1.0 + u * u),
}
_FN = {"exp": torch.exp, "log": torch.log, "sin": torch.sin, "cos": torch.cos,
       "tan": torch.tan, "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh,
       "sigmoid": torch.sigmoid, "relu": torch.relu, "atan": torch.atan, "arctan": torch.atan}


def supports(expression) -> bool:
    """Whether every node of ``expression`` has a rule here."""
    tree = parse_source(expression.source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name)
                                           or node.func.id not in _UNARY):
            return False
        if isinstance(node, (ast.BinOp,)) and not isinstance(
                node.op, (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow)):
            return False
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd)):
            return False
    return True


def _scale(t: dict, c) -> dict:
    if not isinstance(c, torch.Tensor) and c == 1.0:
        return t
    return {j: c if not isinstance(v, torch.Tensor) and v == 1.0 else v * c
            for j, v in t.items()}


def _times(v, c):
    """``v * c`` where either may be a number; numbers multiply first."""
    if not isinstance(v, torch.Tensor) and not isinstance(c, torch.Tensor):
        return float(v) * float(c)
    return v * c


def _add(a: dict, b: dict, sign: float = 1.0) -> dict:
    out = dict(a)
    for j, v in b.items():
        out[j] = out[j] + v if sign > 0 and j in out else out[j] - v if j in out else (
            v if sign > 0 else -v)
    return out


class ExpressionJacobian:
    """``(inputs, theta (k, P)) -> (f (k, n), J (k, n, P))`` for one expression."""

    def __init__(self, expression):
        self.tree = parse_source(expression.source).body
        self.params = expression.params
        self.inputs = expression.inputs

    def __call__(self, inputs: dict, theta: torch.Tensor, y: torch.Tensor | None = None):
        """``f`` and ``J`` at ``theta`` ``(k, P)``; given targets ``y``, the block
        ``[J f-y]^T`` ``(k, P+1, n)`` instead (one tensor, as ``batch_lm`` takes it).
        ``J`` comes transposed in memory (rows of ``J^T`` contiguous)."""
        cols = theta.unsqueeze(-1).unbind(-2)          # P tensors (k, 1)
        self.env = dict(inputs)
        self.env.update((name, (c, {j: 1.0})) for j, (name, c) in
                        enumerate(zip(self.params, cols)))
        value, tangents = self._eval(self.tree)
        ref = next(iter(inputs.values()))
        shape = theta.shape[:-1] + ref.shape[-1:]
        P = len(self.params)
        out = torch.empty(shape[:-1] + (P + (y is not None), shape[-1]), dtype=theta.dtype,
                          device=theta.device)
        for j in range(P):                   # filled in place: no stack of broadcast views
            out[..., j, :] = tangents.get(j, 0.0)
        if y is not None:
            torch.sub(torch.as_tensor(value, dtype=theta.dtype, device=theta.device), y,
                      out=out[..., P, :])
            return out
        value = torch.as_tensor(value, dtype=theta.dtype, device=theta.device).expand(shape)
        return value, out.transpose(-1, -2)

    def _eval(self, node):
        if isinstance(node, ast.Constant):
            return float(node.value), {}
        if isinstance(node, ast.Name):
            if node.id in self.env:
                v = self.env[node.id]
                return v if isinstance(v, tuple) else (v, {})
            return float(CONSTANTS[node.id]), {}
        if isinstance(node, ast.UnaryOp):
            v, t = self._eval(node.operand)
            return (-v, _scale(t, -1.0)) if isinstance(node.op, ast.USub) else (v, t)
        if isinstance(node, ast.Call):
            u, t = self._eval(node.args[0])
            name = node.func.id
            if not isinstance(u, torch.Tensor):
                u = torch.tensor(u, dtype=torch.float64)
            w = _FN[name](u)
            return w, (_scale(t, _UNARY[name](u, w)) if t else {})
        a, ta = self._eval(node.left)
        b, tb = self._eval(node.right)
        op = node.op
        if isinstance(op, ast.Add):
            return a + b, _add(ta, tb)
        if isinstance(op, ast.Sub):
            return a - b, _add(ta, tb, -1.0)
        if isinstance(op, ast.Mult):
            return a * b, _add(_scale(ta, b), _scale(tb, a))
        if isinstance(op, ast.Div):
            # (u/v)' = u'/v - w (v'/v): the small factors (v'/v, shaped like the
            # parameters) first, so that each tangent costs one pass over the data
            w = a / b
            t = {j: v / b for j, v in ta.items()}
            for j, v in tb.items():
                c = w * _times(v, -1.0 / b)
                t[j] = t[j] + c if j in t else c
            return w, t
        return self._pow(a, ta, b, tb)

    @staticmethod
    def _pow(a, ta, b, tb):
        if not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor):
            a = torch.tensor(a, dtype=torch.float64)
        w = a ** b
        t = {}
        if ta and not tb:            # a constant exponent (a number, or an input)
            if not isinstance(b, torch.Tensor) and b == 2.0:
                t = {j: _times(v, 2.0) * a for j, v in ta.items()}
            else:
                t = _scale(ta, b * a ** (b - 1))
        elif ta:
            t = _scale(ta, w * b / a)
        if tb:
            log_a = torch.log(a) if isinstance(a, torch.Tensor) else math.log(a)
            t = _add(t, _scale(tb, w * log_a))
        return w, t
