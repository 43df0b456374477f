"""Exact Jacobians of text expressions: forward-mode rules applied once, when the
expression is read, giving a straight-line program that yields the value and every
derivative in one run.

Reading the (already checked) tree bottom-up, each node gets a value node and, for each
parameter ``p_j`` it depends on, a tangent ``d value / d p_j`` kept as a sum of products
``c * f_1 * f_2 * ...`` of a number ``c`` and value nodes ``f``. The rules:

    (u v)' = u' v + u v'      (u / v)' = u' (1/v) + v' w (-1/v)     (u^c)' = u' c u^(c-1)
    (u^v)' = u' v u^(v-1) + v' xlogy(w, u)  f(u)' = u' f'(u)   (exp: w, log: 1/u, sin: cos u,
    cos: -sin u, tan: 1 + w^2, sqrt: 0.5/w, abs: sign u, tanh: 1 - w^2, sigmoid: w (1 - w),
    relu: [u > 0], atan: 1 / (1 + u^2))

with ``w`` the node's value. Where a slope is infinite at a cusp (``sqrt``, ``u^c`` for
c < 1, at u = 0), ``u' f'(u)`` is 0 where ``u'`` is 0 (``sqrt(x*(x+c))`` at x = 0 is 0 for
every c), not 0 * inf = NaN; where ``u'`` is not 0 it stays infinite, as it is
(``infinite_slope`` names that part). A product is formed only at the end, small factors first:
a node that depends on parameters and numbers alone is "small" (one value per problem,
shaped ``(k, 1)``), one that depends on an input is "large" (``(k, n)``), so each
derivative costs one pass over the data per large factor. For a Gaussian
``A*exp(-(x-mu)^2/(2*s^2))+C`` that is 5 passes for the value and 4 for the derivatives.
Equal nodes are made once (common subexpressions), parts made of numbers alone are folded,
and a value is released after its last use. ``min`` and ``max`` are left to autograd
(``supports`` says False). The tree is read with ``ast`` from the checked source (nothing is
evaluated as code), without recursion, so any tree the checker accepts is safe.

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
import functools
import math  # noqa: F401  (the doctest)
import operator

import torch

from .expr import CONSTANTS, Expression, parse_source

_FN = {"exp": torch.exp, "log": torch.log, "sin": torch.sin, "cos": torch.cos,
       "tan": torch.tan, "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh,
       "sigmoid": torch.sigmoid, "relu": torch.relu, "atan": torch.atan, "arctan": torch.atan,
       "sign": torch.sign, "step": lambda u: (u > 0).to(u.dtype)}
_OPS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul,
        "div": operator.truediv, "neg": operator.neg, "pow": operator.pow,
        "xlogy": torch.xlogy, "powgrad": lambda u, v: _powgrad(u, v),
        "mul0": lambda t, s: _mul0(t, s), **_FN}


def _mul0(t, s):
    """``t * s``, 0 where ``t = 0``: the chain rule ``u' f'(u)`` at a cusp (``sqrt``, ``u^c``
    with c < 1, ``f'(0)`` infinite) where ``u`` does not move (``sqrt(x*(x+c))`` at x = 0:
    0 for every c, so its derivative in c is 0, not 0 * inf = NaN). Where ``u'`` is not 0
    the product stays infinite: that derivative is (``sqrt(x - c)`` at x = c). Autograd
    takes the same rule point by point (``at_rest``)."""
    return torch.where(t == 0, 0.0, t * s)


def at_rest(u, tangents) -> torch.Tensor:
    """Where a cusp's argument ``u`` is 0 and no parameter moves it (every tangent
    ``d u / d p_j`` is 0): there each derivative through the cusp is ``_mul0``'s 0, which
    the compiled expression gives autograd (``expr_cusp``) instead of 0 * inf = NaN."""
    keep = u == 0
    for t in tangents:
        keep = keep & (torch.as_tensor(t) == 0)
    return keep


def _powgrad(u, v):
    """``d u^v / d u = v u^(v-1)``: infinite at ``u = 0`` for ``0 < v < 1`` (a cusp, which
    ``_cusp`` takes through ``_mul0``), and 0 for ``v = 0`` (``u^0 = 1``, not 0 * u^-1)."""
    out = v * u ** (v - 1)
    return torch.where(v == 0, 0.0, out) if isinstance(v, torch.Tensor) else out


_INTO = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
         **{k: v for k, v in _FN.items() if k not in ("step", "relu")},  # the same, with
         "relu": lambda u, out: torch.clamp_min(u, 0.0, out=out)}        # ``out=`` (relu has none)
_BIN = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_UNARY = ("exp", "log", "sin", "cos", "tan", "sqrt", "abs", "tanh", "sigmoid", "relu",
          "atan", "arctan")


def supports(expression) -> bool:
    """Whether every node of ``expression`` has a rule here."""
    return _supports(expression.source)


#: how a fit differentiates a text expression that ``supports`` covers (``jacobian_kind``)
FORWARD_MODE = "the expression's derivative rules (forward mode)"


def jacobian_kind(model, kind: str = "autograd") -> str:
    """How a fit takes the Jacobian of ``model``: ``FORWARD_MODE`` for a text expression
    every node of which has a rule here (LM's and IRLS's steps, and every fit's standard
    errors, are made by this program: ``lm.problem_jacobian``, ``block_moments``,
    ``many_problem``), else ``kind``, what the model says of itself (``autograd``, a
    user's ``jac`` or finite differences)."""
    expression = getattr(model, "expression", None)
    return FORWARD_MODE if isinstance(expression, Expression) and supports(expression) \
        else kind


@functools.lru_cache(maxsize=256)
def _supports(source: str) -> bool:
    tree = parse_source(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (not isinstance(node.func, ast.Name)
                                           or node.func.id not in _UNARY):
            return False
        if isinstance(node, ast.BinOp) and type(node.op) not in _BIN:
            return False
        if isinstance(node, ast.UnaryOp) and not isinstance(node.op, (ast.USub, ast.UAdd)):
            return False
    return True


class _Graph:
    """Value nodes, each made once: ``("const", c)``, ``("input", name)``,
    ``("param", j)`` or ``(op, arg ids...)``; ``const[i]`` is the number of a folded node
    (else None), ``large[i]`` whether it depends on an input, ``varies[i]`` whether on a
    parameter; ``full(i)``: both, so that it has the block's shape ``(k, n)``."""

    def __init__(self):
        self.nodes: list[tuple] = []
        self.const: list[float | None] = []
        self.large: list[bool] = []
        self.varies: list[bool] = []        # depends on a parameter
        self._ids: dict[tuple, int] = {}

    def _add(self, key: tuple, const, large: bool, varies: bool) -> int:
        i = self._ids.get(key)
        if i is None:
            i = self._ids[key] = len(self.nodes)
            self.nodes.append(key)
            self.const.append(const)
            self.large.append(large)
            self.varies.append(varies)
        return i

    def full(self, i: int) -> bool:
        return self.large[i] and self.varies[i]

    def number(self, c: float) -> int:
        return self._add(("const", repr(float(c))), float(c), False, False)

    def leaf(self, kind: str, name) -> int:
        return self._add((kind, name), None, kind == "input", kind == "param")

    def op(self, name: str, *args: int) -> int:
        consts = [self.const[a] for a in args]
        if all(c is not None for c in consts):          # numbers alone: fold, as torch would
            with torch.no_grad():
                v = _OPS[name](*(torch.tensor(c, dtype=torch.float64) for c in consts))
            return self.number(float(v))
        if name == "mul" and 1.0 in consts:             # 1 * u = u
            return args[1 - consts.index(1.0)]
        return self._add((name,) + args, None, any(self.large[a] for a in args),
                         any(self.varies[a] for a in args))


class _Tangents:
    """The derivatives of one node: ``{j: [(c, (f_1, f_2, ...)), ...]}`` (sums of products)."""

    @staticmethod
    def scale(t: dict, g: _Graph, f: int) -> dict:
        c = g.const[f]
        if c is not None:
            return {j: [(k * c, fs) for k, fs in terms] for j, terms in t.items()}
        return {j: [(k, fs + (f,)) for k, fs in terms] for j, terms in t.items()}

    @staticmethod
    def add(a: dict, b: dict, sign: float = 1.0) -> dict:
        out = dict(a)
        for j, terms in b.items():
            out[j] = out.get(j, []) + [(sign * k, fs) for k, fs in terms]
        return out


def _build(tree: ast.AST, params: tuple, inputs: tuple, g: _Graph):
    """The value node and tangents of ``tree`` (post-order, with an explicit stack)."""
    T = _Tangents
    done: dict[int, tuple] = {}
    stack = [(tree, False)]
    while stack:
        node, ready = stack.pop()
        kids = [node.operand] if isinstance(node, ast.UnaryOp) else \
            [node.left, node.right] if isinstance(node, ast.BinOp) else \
            [node.args[0]] if isinstance(node, ast.Call) else []
        if not ready and kids:
            stack.append((node, True))
            stack.extend((k, False) for k in reversed(kids))
            continue
        if isinstance(node, ast.Constant):
            out = g.number(node.value), {}
        elif isinstance(node, ast.Name):
            if node.id in params:
                j = params.index(node.id)
                out = g.leaf("param", j), {j: [(1.0, ())]}
            elif node.id in inputs:
                out = g.leaf("input", node.id), {}
            else:
                out = g.number(CONSTANTS[node.id]), {}
        elif isinstance(node, ast.UnaryOp):
            v, t = done.pop(id(node.operand))
            out = (g.op("neg", v), T.scale(t, g, g.number(-1.0))) \
                if isinstance(node.op, ast.USub) else (v, t)
        elif isinstance(node, ast.Call):
            u, t = done.pop(id(node.args[0]))
            out = _call(node.func.id, u, t, g)
        else:
            a, ta = done.pop(id(node.left))
            b, tb = done.pop(id(node.right))
            out = _binary(_BIN[type(node.op)], a, ta, b, tb, g)
        done[id(node)] = out
    return done[id(tree)]


def _call(name: str, u: int, t: dict, g: _Graph):
    T, w = _Tangents, g.op(name, u)
    if not t:
        return w, t
    one = g.number(1.0)
    slope = {"exp": lambda: w, "log": lambda: g.op("div", one, u),
             "sin": lambda: g.op("cos", u), "cos": lambda: g.op("neg", g.op("sin", u)),
             "tan": lambda: g.op("add", one, g.op("mul", w, w)),
             "sqrt": lambda: g.op("div", g.number(0.5), w), "abs": lambda: g.op("sign", u),
             "tanh": lambda: g.op("sub", one, g.op("mul", w, w)),
             "sigmoid": lambda: g.op("mul", w, g.op("sub", one, w)),
             "relu": lambda: g.op("step", u),
             "atan": lambda: g.op("div", one, g.op("add", one, g.op("mul", u, u)))}
    slope["arctan"] = slope["atan"]
    if name == "sqrt":          # 0.5/w is infinite at u = 0
        return w, _cusp(t, g, slope[name]())
    return w, T.scale(t, g, slope[name]())


def _cusp(t: dict, g: _Graph, s: int) -> dict:
    """``t`` scaled by a slope ``s`` that is infinite where the argument is 0 (``sqrt``,
    ``u^c`` with c < 1): each derivative is made a node and multiplied by ``mul0``."""
    out = {}
    for j, terms in t.items():
        tj = _sum(g, terms)
        if g.const[tj] is None:
            out[j] = [(1.0, (g.op("mul0", tj, s),))]
        elif g.const[tj] != 0.0:
            out[j] = [(g.const[tj], (s,))]
    return out


def _binary(op: str, a: int, ta: dict, b: int, tb: dict, g: _Graph):
    T, w = _Tangents, g.op(op, a, b)
    if op in ("add", "sub"):
        return w, T.add(ta, tb, 1.0 if op == "add" else -1.0)
    if op == "mul":
        return w, T.add(T.scale(ta, g, b), T.scale(tb, g, a))
    if op == "div":
        t = T.scale(ta, g, g.op("div", g.number(1.0), b))
        return w, T.add(t, T.scale(T.scale(tb, g, w), g, g.op("div", g.number(-1.0), b)))
    t = {}                                          # pow
    c = g.const[b]
    if ta and not tb and c == 0.0:      # u^0 = 1 (its derivative 0, not 0 * u^-1)
        pass
    elif ta and not tb and c is not None and c >= 1.0:    # a number: c u^(c-1) is finite
        t = T.scale(T.scale(ta, g, b), g, a if c == 2.0 else
                    g.op("pow", a, g.op("sub", b, g.number(1.0))))
    elif ta:     # c < 1, an input or a parameter: v u^(v-1) is infinite at u = 0 (a cusp):
        t = _cusp(ta, g, g.op("powgrad", a, b))  # 0 where u does not move ((x/c)^h at x = 0),
        # infinite where it does ((x - c)^h at x = c, h < 1: it had been taken as 0)
    if tb and g.const[a] == 0.0:    # 0^v = 0 for every v > 0: its derivative is 0
        pass
    elif tb:     # w log u, as xlogy: 0 where w = 0 (x^h at x = 0: 0, not 0 * -inf = NaN)
        wlog = g.op("mul", w, g.op("log", a)) if g.const[a] is not None else g.op("xlogy", w, a)
        t = T.add(t, T.scale(tb, g, wlog))
    return w, t


def _product(g: _Graph, c: float, factors: tuple) -> int:
    """``c * f_1 * f_2 * ...`` with the small factors multiplied first."""
    small = sorted(f for f in factors if not g.large[f])
    large = sorted(f for f in factors if g.large[f])
    out = g.number(c)
    for f in small + large:
        out = g.op("mul", out, f) if g.const[out] != 1.0 else f
    return out


def _sum(g: _Graph, terms: list) -> int:
    """The sum of the products, small ones first."""
    parts = sorted((_product(g, c, fs) for c, fs in terms), key=lambda i: g.large[i])
    out = parts[0]
    for p in parts[1:]:
        out = g.op("add", out, p)
    return out


class _Program:
    def __init__(self, source: str, params: tuple, inputs: tuple):
        g, self.params = _Graph(), params
        value, tangents = _build(parse_source(source).body, params, inputs, g)
        self.outputs = [value] + [_sum(g, tangents[j]) if j in tangents else None
                                  for j in range(len(params))]
        self._compile(g)

    def _compile(self, g: _Graph) -> None:
        """The steps that reach the outputs, in order, each with the values it releases."""
        need = [False] * len(g.nodes)
        for o in self.outputs:
            if o is not None:
                need[o] = True
        for i in reversed(range(len(g.nodes))):
            key = g.nodes[i]
            if need[i] and key[0] in _OPS:
                for a in key[1:]:
                    need[a] = True
        last = {}
        for i, key in enumerate(g.nodes):
            if need[i] and key[0] in _OPS:
                for a in key[1:]:
                    last[a] = i
        keep = {o for o in self.outputs if o is not None}
        # a derivative made by a last step of the block's shape is written into its row
        into = {}
        for j, o in enumerate(self.outputs[1:]):
            key = g.nodes[o] if o is not None else ("const",)
            if key[0] in _INTO and g.full(o) and o not in into and \
                    (len(key) == 2 or g.const[key[1]] is None):
                into[o] = j
        self.copy = [(j, o) for j, o in enumerate(self.outputs[1:]) if into.get(o) != j]
        self.size = len(g.nodes)
        self.consts = [(i, c) for i, c in enumerate(g.const) if need[i] and c is not None]
        self.leaves = [(i, key[0], key[1]) for i, key in enumerate(g.nodes)
                       if need[i] and key[0] in ("param", "input")]
        self.steps = []
        for i, key in enumerate(g.nodes):
            if need[i] and key[0] in _OPS:
                free = tuple(a for a in set(key[1:]) if last.get(a) == i and a not in keep
                             and g.const[a] is None)
                fn = _INTO[key[0]] if i in into else _OPS[key[0]]
                self.steps.append((fn, key[1:], i, free, into.get(i), _OPS[key[0]]))

    def run(self, values: dict) -> list:
        """The value and the derivatives (None for a parameter not used), without writing
        into a block (``out=``), from ``values``: a name -> tensor for every input and
        parameter, of any shapes that broadcast (the compiled expression's)."""
        vals: list = [None] * self.size
        for i, c in self.consts:
            vals[i] = c
        for i, kind, name in self.leaves:
            vals[i] = values[self.params[name] if kind == "param" else name]
        for _, args, i, free, _, fn in self.steps:
            vals[i] = fn(*[vals[a] for a in args])
            for a in free:
                vals[a] = None
        return [None if o is None else vals[o] for o in self.outputs]



class ExpressionJacobian:
    """``(inputs, theta (k, P)) -> (f (k, n), J (k, n, P))`` for one expression."""

    def __init__(self, expression):
        self.params = expression.params
        self.inputs = expression.inputs
        # the program is made once per text and names (immutable, shared)
        self.__dict__.update(_program(expression.source, tuple(self.params),
                                      tuple(self.inputs)).__dict__)

    def __call__(self, inputs: dict, theta: torch.Tensor, y: torch.Tensor | None = None):
        """``f`` and ``J`` at ``theta`` ``(k, P)``; given targets ``y``, the block
        ``[J f-y]^T`` ``(k, P+1, n)`` instead (one tensor, as ``batch_lm`` takes it).
        ``J`` comes transposed in memory (rows of ``J^T`` contiguous)."""
        cols = theta.unsqueeze(-1).unbind(-2)          # P tensors (k, 1)
        ref = next(iter(inputs.values()))
        shape = theta.shape[:-1] + ref.shape[-1:]
        P = len(self.params)
        out = torch.empty(shape[:-1] + (P + (y is not None), shape[-1]), dtype=theta.dtype,
                          device=theta.device)
        vals: list = [None] * self.size
        for i, c in self.consts:
            vals[i] = c
        for i, kind, name in self.leaves:
            vals[i] = cols[name] if kind == "param" else inputs[name]
        for fn, args, i, free, row, _ in self.steps:
            if row is None:
                vals[i] = fn(*[vals[a] for a in args])
            else:                                   # straight into the block
                vals[i] = fn(*[vals[a] for a in args], out=out[..., row, :])
            for a in free:
                vals[a] = None
        for j, o in self.copy:                      # in place: no stack of broadcast views
            out[..., j, :] = 0.0 if o is None else vals[o]
        value = vals[self.outputs[0]]
        if y is not None:
            torch.sub(torch.as_tensor(value, dtype=theta.dtype, device=theta.device), y,
                      out=out[..., P, :])
            return out
        value = torch.as_tensor(value, dtype=theta.dtype, device=theta.device).expand(shape)
        return value, out.transpose(-1, -2)


@functools.lru_cache(maxsize=256)
def _program(source: str, params: tuple, inputs: tuple) -> _Program:
    return _Program(source, params, inputs)


def resting(source: str, params: tuple, inputs: tuple):
    """``(values, u) -> at_rest mask`` for the cusp argument ``source`` (its ``params``
    and ``inputs``; ``values`` a name -> tensor for each, ``u`` its value), by the tangents
    of the forward program, or where it has no rule (min, max) by ``torch.func.jvp``, one
    parameter at a time (their ties split a tangent as autograd splits a gradient)."""
    tangents = _program(source, params, inputs).run if _supports(source) else \
        _by_jvp(source, params, inputs)

    def mask(values, u):
        with torch.no_grad():
            own = {n: values[n] for n in params + inputs if n in values}
            return at_rest(u, [t for t in tangents(own)[1:] if t is not None])
    return mask


def _by_jvp(source: str, params: tuple, inputs: tuple):
    """``values -> [u, d u / d p_1, ...]`` by forward-mode autograd on the expression."""
    from .expr import parse_expression
    expression = parse_expression(source, inputs=inputs)

    def run(values):
        out = [None]
        for p in params:
            def f(t, p=p):
                return expression({**values, p: t})
            v = values[p]
            out.append(torch.func.jvp(f, (v.detach(),), (torch.ones_like(v),))[1])
        return out
    return run


def infinite_slope(expression, inputs: dict, theta: torch.Tensor) -> str | None:
    """What makes a derivative of ``expression`` not finite at ``theta`` ``(P,)``: the first
    ``sqrt(u)``, ``u^c`` (a number 0 < c < 1) or ``u^v`` (v between 0 and 1 there) whose
    argument ``u`` is 0 at a data point and moves with a parameter there, named with the
    point (``inputs``: name -> ``(n,)``); else None. That derivative is infinite
    (``sqrt(x - c)`` at x = c: no fit through it has a finite slope). Where ``u`` does not
    move (``at_rest``), the derivative is its limit, 0, in the Jacobian and in autograd
    alike: nothing to name."""
    from .expr import parse_expression
    tree = parse_source(expression.source)
    values = dict(zip(expression.params, theta.reshape(-1).unbind()))
    ref = next(iter(inputs.values()))
    for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "col_offset", -1)):
        found = _cusp_argument(node, expression)
        if found is None:
            continue
        arg, power = found
        inner = ast.get_source_segment(expression.source, arg).replace("**", "^")
        sub = parse_expression(inner, inputs=expression.inputs)
        if not sub.params:
            continue
        th = torch.stack([values[p] for p in sub.params])
        env = {**inputs, **{p: values[p] for p in sub.params}}
        with torch.no_grad():
            u = sub(env).expand(ref.shape[-1:])
            zero = (u == 0) & _below_one(power, expression, {**inputs, **values}, ref)
        if not bool(zero.any()):
            continue
        jac = ExpressionJacobian(sub)(inputs, th[None])[1][0] if supports(sub) else \
            torch.func.jacfwd(lambda t: sub({**inputs, **dict(zip(sub.params, t.unbind()))})
                              .expand(ref.shape[-1:]))(th)
        at = zero & ~at_rest(u, jac.unbind(-1))
        if bool(at.any()):
            part = ast.get_source_segment(expression.source, node).replace("**", "^")
            which = ", ".join(p for j, p in enumerate(sub.params) if bool((jac[at, j] != 0).any()))
            return (f"{part} has an infinite slope where {inner} is 0, as at "
                    f"{_point(at, inputs, sub)}: the model's derivative in {which} is infinite "
                    "there")
    return None


def _point(at: torch.Tensor, inputs: dict, sub) -> str:
    """``point 3 (x = 0.5) and 2 other point(s)``: the first point of ``at`` and a count."""
    i = int(at.nonzero()[0, 0])
    where = ", ".join(f"{n} = {float(v[i]):g}" for n, v in inputs.items()
                      if n in sub.used_inputs or len(inputs) == 1)
    more = int(at.sum()) - 1
    return f"point {i + 1} ({where})" + (f" and {more} other point(s)" if more else "")


def _below_one(power, expression, env: dict, ref: torch.Tensor):
    """Where the exponent ``power`` (an ast node; None for sqrt and a number) is strictly
    between 0 and 1, where ``u^v`` has an infinite slope at ``u = 0``: ``(n,)`` or True."""
    if power is None:
        return True
    from .expr import parse_expression
    text = ast.get_source_segment(expression.source, power).replace("**", "^")
    with torch.no_grad():
        v = parse_expression(text, inputs=expression.inputs)(env)
    return ((v > 0) & (v < 1)).expand(ref.shape[-1:])


def _cusp_argument(node: ast.AST, expression):
    """``(u, None)`` of a ``sqrt(u)`` call or ``u^c`` (a number 0 < c < 1), ``(u, v)`` of a
    ``u^v`` with v not a number; else None."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
            node.func.id == "sqrt":
        return node.args[0], None
    if not (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow)):
        return None
    g = _Graph()
    try:
        c, t = _build(node.right, expression.params, expression.inputs, g)
    except (KeyError, ValueError):
        return None
    c = g.const[c]
    if c is None:
        return node.left, node.right
    return (node.left, None) if 0 < c < 1 else None
