"""Models: functions of inputs ``x`` and named parameters, evaluated for many parameter sets at once.

Every model has ``param_names`` (what users see), ``input_names`` and a call
``model(x, p)`` where ``x`` has shape ``(n,)`` or ``(n, d)`` and ``p`` has shape
``(..., P)``; the result has shape ``(..., n)``. So one call evaluates a whole grid of
parameter sets (a loss landscape, a learning-rate sweep, many fits)::

    >>> import torch
    >>> m = make_model("a*x^2 + b*x + c")
    >>> m.param_names
    ('a', 'b', 'c')
    >>> x = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    >>> m(x, torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)).tolist()
    [1.0, 6.0, 17.0]
    >>> m(x, torch.ones(4, 3, dtype=torch.float64)).shape
    torch.Size([4, 3])

``MODELS`` maps the names of the built-in families (``poly:K``, ``relu:K``,
``mlp:H1,H2[:activation]``) to factories; anything else is read as an expression.
"""
from __future__ import annotations

import inspect
import math
from functools import lru_cache
from typing import Callable, Mapping, Sequence

import torch

from .errors import InputError
from .expr import CONSTANTS, folding_advice, folding_problem, parse_expression
from .linear import linear_form
from .numpy_model import AUTOGRAD, probe


class Model:
    """Base of all models. Subclasses set ``param_names``, ``input_names``, ``spec``
    and implement ``__call__(x, p)``; ``initial`` gives the default start."""

    param_names: tuple[str, ...] = ()
    input_names: tuple[str, ...] = ("x",)
    spec: str = ""
    #: how derivatives are taken (``CallableModel`` may say finite differences or the user's)
    jacobian_kind: str = "autograd"
    #: named constants of the model (``e``, ``pi`` in an expression): shown, never fitted
    constants: Mapping[str, float] = {}
    #: False for flexible approximators (ReLU sums, networks), which may well have more
    #: parameters than there are points; a curve's parameters must be determined by the data
    identifiable: bool = True

    @property
    def n_params(self) -> int:
        return len(self.param_names)

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def initial(self, x: torch.Tensor | None = None, seed: int = 0) -> dict[str, float]:
        """Starting values by name (1.0 unless the model knows better)."""
        return {name: 1.0 for name in self.param_names}

    def design(self, x: torch.Tensor):
        """For a model linear in its parameters, ``f(x, p) = p @ Phi + offset``: ``Phi``
        ``(P, n)`` and ``offset`` ``(n,)`` or None; else None."""
        return None

    @property
    def linear_in_params(self) -> bool:
        """Whether ``design`` gives the model (its least-squares minimum is then finite,
        or a flat valley: parameters never run off)."""
        return False

    def columns(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The inputs as a list of ``(n,)`` tensors, one per input name."""
        if x.ndim == 1:
            cols = [x]
        else:
            cols = list(x.unbind(-1))
        if len(cols) != len(self.input_names):
            raise InputError(f"model {self.spec!r} needs {len(self.input_names)} input(s)",
                             expected=", ".join(self.input_names),
                             given=f"{len(cols)} input column(s)")
        return cols

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


def _split(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``(..., P)`` -> P tensors shaped ``(..., 1)``, which broadcast against ``(n,)``
    (0-d tensors for a single parameter set: one op on the fit loop's hot path)."""
    return p.unbind() if p.ndim == 1 else p.unsqueeze(-1).unbind(-2)


def _broadcast(out: torch.Tensor, p: torch.Tensor, n: int) -> torch.Tensor:
    shape = p.shape[:-1] + (n,)
    return out if out.shape == shape else out.expand(shape)


@lru_cache(maxsize=256)
def _parsed(text: str, inputs: tuple[str, ...]):
    """The checked expression and its linear form, once per text and inputs: checking and
    compiling take about 10 ms, as long as a whole small fit (an ``Expression`` is
    immutable, so models of one text share it). Errors are raised, never cached."""
    expression = parse_expression(text, inputs=inputs)
    return expression, linear_form(expression)


class ExpressionModel(Model):
    """A model written as text, e.g. ``a*x^2 + b*x + c``: every free name that is not an
    input is a parameter (starting at 1.0), in order of first appearance."""

    def __init__(self, text: str, inputs: Sequence[str] = ("x",)):
        self.expression, self.linear = _parsed(text, tuple(inputs))   # linear: a design
        self.spec = text                                               # matrix, if it is one
        self.input_names = tuple(inputs)
        self.param_names = self.expression.params
        self.constants = {name: CONSTANTS[name] for name in self.expression.constants}
        self._bound_to, self._bound = None, None

    @property
    def jacobian_kind(self) -> str:
        """How fits differentiate this expression: by its own derivative rules (forward
        mode) where every node has one, else autograd (``expr_jacobian.jacobian_kind``)."""
        from .expr_jacobian import jacobian_kind
        return jacobian_kind(self)

    def __reduce__(self):
        # rebuilt from its text (the parsed tree and the bound data hold closures): a result
        # goes through pickle, joblib and multiprocessing as a poly:K's does
        return (type(self), (self.spec, self.input_names))

    def _bind(self, x: torch.Tensor):
        """Once per data set: the design matrix, or the expression with its parts of the
        inputs alone evaluated."""
        env = dict(zip(self.input_names, self.columns(x)))
        if self.linear is not None and x.is_floating_point():
            phi, offset = self.linear.design(env, x.shape[0], x)
            if offset is None:
                return lambda p: p @ phi
            return lambda p: p @ phi + offset
        bound = self.expression.bind(env)
        return lambda p: _broadcast(bound(_split(p)), p, x.shape[0])

    @property
    def linear_in_params(self) -> bool:
        return self.linear is not None

    def design(self, x: torch.Tensor):
        if self.linear is None or not x.is_floating_point():
            return None
        env = dict(zip(self.input_names, self.columns(x)))
        return self.linear.design(env, x.shape[0], x)

    def undefined_slope(self, x: torch.Tensor, p: torch.Tensor) -> str | None:
        """Which part of the text has an infinite slope at a data point at parameters
        ``p`` ``(P,)``, and where (``sqrt(x - c)`` where x - c is 0, as at point 1 (x = 0));
        None if none does. For the advice on a derivative that is not finite."""
        from .expr_jacobian import infinite_slope
        try:        # advice, never an error of its own (as fit_advice's other looks)
            env = dict(zip(self.input_names, self.columns(x)))
            return infinite_slope(self.expression, env, p.detach())
        except Exception:
            return None

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self._bound_to is not x or p.dtype != x.dtype:   # once per data set
            self._bound_to, self._bound = x, self._bind(x)
        return self._bound(p)


class CallableModel(Model):
    """A Python function. Two conventions are read from its signature:

    - scipy's ``curve_fit``: ``f(x, a, b, c)``, the input first;
    - the lesson's: ``quad(a, b, c, x)``, the input named ``x`` (or an input name) anywhere.

    Parameter names come from the signature, starting values from its defaults (else 1.0).
    The function is called with torch tensors: parameters shaped ``(..., 1)`` and the input
    ``(n,)``, so ordinary arithmetic and ``torch`` functions evaluate a batch at once.
    """

    def __init__(self, fn: Callable, inputs: Sequence[str] = ("x",), jac: Callable | None = None):
        self.fn, self.jac, self._run = fn, jac, None
        if jac is not None and not callable(jac):
            raise InputError("bad jac", expected="a function jac(x, a, b, ...) returning an "
                             "(n, P) array, as curve_fit's", given=repr(jac))
        self.input_names = tuple(inputs)
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError) as exc:
            raise InputError("cannot read the function's parameters",
                             expected="a Python function f(x, a, b, ...)", given=repr(fn)) from exc
        args = [q for q in sig.parameters.values()
                if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]
        if len(args) < 2:
            raise InputError("a model function needs an input and at least one parameter",
                             expected="f(x, a, b, ...)", given=f"{getattr(fn, '__name__', fn)}{sig}")
        names = [q.name for q in args]
        named_input = [i for i, nm in enumerate(names) if nm in self.input_names or nm == "x"]
        self._x_at = named_input[0] if named_input else 0
        params = [q for i, q in enumerate(args) if i != self._x_at]
        self.param_names = tuple(q.name for q in params)
        self._defaults = {q.name: float(q.default) for q in params
                          if q.default is not q.empty and isinstance(q.default, (int, float))}
        self.spec = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", "function")

    def initial(self, x=None, seed=0):
        return {name: self._defaults.get(name, 1.0) for name in self.param_names}

    @property
    def jacobian_kind(self) -> str:
        """How derivatives are taken: ``autograd``, ``finite differences`` (a function that
        autograd cannot trace, run on numpy) or ``user's jac``; known after the first call."""
        return self._run.kind if self._run not in (None, False) else AUTOGRAD

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        if self._run is None:            # the first call decides: torch, or numpy
            self._run = probe(self.fn, x, p, self._x_at, self.spec, self.jac) or False
        if self._run:
            return self._run(x, p)
        args = list(_split(p))
        args.insert(self._x_at, x)
        out = self.fn(*args)
        if not isinstance(out, torch.Tensor):
            out = torch.as_tensor(out, dtype=p.dtype, device=p.device)
        try:
            return _broadcast(out, p, x.shape[0])
        except RuntimeError:
            raise InputError(f"the model function {self.spec!r} returned a tensor of shape "
                             f"{tuple(out.shape)} for parameters {tuple(p.shape)}",
                             expected=f"shape {tuple(p.shape[:-1]) + (x.shape[0],)}") from None


class PolynomialModel(Model):
    """``poly:K``: ``c0 + c1*x + ... + cK*x^K`` (Horner's rule), starting at 1.0."""

    def __init__(self, degree: int, inputs: Sequence[str] = ("x",)):
        if len(inputs) != 1:
            raise InputError("poly:K takes one input column", expected="one x column",
                             given=", ".join(inputs))
        self.degree, self.input_names = degree, tuple(inputs)
        self.param_names = tuple(f"c{k}" for k in range(degree + 1))
        self.spec = f"poly:{degree}"

    linear_in_params = True

    def design(self, x):
        (x,) = self.columns(x)
        cols = [torch.ones_like(x)]
        for _ in range(self.degree):
            cols.append(cols[-1] * x)
        return torch.stack(cols), None

    def __call__(self, x, p):
        (x,) = self.columns(x)
        coef = _split(p)
        out = coef[-1]
        for c in reversed(coef[:-1]):
            out = out * x + c
        return _broadcast(out, p, x.shape[0])


class ReLUSumModel(Model):
    """``relu:K``: ``sum_i relu(m_i * x + b_i) + c``, the lesson's double ReLU generalised.

    With several inputs each unit has one slope per input (``m{i}_{input}``). Starts are
    random but seeded: slopes from N(0, 1), kinks spread uniformly over the data's range.
    """

    identifiable = False

    def __init__(self, units: int, inputs: Sequence[str] = ("x",)):
        self.units, self.input_names = units, tuple(inputs)
        d = len(self.input_names)
        names = []
        for i in range(1, units + 1):
            names += [f"m{i}"] if d == 1 else [f"m{i}_{nm}" for nm in self.input_names]
            names.append(f"b{i}")
        self.param_names = tuple(names) + ("c",)
        self.spec = f"relu:{units}"

    def _unpack(self, p):
        d, k = len(self.input_names), self.units
        units = p[..., :-1].unflatten(-1, (k, d + 1))
        return units[..., :d], units[..., d], p[..., -1:]   # (...,K,d), (...,K), (...,1)

    def parts(self, x, p):
        """Each unit's contribution, shape ``(..., K, n)``."""
        cols = torch.stack(self.columns(x), -1)                    # (n, d)
        m, b, _ = self._unpack(p)
        return torch.relu(m @ cols.transpose(0, 1) + b.unsqueeze(-1))

    def __call__(self, x, p):
        _, _, c = self._unpack(p)
        return self.parts(x, p).sum(-2) + c

    def initial(self, x=None, seed=0):
        gen = torch.Generator().manual_seed(seed)
        d = len(self.input_names)
        lo, hi = (-1.0, 1.0)
        if x is not None and x.numel():
            lo, hi = float(x.min()), float(x.max())
        values = {}
        for i in range(1, self.units + 1):
            slopes = torch.randn(d, generator=gen, dtype=torch.float64)
            kink = lo + (hi - lo) * float(torch.rand((), generator=gen, dtype=torch.float64))
            names = [f"m{i}"] if d == 1 else [f"m{i}_{nm}" for nm in self.input_names]
            values.update({nm: float(s) for nm, s in zip(names, slopes)})
            values[f"b{i}"] = -float(slopes.sum()) * kink
        values["c"] = 0.0
        return values


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
    "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu,
    "softplus": torch.nn.functional.softplus, "identity": lambda t: t,
}


class MLPModel(Model):
    """``mlp:H1,H2[:activation]``: a small fully connected network for any number of inputs.

    Layer ``l`` maps ``h -> act(h @ W_l.T + b_l)``; the last layer is linear with one output.
    Parameters are named ``l{l}.w{out}_{in}`` and ``l{l}.b{out}``; starts follow torch's
    ``nn.Linear`` (uniform in +-1/sqrt(fan_in)), seeded.
    """

    identifiable = False

    def __init__(self, hidden: Sequence[int], activation: str = "relu",
                 inputs: Sequence[str] = ("x",)):
        if activation not in ACTIVATIONS:
            raise InputError(f"unknown activation {activation!r}",
                             expected="one of " + ", ".join(ACTIVATIONS))
        self.hidden, self.activation = tuple(hidden), activation
        self.input_names = tuple(inputs)
        sizes = (len(self.input_names),) + self.hidden + (1,)
        self.layers = list(zip(sizes[:-1], sizes[1:]))             # (fan_in, fan_out)
        names = []
        for l, (fi, fo) in enumerate(self.layers, 1):
            names += [f"l{l}.w{o}_{i}" for o in range(fo) for i in range(fi)]
            names += [f"l{l}.b{o}" for o in range(fo)]
        self.param_names = tuple(names)
        self.spec = "mlp:" + ",".join(map(str, self.hidden)) + \
            ("" if activation == "relu" else f":{activation}")

    def __call__(self, x, p):
        h = torch.stack(self.columns(x), -1)                       # (n, d)
        act, at = ACTIVATIONS[self.activation], 0
        for l, (fi, fo) in enumerate(self.layers):
            w = p[..., at:at + fi * fo].unflatten(-1, (fo, fi))
            b = p[..., at + fi * fo: at + fi * fo + fo]
            at += fi * fo + fo
            h = h @ w.transpose(-1, -2) + b.unsqueeze(-2)          # (..., n, fo)
            if l < len(self.layers) - 1:
                h = act(h)
        return h.squeeze(-1)

    def initial(self, x=None, seed=0):
        gen = torch.Generator().manual_seed(seed)
        values = []
        for fi, fo in self.layers:
            bound = 1.0 / math.sqrt(fi)
            values += ((torch.rand(fi * fo + fo, generator=gen, dtype=torch.float64) * 2 - 1) * bound).tolist()
        return dict(zip(self.param_names, values))


MAX_MODEL_PARAMS = 1_000_000


def _int_arg(spec: str, arg: str, what: str) -> int:
    try:
        k = int(arg)
    except ValueError:
        k = -1
    if k < 0 or k > 10_000:
        raise InputError(f"bad model {spec!r}", expected=f"{what} as a whole number 0..10000",
                         given=arg)
    return k


def _poly(spec, arg, inputs):
    return PolynomialModel(_int_arg(spec, arg, "poly:K with the degree K"), inputs)


def _relu(spec, arg, inputs):
    k = _int_arg(spec, arg, "relu:K with the number of units K")
    if k < 1:
        raise InputError(f"bad model {spec!r}", expected="at least one ReLU unit", given=arg)
    return ReLUSumModel(k, inputs)


def _mlp(spec, arg, inputs):
    sizes, _, activation = arg.partition(":")
    hidden = [_int_arg(spec, s.strip(), "mlp:H1,H2 with layer sizes") for s in sizes.split(",")]
    if any(h < 1 for h in hidden):
        raise InputError(f"bad model {spec!r}", expected="layer sizes of at least 1", given=sizes)
    sizes_all = [len(inputs)] + hidden + [1]
    count = sum((a + 1) * b for a, b in zip(sizes_all[:-1], sizes_all[1:]))
    if count > MAX_MODEL_PARAMS:     # refuse before building millions of names
        raise InputError(f"model {spec!r} is too large ({count:,} parameters)",
                         expected=f"at most {MAX_MODEL_PARAMS:,} parameters")
    return MLPModel(hidden, activation or "relu", inputs)


MODELS: dict[str, Callable[[str, str, Sequence[str]], Model]] = {
    "poly": _poly,
    "relu": _relu,
    "mlp": _mlp,
}


def make_model(model: "str | Callable | Model", inputs: Sequence[str] = ("x",),
               jac: Callable | None = None) -> Model:
    """A model from a spec: a ``Model``, a Python function, ``family:args`` from ``MODELS``,
    or an expression. ``jac(x, a, b, ...) -> (n, P)``: a model function's Jacobian."""
    if jac is not None and (isinstance(model, Model) or not callable(model)):
        raise InputError("jac= is for a model given as a Python function",
                         expected="a model f(x, a, b, ...) with jac(x, a, b, ...)",
                         given=getattr(model, "spec", model))
    if isinstance(model, Model):
        return model
    check_input_names(inputs)
    if callable(model):
        return CallableModel(model, inputs, jac)
    if not isinstance(model, str):
        raise InputError("bad model", expected="an expression, poly:K, relu:K, mlp:H1,H2, "
                         "a Python function or a Model", given=repr(model))
    family, colon, arg = model.strip().partition(":")
    if colon and family.strip() in MODELS:
        return MODELS[family.strip()](model, arg.strip(), tuple(inputs))
    if colon and family.strip().isidentifier():     # 'POLY:2', 'a:b': no expression either
        name = family.strip()
        hint = f" (family names are lower case: {name.lower()}:...)" \
            if name.lower() in MODELS else ""
        raise InputError(f"unknown model family {name!r}{hint}",
                         expected=", ".join(FAMILY_FORMS.get(k, f"{k}:...") for k in MODELS)
                         + ", or an expression without ':'",
                         given=model)
    return ExpressionModel(model, inputs)


#: how each family of ``MODELS`` is written (in messages)
FAMILY_FORMS = {"poly": "poly:K", "relu": "relu:K", "mlp": "mlp:H1,H2"}


def check_input_names(inputs) -> None:
    """Refuse input names given twice (``inputs=["t", "t"]``): the second column had
    silently replaced the first, as ``--x x1,x1`` is refused on the command line."""
    names = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    for i, name in enumerate(names):
        if name in names[:i]:
            raise InputError(f"input {name!r} is listed twice in inputs",
                             expected="each input name once, one per column of x",
                             given=list(names))


def table_inputs(model, columns: list[str]) -> tuple[str, ...]:
    """The input names of a model fitted to a table's x ``columns``: the column names, but
    for one column that an expression does not mention while it mentions ``x`` (``"a*x+b"``
    on a column ``t``), which is then ``x``."""
    if len(columns) == 1 and isinstance(model, str):
        names = make_model(model, ("x",)).param_names
        if columns[0] not in names and "x" not in names and "x" in _mentions(model):
            return ("x",)
    if len(columns) > 1 and isinstance(model, str) and ":" not in model and "x" not in columns:
        named = _mentions(model)
        if "x" in named and not named & set(columns):   # x would be fitted as a parameter
            raise InputError(f"the input columns are {', '.join(columns)}, but the model "
                             f"{model!r} names x", expected=f"a model of {', '.join(columns)}")
    return tuple(columns)


def unused_inputs(model, inputs) -> list[str]:
    """The input names an expression does not mention (a column chosen and never used)."""
    if not isinstance(model, str) or ":" in model:
        return []
    named = _mentions(model)
    return [c for c in inputs if c not in named]


def check_default_inputs(model, inputs: tuple[str, ...]) -> None:
    """Refuse an expression that names none of the default inputs ``x1 .. xd`` of ``d``
    columns of x but names ``x``, which would be fitted as a parameter: ``a*x+b`` on two
    columns had fitted ``a``, ``x`` and ``b`` and failed saying only combinations of them
    were determined."""
    if not isinstance(model, str) or len(inputs) < 2 or ":" in model:
        return
    names = _mentions(model)
    if "x" in names and not names & set(inputs):
        raise InputError(f"x has {len(inputs)} columns (inputs {', '.join(inputs)}), but the "
                         f"model {model!r} names x",
                         expected=f"a model of {', '.join(inputs)}, or x of one column")


def _mentions(model: str) -> set[str]:
    try:
        return set(make_model(model, ("_no_input_",)).param_names)
    except InputError:
        return set()


CONSTANT_MEANING = {"e": "Euler's number e = 2.71828...", "pi": "pi = 3.14159..."}


def check_param_names(model: Model, names, what: str, only_constants: bool = False) -> None:
    """Refuse names in a p0, bounds or fixed (``what``) that are not the model's parameters;
    a constant (``e``, ``pi``) is told apart, with how to name a parameter instead
    (``only_constants``: refuse only those, leaving other names to the caller's check).

        >>> check_param_names(make_model("a*x + e"), ["e"], "p0")
        Traceback (most recent call last):
        ...
        gradfit.errors.InputError: p0 names 'e', which is Euler's number e = 2.71828... in an expression, not a parameter: expected a parameter name (to fit one, write e.g. e0 in the expression): a
    """
    known = set(model.param_names)
    for name in names:
        if name in known:
            continue
        if name in CONSTANT_MEANING and isinstance(model, ExpressionModel):
            raise InputError(f"{what} names {name!r}, which is {CONSTANT_MEANING[name]} in an "
                             "expression, not a parameter",
                             expected=f"a parameter name (to fit one, write e.g. {name}0 in "
                                      "the expression): " + ", ".join(model.param_names[:20]))
        if isinstance(name, str) and folding_problem(name) is not None:
            # 'µ' (micro sign) beside the model's 'μ' (Greek mu): they look the same
            raise InputError(f"{what} names {name!r}, which is not how a model can write it: "
                             f"{folding_problem(name)}",
                             expected=folding_advice(name) + "; the model's parameters: "
                             + ", ".join(model.param_names[:20]))
        if name in model.input_names:       # p0={"x": 1}
            raise InputError(f"{what} names {name!r}, which is the model's input (its data), "
                             "not a parameter",
                             expected="one of " + ", ".join(model.param_names[:20]))
        if not only_constants:
            raise InputError(f"{what} names an unknown parameter {name!r}",
                             expected="one of " + ", ".join(model.param_names[:20]))


def start_values(model: Model, p0: Mapping[str, float] | None = None,
                 x: torch.Tensor | None = None, seed: int = 0) -> dict[str, float]:
    """The model's default start, overridden by ``p0``; unknown names are refused."""
    values = model.initial(x, seed)
    check_param_names(model, p0 or {}, "p0")
    for name, value in (p0 or {}).items():
        if not math.isfinite(float(value)):
            raise InputError(f"p0 value of {name!r} is not finite", expected="a finite number",
                             given=value)
        values[name] = float(value)
    return values
