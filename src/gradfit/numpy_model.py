"""Model functions written for numpy (as for scipy's ``curve_fit``), and users' Jacobians.

A function such as ``def f(x, A, k): return A * np.exp(-k * x)`` cannot be traced by
autograd. ``probe`` finds that out on the first call, and the model then runs it on numpy
arrays, once per parameter set (``x`` as an array, each parameter a float, exactly as
``curve_fit`` calls it), inside ``NumpyCall``, a ``torch.autograd.Function``. Its backward
multiplies the incoming gradient by the Jacobian ``J = df/dp`` ``(n, P)`` with torch ops, so
every optimizer, landscapes, and Levenberg-Marquardt's Jacobian tricks (a double backward
in ``lm.jacobian_from_graph``, a batch of copies in ``lm.jacobian_by_rows``) all work.

``J`` is the user's ``jac(x, *params) -> (n, P)`` when given, else central differences::

    h_j = eps^(1/3) * max(s_j, |p_j|),   J[:, j] = (f(p + h_j e_j) - f(p - h_j e_j)) / (2 h_j)

with ``eps`` the float64 machine epsilon (``h_j`` is then rounded so that ``p_j + h_j`` is
exact) and ``s_j`` the parameter's typical size: its magnitude at the start (the first call;
the median over a batch of starts), 1 where that is 0. scipy's ``approx_derivative`` takes
``s_j = 1``, a step 6e-6 wide: six times a rate constant of 1e-6 (``exp(-k*t)`` over ``t``
to 3e6), whose derivative it then misses entirely. The error is ``O(h^2)``, about ``1e-10`` relative for smooth models, against
``O(h)`` (``1e-8``) for MINPACK's forward difference ``h = sqrt(eps) |p|``; it costs ``2P + 1``
calls of the function per Jacobian. Where the model bends within a step (a peak of width
0.03 at x = 2000: ``h`` of its position is 0.012, and the standard errors came out 3% high,
most fits "not smooth"), the bend ``|f(p+h) - 2f(p) + f(p-h)| / |f(p+h) - f(p-h)|`` (about
``h / w``) says so, and the step is cut until it is below ``BEND`` (down to
``sqrt(eps) max(s_j, |p_j|)``); the cut is kept for the next Jacobian. Second derivatives are taken as zero (the Jacobian is
a constant of the backward pass), which is all least squares and gradient methods need.

    >>> import numpy as np, torch
    >>> def decay(x, A, k):
    ...     return A * np.exp(-k * x)
    >>> x = torch.linspace(0, 1, 5, dtype=torch.float64)
    >>> run = probe(decay, x, torch.tensor([2.0, 1.0], dtype=torch.float64), 0, "decay")
    >>> run.kind
    'finite differences'
    >>> p = torch.tensor([2.0, 1.0], dtype=torch.float64, requires_grad=True)
    >>> run(x, p).sum().backward()
    >>> xn = x.numpy()
    >>> exact = [float(np.exp(-xn).sum()), float((-2 * xn * np.exp(-xn)).sum())]
    >>> bool(np.allclose(p.grad.tolist(), exact, rtol=1e-9))
    True
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import torch

from .errors import InputError

EPS = float(np.finfo(np.float64).eps)
STEP = EPS ** (1 / 3)
BEND = 1e-4          # a step is cut where the model bends more within it (error ~ BEND^2/6)
BEND_TRIES = 3       # ... at most this many times a Jacobian
FLOOR = EPS ** 0.5   # ... down to sqrt(eps) max(s_j, |p_j|) (MINPACK's forward step)

AUTOGRAD, FINITE, USER = "autograd", "finite differences", "user's jac"


def _shown(value) -> str:
    """What a function returned, in a few words."""
    if value is None:
        return "None"
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class NumpyRunner:
    """Runs a model function on numpy arrays, one parameter set at a time, and gives its
    Jacobian (the user's ``jac`` or central differences).

    ``fn(*args)`` with ``x`` inserted at position ``x_at`` among the parameters; ``name``
    names the function in messages; ``torch_fn`` (optional) evaluates the function with
    torch instead (a traceable function with a user's ``jac``)."""

    def __init__(self, fn: Callable, x_at: int, name: str, jac: Callable | None = None,
                 torch_fn: Callable | None = None):
        self.fn, self.x_at, self.name, self.jac, self.torch_fn = fn, x_at, name, jac, torch_fn
        self.kind = USER if jac is not None else FINITE
        self._x, self._xnp = None, None
        self.typical: np.ndarray | float = 1.0   # s_j of the steps (``typical_size``)
        self.shrink: np.ndarray | float = 1.0    # each step's divisor, as last chosen

    def _xnumpy(self, x: torch.Tensor) -> np.ndarray:
        if self._x is not x:                      # once per data set
            self._x, self._xnp = x, x.detach().cpu().to(torch.float64).numpy()
        return self._xnp

    def _call(self, fn, xnp, p: np.ndarray, what: str):
        args = [float(v) for v in p]
        args.insert(self.x_at, xnp)
        try:
            return fn(*args)
        except Exception as exc:   # a user's function may raise anything: one line, named
            name = self.name if what == "model function" else _name(fn)
            at = ", ".join(f"{v:.6g}" for v in p)
            raise InputError(f"the {what} {name!r} raised {type(exc).__name__}: {exc} "
                             f"(at parameters {at})") from None

    def value(self, xnp: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``f(x, p)`` ``(n,)`` for one parameter set ``p`` ``(P,)``, checked."""
        out = self._call(self.fn, xnp, p, "model function")
        return check_output(out, len(xnp), self.name)

    def values(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``(..., P)`` -> ``(..., n)``, on ``p``'s device and in its dtype."""
        n, xnp = x.shape[0], self._xnumpy(x)
        flat = p.detach().reshape(-1, p.shape[-1])
        if self.torch_fn is not None:
            with torch.no_grad():
                out = self.torch_fn(x, flat)
        else:
            rows = flat.cpu().to(torch.float64).numpy()
            out = torch.from_numpy(np.stack([self.value(xnp, r) for r in rows]) if len(rows)
                                   else np.zeros((0, n)))
        return out.to(dtype=p.dtype, device=p.device).reshape(p.shape[:-1] + (n,))

    def jacobian(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``J = df/dp`` ``(..., n, P)`` at each parameter set of ``p`` ``(..., P)``."""
        n, xnp = x.shape[0], self._xnumpy(x)
        rows = p.detach().reshape(-1, p.shape[-1]).cpu().to(torch.float64).numpy()
        jacs = [self._user_jac(xnp, r) if self.jac is not None else self._central(xnp, r)
                for r in rows]
        out = torch.from_numpy(np.stack(jacs) if jacs else np.zeros((0, n, p.shape[-1])))
        return out.to(dtype=p.dtype, device=p.device).reshape(p.shape[:-1] + (n, p.shape[-1]))

    def _central(self, xnp: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Central differences ``(n, P)``, each parameter's step ``eps^(1/3) max(s_j, |p_j|)``
        made smaller where the model bends within it (``_column``)."""
        base = STEP * np.maximum(self.typical, np.abs(p))
        if np.ndim(self.shrink) == 0 or len(self.shrink) != len(p):
            self.shrink = np.ones(len(p))
        f0 = self.value(xnp, p)
        cols = []
        for j in range(len(p)):
            h = base[j] / self.shrink[j]
            d, bend = self._column(xnp, p, j, h, f0)
            for _ in range(BEND_TRIES):
                floor = FLOOR * base[j] / STEP
                if not bend > BEND or h <= floor:
                    break
                smaller = max(h * max(BEND / bend, 1e-4) / 2, floor)
                d2, bend2 = self._column(xnp, p, j, smaller, f0)
                if not bend2 < bend:        # noise of the function's own, not a bend
                    break
                h, d, bend = smaller, d2, bend2
            self.shrink[j] = base[j] / h    # the next Jacobian starts from this step
            cols.append(d)
        return np.stack(cols, axis=1)

    def _column(self, xnp, p, j, h, f0):
        """``df/dp_j`` by central differences of step ``h``, and the bend ``|f(p+h) - 2 f(p)
        + f(p-h)| / |f(p+h) - f(p-h)|`` over the points: about ``h / w`` for a model that
        changes on a scale ``w`` of ``p_j`` (a peak's width, where ``p_j`` is its position
        at 2000), whose central difference is then off by about ``(h / w)^2 / 6``."""
        h = (p[j] + h) - p[j]                       # exactly representable
        up, down = p.copy(), p.copy()
        up[j] += h
        down[j] -= h
        fp, fm = self.value(xnp, up), self.value(xnp, down)
        diff = fp - fm
        first = float(np.linalg.norm(diff))
        second = float(np.linalg.norm(fp - 2 * f0 + fm))
        bend = second / first if first > 0 else (0.0 if second == 0 else math.inf)
        return diff / (2 * h), bend

    def _user_jac(self, xnp: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = self._call(self.jac, xnp, p, "jac function")
        try:
            arr = None if out is None else np.asarray(out, dtype=np.float64)
        except (TypeError, ValueError):
            arr = None
        n, k = len(xnp), len(p)
        if arr is None or arr.shape != (n, k):
            raise InputError(f"the jac function {_name(self.jac)!r} returned {_shown(out)}",
                             expected=f"an array of shape ({n}, {k}): one row per point, one "
                                      "column per parameter (as curve_fit's jac)")
        return arr

    def __call__(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return NumpyCall.apply(p, x, self)


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _refuse_complex(out, n: int, name: str) -> None:
    """Complex values would lose their imaginary part, silently (numpy only warns)."""
    if isinstance(out, torch.Tensor) and out.is_complex() or \
            not isinstance(out, torch.Tensor) and np.iscomplexobj(out):
        raise InputError(f"the model function {name!r} returned complex numbers",
                         expected=f"{n} real numbers, one per point")


def check_output(out, n: int, name: str) -> np.ndarray:
    """A model function's value as a float64 array ``(n,)``, or an InputError saying what
    the function returned (None, text, the wrong shape)."""
    _refuse_complex(out, n, name)
    try:
        arr = None if out is None else np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape not in ((), (n,)):
        raise InputError(f"the model function {name!r} returned {_shown(out)}",
                         expected=f"{n} numbers, one per point (an array shaped like x)")
    return np.broadcast_to(arr, (n,))


class NumpyCall(torch.autograd.Function):
    """``f(x, p)`` by a ``NumpyRunner``: forward on numpy, backward ``g -> g @ J``.

    The backward is made of torch ops on the incoming gradient, so it can itself be
    differentiated (LM's double backward reads ``J^T`` off it)."""

    @staticmethod
    def forward(ctx, p, x, runner):
        ctx.save_for_backward(p)
        ctx.x, ctx.runner = x, runner
        return runner.values(x, p)

    @staticmethod
    def backward(ctx, grad):
        (p,) = ctx.saved_tensors
        jac = ctx.runner.jacobian(ctx.x, p.detach())
        return (grad.unsqueeze(-2) @ jac).squeeze(-2), None, None


def probe(fn: Callable, x: torch.Tensor, p: torch.Tensor, x_at: int, name: str,
          jac: Callable | None = None):
    """How to run ``fn``: a callable ``(x, p) -> (..., n)`` with a ``kind`` (``AUTOGRAD``,
    ``FINITE`` or ``USER``), decided by one call of ``fn`` with torch tensors that require
    grad. A function that returns a tensor connected to every one of its parameters is
    traceable and keeps exact autograd Jacobians (unless ``jac`` is given); any other (one
    that raises, returns numpy, or drops a parameter through ``float()`` or ``math.exp``)
    runs on numpy."""
    one = p.detach().reshape(-1, p.shape[-1])[:1].squeeze(0).clone().requires_grad_(True)
    traceable, error, out = False, None, None
    try:
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")      # torch's note on float() of a tensor
            params = list(one.unbind())
            args = params[:x_at] + [x] + params[x_at:]
            out = fn(*args)
            _refuse_complex(out, x.shape[0], name)
            traceable = isinstance(out, torch.Tensor) and out.requires_grad and all(
                g is not None for g in torch.autograd.grad(out.sum(), params, allow_unused=True))
    except InputError:
        raise
    except Exception as exc:      # not traceable: numpy's call below says what is wrong
        error = exc
    if traceable:
        shape = tuple(out.shape)
        if shape not in ((), (x.shape[0],)):
            raise InputError(f"the model function {name!r} returned a tensor of shape {shape}",
                             expected=f"{x.shape[0]} numbers, one per point (shaped like x)")
        if jac is None:
            return None       # the model calls fn with torch directly
    runner = NumpyRunner(fn, x_at, name, jac, torch_fn=_torch_fn(fn, x_at) if traceable else None)
    runner.typical = typical_size(p)
    if traceable:
        return runner
    try:
        runner.value(runner._xnumpy(x), one.detach().cpu().to(torch.float64).numpy())
    except InputError:
        if error is not None and "numpy" not in str(error).lower():
            raise InputError(f"the model function {name!r} raised {type(error).__name__}: "
                             f"{error}", expected="a function of the input and its parameters "
                             "that returns one number per point") from None
        raise
    return runner


def typical_size(p: torch.Tensor) -> np.ndarray:
    """Each parameter's typical magnitude ``(P,)`` at the starts ``p`` ``(..., P)``: the
    median of its nonzero ``|p|`` (1 where all are 0 or none is finite)."""
    a = np.abs(p.detach().reshape(-1, p.shape[-1]).cpu().to(torch.float64).numpy())
    a = np.where(np.isfinite(a) & (a > 0), a, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")           # an all-NaN column: 1 below
        med = np.nanmedian(a, axis=0) if a.shape[0] else np.full(a.shape[-1], np.nan)
    return np.where(np.isfinite(med), med, 1.0)


def _torch_fn(fn, x_at):
    """A traceable ``fn`` evaluated on a batch ``(k, P)`` of parameter sets -> ``(k, n)``."""
    def run(x, flat):
        args = list(flat.unsqueeze(-1).unbind(-2))
        args.insert(x_at, x)
        out = fn(*args)
        return out.expand(flat.shape[0], x.shape[0])
    return run
