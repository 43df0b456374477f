"""Expressions linear in their parameters, read as a design matrix.

``a*x^2 + b*x + c`` is ``[x^2, x, 1] @ [a, b, c]``: a sum of terms, each a parameter times a
function of the inputs alone (or no parameter at all). For such a model one matrix product
``theta @ Phi`` (``Phi`` of shape ``(P, n)``, computed once per data set) replaces the whole
expression, forward and backward, in the fit loop and for a batch of parameter sets alike.

    >>> from gradfit.expr import parse_expression
    >>> form = linear_form(parse_expression("a*x^2 - b*x/2 + c + sin(x)"))
    >>> [(name, e.text) for name, e in form.basis]
    [('a', '(1.0 * x ** 2)'), ('b', '-(1.0 * x / 2)'), ('c', '(1.0)')]
    >>> form.offset.text
    '(sin(x))'
    >>> linear_form(parse_expression("a*exp(-k*x)")) is None
    True

Only terms whose parameter sits under products, quotients (as numerator) and signs count;
anything else (a parameter in a power, a function, a nested sum, twice in one term) leaves
the expression to the general evaluator.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

import torch

from .expr import CONSTANTS, FUNCTIONS, Expression, parse_expression, parse_source


@dataclass(frozen=True)
class LinearForm:
    """``f(x, theta) = sum_k theta_k * basis_k(x) + offset(x)``."""

    basis: tuple[tuple[str, Expression], ...]     # in the order of the expression's params
    offset: Expression | None

    def design(self, env: dict[str, torch.Tensor], n: int, like: torch.Tensor):
        """``Phi`` ``(P, n)`` and the offset ``(n,)`` (or None) for the inputs in ``env``."""
        with torch.no_grad():
            cols = [_full(e(env), n, like) for _, e in self.basis]
            offset = None if self.offset is None else _full(self.offset(env), n, like)
        return torch.stack(cols), offset


def _full(t: torch.Tensor, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(t, dtype=like.dtype, device=like.device).expand(n).contiguous()


def _terms(node: ast.AST, sign: int = 1):
    """The signed terms of a sum, left to right (without recursion: a chain of sums may be
    as long as the text)."""
    stack = [(node, sign)]
    while stack:
        node, sign = stack.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            stack.append((node.right, sign if isinstance(node.op, ast.Add) else -sign))
            stack.append((node.left, sign))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            stack.append((node.operand, -sign if isinstance(node.op, ast.USub) else sign))
        else:
            yield sign, node


def _linear_in(node: ast.AST, name: str) -> bool:
    """True when ``node`` is ``name`` times (or over) things free of it."""
    if isinstance(node, ast.Name):
        return node.id == name
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _linear_in(node.operand, name)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
        left = any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node.left))
        return _linear_in(node.left if left else node.right, name)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return _linear_in(node.left, name)
    return False


class _One(ast.NodeTransformer):
    def __init__(self, name: str):
        self.name = name

    def visit_Name(self, node):
        return ast.Constant(1.0) if node.id == self.name else node


def linear_form(expr: Expression) -> LinearForm | None:
    """The expression as a design matrix, or None when it is not linear in its parameters
    (or when its text is too long a chain for ``ast.unparse``'s recursion: a product of 400
    factors, which the expression itself evaluates as one flat chain)."""
    if not expr.params:
        return None
    try:
        return _linear_form(expr)
    except RecursionError:
        return None


def _linear_form(expr: Expression) -> LinearForm | None:
    free = set(expr.params)
    basis: dict[str, list[str]] = {}
    offset: list[str] = []
    for sign, node in _terms(parse_source(expr.source).body):
        used = [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in free]
        text = ("-" if sign < 0 else "") + "(" + ast.unparse(node) + ")"
        if not used:
            offset.append(text)
            continue
        if len(used) != 1 or not _linear_in(node, used[0]):
            return None
        rest = ast.unparse(_One(used[0]).visit(node))
        basis.setdefault(used[0], []).append(("-" if sign < 0 else "") + "(" + rest + ")")
    inputs = expr.inputs

    def compile_(parts):
        return parse_expression(" + ".join(parts), inputs)
    try:
        return LinearForm(tuple((p, compile_(basis[p])) for p in expr.params),
                          compile_(offset) if offset else None)
    except Exception:           # a term too long or deep once re-joined: stay general
        return None


__all__ = ["LinearForm", "linear_form", "CONSTANTS", "FUNCTIONS"]
