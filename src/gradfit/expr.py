"""Text expressions to torch functions, through a whitelist over Python's ``ast``.

The text is read with ``ast.parse(..., mode="eval")`` and checked node by node; it is
never evaluated by Python. The grammar, and nothing else::

    expr   := expr ('+' | '-') expr | expr ('*' | '/') expr | expr ('**' | '^') expr
            | ('+' | '-') expr | '(' expr ')' | number | name | call
    number := a literal such as 2, 0.5, 1e-3 (every number becomes a float)
    name   := an input (``x`` by default), a constant (``pi``, ``e``), else a parameter
    call   := sin cos tan exp log sqrt abs tanh sigmoid relu arctan atan '(' expr ')'
            | min max '(' expr ',' expr {',' expr} ')'

``^`` is power, like ``**``; precedence is Python's, so ``-x^2`` is ``-(x^2)``. Names may
not start with ``_``. Parameters are listed in order of first appearance. The text is
compiled once into a tree of small closures that call torch, so it runs fast, keeps
autograd and works under ``torch.func`` (vmap, jacrev).

>>> f = parse_expression("a*x^2 + b")
>>> f.params, f.used_inputs
(('a', 'b'), ('x',))
>>> f({"x": torch.tensor([1.0, 2.0]), "a": torch.tensor(2.0), "b": torch.tensor(1.0)})
tensor([3., 9.])
>>> parse_expression("a*x + foo(x)")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
gradfit.errors.ExpressionError: unknown function 'foo' at column 7: expected one of ...
"""
from __future__ import annotations

import ast
import math
import operator
import re
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from gradfit.errors import ExpressionError
from gradfit.expr_cusp import cusp
from gradfit.expr_names import (CONSTANTS, folding_advice, folding_problem, juxtaposed,
                                keyword_problem)

_PARSE_LOCK = threading.Lock()


def parse_source(src: str) -> ast.Expression:
    """``ast.parse(src, mode="eval")``, one at a time: CPython 3.11's parser is not safe in
    concurrent threads (a server's workers fail with "AST constructor recursion depth
    mismatch")."""
    with _PARSE_LOCK:
        return ast.parse(src, mode="eval")


FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sin": torch.sin, "cos": torch.cos, "tan": torch.tan, "exp": torch.exp,
    "log": torch.log, "sqrt": torch.sqrt, "abs": torch.abs, "tanh": torch.tanh,
    "sigmoid": torch.sigmoid, "relu": torch.relu, "arctan": torch.atan, "atan": torch.atan,
    "min": torch.minimum, "max": torch.maximum,
}
"""Functions an expression may call; each takes 1 argument unless named in VARIADIC."""
VARIADIC = frozenset({"min", "max"})  # 2 or more arguments, folded pairwise
FAMILIES = "poly:K, relu:K or mlp:H1,H2 (lower case)"   # models.MODELS, as a user writes them
_DECIMAL = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)  # a number
MAX_LENGTH = 2000   # characters of text
MAX_DEPTH = 60      # nesting of the ast (a chain like a+b-c+... counts once), and of brackets
MAX_NAMES = 200     # distinct parameters

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.Pow: operator.pow}
_GROUP = {ast.Add: 0, ast.Sub: 0, ast.Mult: 1, ast.Div: 1}   # chains flattened into one node
_OP_TEXT = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<",
            ast.RShift: ">>", ast.BitOr: "|", ast.BitAnd: "&", ast.BitXor: "^",
            ast.Invert: "~", ast.Not: "not"}
_CONSTRUCTS = {
    ast.Subscript: "subscript ('[...]')", ast.Slice: "slice", ast.Lambda: "lambda",
    ast.ListComp: "comprehension", ast.SetComp: "comprehension",
    ast.DictComp: "comprehension", ast.GeneratorExp: "comprehension",
    ast.Compare: "comparison", ast.BoolOp: "boolean operator ('and', 'or')",
    ast.IfExp: "conditional expression ('if ... else')", ast.Starred: "starred argument ('*')",
    ast.NamedExpr: "assignment expression (':=')", ast.List: "list ('[...]')",
    ast.Tuple: "tuple", ast.Set: "set ('{...}')", ast.Dict: "dict ('{...}')",
    ast.JoinedStr: "string", ast.Await: "'await'", ast.Yield: "'yield'",
    ast.YieldFrom: "'yield'",
}
_Item = Any   # a float (a constant) or a closure (vals, consts) -> Tensor


class _Compiler:
    """Checks the text and compiles it; one use per Expression."""

    def __init__(self, text: str, inputs: tuple[str, ...]):
        self.text, self.inputs = text, inputs
        self.names: dict[str, int] = {}     # params -> byte offset of first use
        self.used: set[str] = set()
        self.constants: dict[str, None] = {}   # constants used, in order
        self.consts: list[float] = []
        self.hoisted: list[Callable] = []   # subtrees of inputs alone (x**2, sin(x)...)

    def error(self, problem: str, at: int | None = None, expected: str | None = None):
        """An ExpressionError; ``at`` is a byte offset in the translated text."""
        column = None
        if at is not None:
            chars = len(self.tb[:max(at, 0)].decode("utf-8", "ignore"))
            column = self.pos[min(chars, len(self.pos) - 1)] + 1
        return ExpressionError(problem, text=self.text, column=column, expected=expected)

    def run(self) -> Callable:
        text = self.text
        if not isinstance(text, str):
            raise ExpressionError("expression is not text", expected="a string")
        if len(text) > MAX_LENGTH:
            raise ExpressionError(f"expression too long ({len(text)} characters)", text=text,
                                  expected=f"at most {MAX_LENGTH} characters")
        self.scan()
        if not self.src.strip():
            raise ExpressionError("empty expression", text=text,
                                  expected="a formula such as 'a*x + b'")
        tree = self.parse()
        self.check_names(tree)
        self.check_tree(tree)
        root = self.as_fn(self.build(tree.body))
        self.check_constants(tree.body)
        return root

    def check_constants(self, body: ast.AST) -> None:
        """Refuse a part made of numbers alone (``9^9^9``, ``exp(1000)``, ``0*log(0)``)
        that is not a finite number in float64: it is no model at any data point, and is
        named as the part it is, not as a model undefined everywhere."""
        # numbers alone, bottom-up (no recursion; a chain of 1000 terms is one pass)
        order, stack = [], [body]
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(ast.iter_child_nodes(node))
        alone = {}
        for node in reversed(order):            # children before their parents
            if isinstance(node, ast.Name):
                alone[id(node)] = node.id in CONSTANTS
            elif isinstance(node, ast.Call):
                alone[id(node)] = all(alone[id(a)] for a in node.args)
            else:
                alone[id(node)] = all(alone.get(id(c), True) for c in ast.iter_child_nodes(node))
        stack = [body]
        while stack:
            node = stack.pop()
            if not alone[id(node)]:
                stack.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, ast.expr))
                if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Div, ast.Mod)) \
                        and alone[id(node.right)] and self._value(node.right) == 0:
                    # b/0: no model for any b (0/0 at b = 0), as 1/0 is no number
                    part = ast.get_source_segment(self.src, node) or "?"
                    raise self.error(f"the part '{part.replace('**', '^')}' divides by zero",
                                     node.right.col_offset,
                                     expected="a divisor that is not zero")
                continue
            if not isinstance(node, (ast.BinOp, ast.UnaryOp, ast.Call)):
                continue
            value = self._value(node)
            if not bool(torch.isfinite(torch.as_tensor(value)).all()):
                part = ast.get_source_segment(self.src, node) or "?"
                raise self.error(f"the part '{part.replace('**', '^')}' is made of numbers "
                                 f"alone and is not a finite number ({float(value):g})",
                                 node.col_offset,
                                 expected="numbers whose value is finite (below 1.8e308, "
                                          "no division by zero, no log of 0)")

    def _value(self, node: ast.AST) -> float:
        """The float64 value of a part made of numbers alone."""
        sub = _Compiler(self.text, ())
        sub.tb, sub.pos, sub.src = self.tb, self.pos, self.src
        fn = sub.as_fn(sub.build(node))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = fn({}, tuple(torch.tensor(v, dtype=torch.float64) for v in sub.consts))
        return float(torch.as_tensor(value))

    def scan(self) -> None:
        """Refuse odd characters and deep brackets; translate ``^`` to ``**``, line breaks
        to spaces and drop leading space, keeping a map back to the original columns."""
        parts, pos, depth, run = [], [], 0, 0
        for i, ch in enumerate(self.text):
            o, problem, expected = ord(ch), None, None
            if o == 0:
                problem = "null byte in expression"
            elif (o < 32 and ch not in "\t\n\r") or o == 127 or 0xD800 <= o <= 0xDFFF:
                problem = f"invalid character U+{o:04X}"
            elif ch == "#":
                problem = "comment ('#') is not allowed"
            depth = depth + 1 if ch in "([{" else max(depth - 1, 0) if ch in ")]}" else depth
            run = run + 1 if ch in "+-~" else run if ch in " \t\r\n" else 0
            if depth > MAX_DEPTH or run > MAX_DEPTH:
                problem, expected = "expression nested too deeply", f"at most {MAX_DEPTH} levels"
            if problem:
                raise ExpressionError(problem, text=self.text, column=i + 1, expected=expected)
            if not parts and ch in " \t\r\n":
                continue
            parts.append("**" if ch == "^" else " " if ch in "\r\n" else ch)
            pos.extend((i, i) if ch == "^" else (i,))
        self.pos = pos + [len(self.text)]
        self.src = "".join(parts)
        self.tb = self.src.encode("utf-8")

    def parse(self) -> ast.Expression:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return parse_source(self.src)
            except SyntaxError as exc:
                err = exc
            except (RecursionError, MemoryError, ValueError, OverflowError):
                raise ExpressionError("expression too complex to parse", text=self.text,
                                      expected=f"at most {MAX_DEPTH} levels") from None
            try:    # statements parse in exec mode: say which
                with _PARSE_LOCK:
                    body = ast.parse(self.src, mode="exec").body
            except Exception:
                body = []
        if len(body) > 1:
            raise self.error(f"only one expression is allowed, found {len(body)}",
                             body[1].col_offset)
        if body and isinstance(body[0], ast.AnnAssign):     # 'POLY:2', 'a:b'
            at = self.tb.find(b":", body[0].target.end_col_offset)
            raise self.error("':' is not allowed in an expression", at,
                             expected="an expression, or a model family written " + FAMILIES)
        if body and not isinstance(body[0], ast.Expr):
            kind = type(body[0]).__name__.lower().replace("importfrom", "import")
            kind = "assignment" if "assign" in kind else kind
            raise self.error(f"'{kind}' statement is not allowed", body[0].col_offset)
        self.check_keywords()
        self.check_juxtaposed()
        msg = (err.msg or "").split(".")[0]
        if not err.offset or err.offset < 1:    # Python's mark for the end of the text
            msg = "unexpected end of expression" if msg == "invalid syntax" else msg
        problem = "invalid syntax" + ("" if msg in ("", "invalid syntax") else f" ({msg})")
        chars = len(self.src) if not err.offset or err.offset < 1 else err.offset - 1
        chars = min(chars, len(self.src))
        raise self.error(problem, len(self.src[:chars].encode("utf-8"))) from None

    def check_keywords(self) -> None:
        """After a syntax error: a Python keyword written as a name (``keyword_problem``)."""
        found = keyword_problem(self.src)
        if found:
            raise self.error(found[0], len(self.src[:found[1]].encode("utf-8")),
                             expected=found[2])

    def check_juxtaposed(self) -> None:
        """After a syntax error: a product written without ``*`` (``juxtaposed``)."""
        found = juxtaposed(self.src, FUNCTIONS)
        if found:
            raise self.error(found[0], len(self.src[:found[1]].encode("utf-8")),
                             expected=found[2])

    def check_names(self, tree: ast.Expression) -> None:
        """Refuse a name that Python reads as another (``folding_problem``): ``µ`` had become
        the parameter ``μ``, which ``p0={"µ": 2}`` then did not name, and ``ℯ`` the
        constant e, without a word."""
        if self.src.isascii():
            return
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                raw = self.tb[node.col_offset:node.end_col_offset].decode("utf-8", "replace")
                if raw != node.id:
                    raise self.error(folding_problem(raw) or f"name {raw!r} is not allowed",
                                     node.col_offset, expected=folding_advice(raw))

    def check_tree(self, tree: ast.Expression) -> None:
        """Depth (without recursion, so any tree is safe) and unknown functions."""
        stack = [(tree.body, 1, 0)]
        while stack:
            node, depth, at = stack.pop()
            at = getattr(node, "col_offset", at)
            # a leaf is no level: 60 minus signs before x are 60 levels, as 60 brackets are
            if depth > MAX_DEPTH and isinstance(node, ast.expr) and \
                    not isinstance(node, (ast.Name, ast.Constant)):
                raise self.error("expression nested too deeply", at,
                                 expected=f"at most {MAX_DEPTH} levels")
            for child in ast.iter_child_nodes(node):
                chain = (isinstance(node, ast.BinOp) and child is node.left
                         and isinstance(child, ast.BinOp)
                         and _GROUP.get(type(child.op), -1) == _GROUP.get(type(node.op), -2))
                stack.append((child, depth if chain else depth + 1, at))
        unknown = [n.func for n in ast.walk(tree) if isinstance(n, ast.Call)
                   and isinstance(n.func, ast.Name) and n.func.id not in FUNCTIONS]
        if unknown:
            first = min(unknown, key=lambda n: n.col_offset)
            raise self.error(f"unknown function '{first.id}'", first.col_offset,
                             expected="one of " + ", ".join(FUNCTIONS))

    def as_fn(self, item: _Item) -> Callable:
        if callable(item):
            return item
        index = len(self.consts)
        self.consts.append(item)
        return lambda v, c: c[index]

    def build(self, node: ast.AST) -> _Item:
        """Compile ``node``; a subtree that depends on inputs but on no parameter is
        marked, so that ``Expression.precompute`` can evaluate it once per data set."""
        item = self._build(node)
        if callable(item) and not isinstance(node, ast.Name) and self._inputs_only(node):
            k, fn = len(self.hoisted), item
            self.hoisted.append(fn)
            item = lambda v, c: v[k] if k in v else fn(v, c)   # noqa: E731
        return item

    def _inputs_only(self, node: ast.AST) -> bool:
        funcs = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and id(n) not in funcs}
        return bool(names & set(self.inputs)) and names <= set(self.inputs) | set(CONSTANTS)

    def _build(self, node: ast.AST) -> _Item:
        if isinstance(node, ast.Constant):
            return self.number(node)
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            item = self.build(node.operand)
            if isinstance(node.op, ast.UAdd):
                return item
            return -item if isinstance(item, float) else (lambda v, c: -item(v, c))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return self.binop(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.BinOp):
            sym = _OP_TEXT.get(type(node.op), "?")
            at = self.tb.find(sym.encode(), node.left.end_col_offset)
            raise self.error(f"operator '{sym}' is not allowed", at)
        if isinstance(node, ast.UnaryOp):
            raise self.error(f"operator '{_OP_TEXT.get(type(node.op), '?')}' is not allowed",
                             node.col_offset)
        if isinstance(node, ast.Attribute):
            at = self.tb.find(b".", node.value.end_col_offset)
            raise self.error(f"attribute access '.{node.attr}' is not allowed", at)
        what = _CONSTRUCTS.get(type(node), f"'{type(node).__name__}'")
        raise self.error(f"{what} is not allowed", getattr(node, "col_offset", 0))

    def number(self, node: ast.Constant) -> float:
        value = node.value
        if isinstance(value, (str, bytes)):
            raise self.error("string is not allowed", node.col_offset, expected="a number")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            what = "complex number" if isinstance(value, complex) else f"'{value!r}'"
            raise self.error(f"{what} is not allowed", node.col_offset, expected="a number")
        raw = self.tb[node.col_offset:node.end_col_offset].decode("utf-8", "replace")
        if not _DECIMAL.fullmatch(raw):         # 0x10, 1_000: one number grammar everywhere
            raise self.error(f"the number {raw!r} is not written in decimal", node.col_offset,
                             expected="digits, a point and an exponent, such as 16, 1000 or "
                                      "1e3 (as a CSV cell and --p0 take them)")
        try:
            value = float(value)
        except OverflowError:
            value = math.inf
        if math.isinf(value):
            raise self.error("number too large", node.col_offset,
                             expected="a number below 1.8e308")
        if value == 0 and re.search(r"[1-9]", re.split(r"[eE]", raw)[0]):   # 1e-400
            raise self.error(f"number too small: {raw} is 0 in float64", node.col_offset,
                             expected="a number of at least 5e-324 in size, or 0 (for "
                                      "smaller ones, rescale x or y)")
        return value

    def name(self, node: ast.Name) -> _Item:
        name = node.id
        if name in self.inputs:
            self.used.add(name)
        elif name in CONSTANTS:
            self.constants.setdefault(name)
            return float(CONSTANTS[name])
        elif name in FUNCTIONS:
            raise self.error(f"'{name}' is a function, not a value", node.col_offset,
                             expected=f"a call such as {name}(x)")
        elif name.startswith("_"):
            raise self.error(f"name '{name}' is not allowed", node.col_offset,
                             expected="a name not starting with '_'")
        else:
            self.names.setdefault(name, node.col_offset)
            if len(self.names) > MAX_NAMES:
                raise self.error("too many parameters", node.col_offset,
                                 expected=f"at most {MAX_NAMES}")
        return lambda v, c: v[name]

    def binop(self, node: ast.BinOp) -> _Item:
        group, steps = _GROUP.get(type(node.op)), []
        while (group is not None and isinstance(node, ast.BinOp)
               and _GROUP.get(type(node.op)) == group):
            steps.append((_BINOPS[type(node.op)], node.right))
            node = node.left
        if not steps:   # power, right-associative: no chain
            base, power = self.build(node.left), self.build(node.right)
            if self.moves(node.left) and (callable(power) or 0 < power < 1):
                return self.cusp(operator.pow, node.left, base, power)
            return self.pair(operator.pow, base, power)
        head = self.build(node)
        steps = [(op, self.build(right)) for op, right in reversed(steps)]
        if len(steps) == 1:
            return self.pair(steps[0][0], head, steps[0][1])
        if isinstance(head, float) and isinstance(steps[0][1], float):
            head = self.as_fn(head)     # so that no step is float-with-float in Python
        first = head if callable(head) else (lambda v, c: head)
        ops = tuple((op, item, not callable(item)) for op, item in steps)

        def chain(v, c):
            r = first(v, c)
            for op, item, const in ops:
                r = op(r, item if const else item(v, c))
            return r
        return chain

    def pair(self, op: Callable, a: _Item, b: _Item) -> Callable:
        """``op(a, b)``; a float side stays a Python scalar (torch takes it), not both."""
        if not callable(a) and not callable(b):
            a = self.as_fn(a)
        if not callable(a):
            return lambda v, c: op(a, b(v, c))
        if not callable(b):
            return lambda v, c: op(a(v, c), b)
        return lambda v, c: op(a(v, c), b(v, c))

    def moves(self, node: ast.AST) -> bool:
        """Whether ``node`` depends on a parameter."""
        funcs = {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
        return any(isinstance(n, ast.Name) and id(n) not in funcs and n.id not in self.inputs
                   and n.id not in CONSTANTS for n in ast.walk(node))

    def cusp(self, fn: Callable, arg: ast.AST, u: _Item, exponent) -> Callable:
        """``fn(u[, exponent])`` with a slope infinite at ``u = 0`` (``expr_cusp``)."""
        names = [n.id for n in ast.walk(arg) if isinstance(n, ast.Name)]
        params = tuple(dict.fromkeys(n for n in names if n in self.names))
        return cusp(fn, u, exponent, ast.get_source_segment(self.src, arg), params,
                    self.inputs)

    def call(self, node: ast.Call) -> Callable:
        if not isinstance(node.func, ast.Name):
            number = isinstance(node.func, ast.Constant) and \
                type(node.func.value) in (int, float)
            if number or isinstance(node.func, (ast.BinOp, ast.UnaryOp)):     # 2(x+1)
                left = ast.get_source_segment(self.src, node.func) if number else "(...)"
                raise self.error(f"'{left}' is followed by '(' as if it were a function",
                                 self.tb.find(b"(", node.func.end_col_offset),
                                 expected=f"a product written with '*', such as {left}*(...), "
                                          "or a call such as sin(x)")
            raise self.error("call of something other than a function name is not allowed",
                             node.col_offset, expected="a call such as sin(x)")
        name, at = node.func.id, node.func.col_offset
        if node.keywords:
            kw = node.keywords[0]
            what = f"keyword argument '{kw.arg}='" if kw.arg else "'**' argument"
            raise self.error(f"{what} is not allowed", kw.col_offset)
        n = len(node.args)
        if name in VARIADIC and n < 2:
            raise self.error(f"function '{name}' takes 2 or more arguments, got {n}", at)
        if name not in VARIADIC and n != 1:
            raise self.error(f"function '{name}' takes 1 argument, got {n}", at)
        fn = FUNCTIONS[name]
        args = [self.as_fn(self.build(arg)) for arg in node.args]
        if n == 1:
            a = args[0]
            if name == "sqrt" and self.moves(node.args[0]):
                return self.cusp(fn, node.args[0], a, None)
            return lambda v, c: fn(a(v, c))
        a, rest = args[0], args[1:]

        def fold(v, c):
            r = a(v, c)
            for b in rest:
                r = fn(r, b(v, c))
            return r
        return fold


@dataclass(frozen=True, repr=False)
class Expression:
    """A checked, compiled expression; call it with a mapping of names to tensors.

    ``params`` are the free names in order of first appearance; ``used_inputs`` the
    inputs that appear, in the order of ``inputs``; ``constants`` the constants used
    (``e``, ``pi``: never parameters). Tensors broadcast: x of shape (n,)
    and params of shape (k, 1) give (k, n). Numbers take the dtype and device of the
    tensors given. The result is always a tensor (0-d for a constant expression).
    """

    text: str
    inputs: tuple[str, ...] = ("x",)
    params: tuple[str, ...] = field(init=False)
    used_inputs: tuple[str, ...] = field(init=False)
    constants: tuple[str, ...] = field(init=False)
    _root: Callable = field(init=False, compare=False)
    _names: tuple[str, ...] = field(init=False, compare=False)
    _consts: tuple[float, ...] = field(init=False, compare=False)
    _cache: dict = field(init=False, compare=False)
    _hoisted: tuple = field(init=False, compare=False)
    source: str = field(init=False, compare=False)   # the checked text, ``^`` read as ``**``

    def __post_init__(self):
        inputs = (self.inputs,) if isinstance(self.inputs, str) else tuple(self.inputs)
        if not all(isinstance(name, str) for name in inputs):
            raise ExpressionError("bad input names", expected="strings")
        inputs = tuple(dict.fromkeys(inputs))
        compiler = _Compiler(self.text, inputs)
        root = compiler.run()
        params = tuple(sorted(compiler.names, key=compiler.names.__getitem__))
        used = tuple(name for name in inputs if name in compiler.used)
        for key, value in (("inputs", inputs), ("params", params), ("used_inputs", used),
                           ("constants", tuple(compiler.constants)),
                           ("_root", root), ("_names", used + params),
                           ("_consts", tuple(compiler.consts)), ("_cache", {}),
                           ("_hoisted", tuple(compiler.hoisted)), ("source", compiler.src)):
            object.__setattr__(self, key, value)

    def __repr__(self) -> str:
        extra = "" if self.inputs == ("x",) else f", inputs={self.inputs!r}"
        return f"Expression({self.text!r}{extra})"

    def __reduce__(self):
        return (Expression, (self.text, self.inputs))

    def bind(self, inputs: Mapping[str, torch.Tensor]) -> Callable[[Sequence[torch.Tensor]], torch.Tensor]:
        """A fast evaluator for fixed inputs: ``f(values)`` with one tensor per parameter,
        in the order of ``params``. The parts that depend on the inputs alone (``x**2``,
        ``sin(x)``) are evaluated here, once, so a fit loop never recomputes them.

        >>> import torch
        >>> e = parse_expression("a*x**2 + b")
        >>> f = e.bind({"x": torch.tensor([1.0, 2.0])})
        >>> f([torch.tensor(2.0), torch.tensor(1.0)]).tolist()
        [3.0, 9.0]
        """
        env = {name: inputs[name] for name in self.used_inputs}
        ref = next(iter(env.values()), None)
        if ref is None or not ref.is_floating_point():
            return lambda values: self(dict(zip(self.params, values)))
        dtype, device = ref.dtype, ref.device
        consts = tuple(torch.tensor(v, dtype=dtype, device=device) for v in self._consts)
        with torch.no_grad():
            zeros = {name: torch.zeros((), dtype=dtype, device=device) for name in self.params}
            env.update({k: fn({**env, **zeros}, consts) for k, fn in enumerate(self._hoisted)})
        root, names = self._root, self.params

        def evaluate(values):
            vals = dict(env)
            vals.update(zip(names, values))
            return root(vals, consts)
        return evaluate

    def __call__(self, env: Mapping[str, torch.Tensor]) -> torch.Tensor:
        vals, ref, convert = {}, None, False
        for name in self._names:
            try:
                value = env[name]
            except KeyError:
                raise ExpressionError(f"no value given for '{name}'", text=self.text,
                                      expected="values for " + ", ".join(self._names)) from None
            vals[name] = value
            if isinstance(value, torch.Tensor):
                ref = value if ref is None else ref
            else:
                convert = True
        if ref is None and not self._names:
            ref = next((v for v in env.values() if isinstance(v, torch.Tensor)), None)
        floating = ref is not None and (ref.is_floating_point() or ref.is_complex())
        dtype = ref.dtype if floating else torch.get_default_dtype()
        device = ref.device if ref is not None else None
        if convert:
            vals = {k: t if isinstance(t, torch.Tensor) else
                    torch.as_tensor(t, dtype=dtype, device=device) for k, t in vals.items()}
        consts = self._cache.get((dtype, device)) if self._consts else ()
        if consts is None:
            consts = tuple(torch.tensor(v, dtype=dtype, device=device) for v in self._consts)
            if not torch.is_inference_mode_enabled():   # inference tensors break autograd
                self._cache[(dtype, device)] = consts
        return self._root(vals, consts)


def parse_expression(text: str, inputs: Sequence[str] = ("x",)) -> Expression:
    """Check and compile ``text``; names in ``inputs`` are inputs, other free names
    parameters. Raises ExpressionError (with a 1-based column of ``text``) for anything
    outside the grammar of this module.

    >>> e = parse_expression("max(x1, x2) * k", inputs=("x1", "x2"))
    >>> e.params, e.used_inputs
    (('k',), ('x1', 'x2'))
    """
    return Expression(text, inputs)
