"""The boundary of the core for one fit: the user's model, ``x``, ``y`` and ``sigma``
checked and converted into a ``Problem`` (tensors of one dtype on one device, a ``Model``,
a ``Loss``), every refusal an ``InputError`` that says what was expected.

    >>> p = prepare("a*x + b", [0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    >>> p.model.param_names, tuple(p.y.shape)
    (('a', 'b'), (3,))
"""
from __future__ import annotations

import numpy as np
import torch

from .data import check_has_values, check_not_times, unmasked
from .errors import InputError
from .losses import get_loss
from .models import Model, check_default_inputs, make_model
from .problem import Problem

DTYPE = {"float64": torch.float64, "float32": torch.float32}


def check_device(device) -> None:
    """A device this machine has: refuse ``cuda`` on a machine or build without it."""
    name = str(device)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} is not available here (this torch build or "
                         "machine has no CUDA GPU)", expected="--device cpu, or a CUDA build "
                         "of torch on a machine with an NVIDIA GPU")
    if name.startswith("cuda:") and name[5:].isdigit() and int(name[5:]) >= torch.cuda.device_count():
        raise InputError(f"device {name!r} does not exist",
                         expected=f"cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("device 'mps' is not available here", expected="--device cpu")


def _tensor(name: str, value, dtype, device) -> torch.Tensor:
    try:
        if (value.is_complex() if isinstance(value, torch.Tensor) else np.iscomplexobj(value)):
            raise InputError(f"bad {name}: complex numbers", expected="real numbers")
        if isinstance(value, torch.Tensor):
            check_has_values(value)     # (no copy to the cpu of data on a gpu to check it)
            t = value.detach()          # a tensor that requires grad: its values only
        else:       # no copy of a writable float64 array: the fit never writes into the data
            check_not_times(value, name)
            a = np.asarray(unmasked(value), dtype=np.float64)
            # (a reversed view: torch takes no negative strides)
            t = torch.as_tensor(a if a.flags.writeable and all(st >= 0 for st in a.strides)
                                else np.array(a, order="C"))
    except InputError:
        raise
    except (TypeError, ValueError) as exc:
        ragged = "inhomogeneous" in str(exc) or "sequence" in str(exc)
        raise InputError(f"bad {name}", expected="rows of equal length" if ragged else
                         "an array of numbers", given="rows of different lengths" if ragged
                         else str(exc).split(". ")[0]) from None
    return t.to(dtype=dtype, device=device)


def prepare(model, x, y, sigma=None, *, loss="mse", delta=1.0, dtype=torch.float64,
            device="cpu", inputs=None, jac=None) -> Problem:
    """Check and convert the user's data into a ``Problem`` (the boundary of the core)."""
    check_device(device)
    xt, yt = _tensor("x", x, dtype, device), _tensor("y", y, dtype, device)
    if xt.ndim == 2 and xt.shape[1] == 1 and (inputs is None or len(inputs) == 1):
        xt = xt[:, 0]                                    # the lesson's (n, 1) column
    if yt.ndim == 2 and yt.shape[1] == 1:
        yt = yt[:, 0]
    if yt.ndim != 1 or xt.ndim not in (1, 2) or xt.shape[0] != yt.shape[0]:
        raise InputError("x and y do not match", expected="x shaped (n,) or (n, d) and y (n,)",
                         given=f"x {tuple(xt.shape)}, y {tuple(yt.shape)}")
    if yt.shape[0] == 0:
        raise InputError("no data", expected="at least one point")
    if not (torch.isfinite(xt).all() and torch.isfinite(yt).all()):
        raise InputError("the data hold NaN or inf", expected="finite numbers (leave out "
                         "missing or masked points first: x[ok], y[ok])")
    st = None
    if sigma is not None:
        st = _tensor("sigma", sigma, dtype, device)
        if st.ndim == 0:                # one sigma for every point
            st = st.expand(yt.shape[0]).clone()
        elif st.ndim == 2 and st.shape[1] == 1:     # a column, as y may be
            st = st[:, 0]
        if tuple(st.shape) != tuple(yt.shape):
            raise InputError("bad sigma", expected=f"one number, or {yt.shape[0]} (one per "
                             "point)", given=f"shape {tuple(st.shape)}")
        bad = ~(torch.isfinite(st) & (st > 0))
        if bool(bad.any()):
            i = int(bad.nonzero()[0, 0])
            raise InputError("bad sigma", expected="positive finite numbers",
                             given=f"{float(st[i]):g} at index {i}")
    if inputs is None:
        inputs = _named_inputs(model, x, xt)
    if inputs is None:
        inputs = ("x",) if xt.ndim == 1 else tuple(f"x{i + 1}" for i in range(xt.shape[1]))
        check_default_inputs(model, inputs)
    m = make_model(model, inputs, jac)
    _check_uses_an_input(model, m, inputs)
    return Problem(m, xt, yt, st, get_loss(loss, delta))


def _named_inputs(model, x, xt) -> tuple[str, ...] | None:
    """A pandas Series' name or a DataFrame's columns as the inputs, where the expression
    names them (``fit("a*t + c", df["t"], df["v"])``: t had been fitted as a parameter);
    else None (the default names)."""
    if not isinstance(model, str) or ":" in model:
        return None
    names = list(x.columns) if hasattr(x, "columns") else [getattr(x, "name", None)]
    if len(names) != (1 if xt.ndim == 1 else xt.shape[1]) or \
            not all(isinstance(n, str) and n.isidentifier() for n in names):
        return None
    from .models import _mentions, table_inputs
    return table_inputs(model, names) if _mentions(model) & set(names) else None


def _check_uses_an_input(model, m: Model, inputs) -> None:
    """An expression that names none of its inputs has every free name a parameter: with
    two or more they are constants the data cannot tell apart (``a*t + c`` on x, ``z`` for
    ``x``), refused here with the input's name rather than "lost rank" after the fit."""
    from .models import unused_inputs
    if not isinstance(model, str) or ":" in model or len(m.param_names) < 2:
        return
    if list(unused_inputs(model, inputs)) == list(inputs):
        shown = ", ".join(inputs)
        raise InputError(f"the model {model!r} does not use its input {shown}: every other "
                         f"name in it ({', '.join(m.param_names)}) would be a constant "
                         "parameter", expected=f"a model of {shown}, or inputs=[...] naming "
                         "the input the model uses (e.g. inputs=['t'])")
