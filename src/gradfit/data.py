"""Data for gradfit: the lesson's noisy quadratic, synthetic data, and the checks every
array passes (CSV files are read by ``csv_read``).

Every loader returns a :class:`Dataset` of float64 numpy arrays; bad data raises
:class:`~gradfit.errors.DataError` naming the file, row and column.

The lesson's recipe (fast.ai lesson 3), reproduced bit for bit::

    np.random.seed(42)
    x = torch.linspace(-2, 2, steps=n)[:, None]          # float32
    y = add_noise(f(x), 0.15, 1.5)                       # f(x) = 3x²+2x+1, in float32
    # add_noise(v, mult, add) = v*(1+normal(scale=mult)) + normal(scale=add), float64

    >>> d = lesson_data()
    >>> d.n, d.x_names, d.name
    (20, ('x',), 'lesson')
    >>> [round(float(v), 4) for v in d.y[:3]]
    [11.869, 6.5433, 5.9396]
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gradfit.errors import DataError

DROP_HINT = "(or drop such rows with --drop-nan / drop_nan=True)"
_DROP_HINT = f"a finite number {DROP_HINT}"


def real_array(a, name: str = "data") -> np.ndarray:
    """``a`` as float64; complex numbers are refused rather than cut to their real part;
    the masked entries of a numpy masked array are NaN (missing), never their hidden
    values (a masked outlier of 1e6 had been fitted)."""
    a = unmasked(a) if isinstance(a, torch.Tensor) else a
    check_real(a, name)
    return np.array(unmasked(a), dtype=np.float64)


def unmasked(a):
    """A numpy masked array with its masked entries as NaN (float64), a pandas object with
    its missing values (``pd.NA`` of a nullable column) as NaN; anything else as is."""
    if np.ma.isMaskedArray(a):
        return np.ma.filled(a.astype(np.float64), np.nan)
    if isinstance(a, torch.Tensor):         # its values only (one that requires grad too)
        check_has_values(a)
        return a.detach().cpu().numpy()
    if type(a).__module__.startswith("pandas") and hasattr(a, "to_numpy"):
        try:
            return a.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):     # text cells: the caller's conversion says so
            return a
    return a


def check_has_values(t: torch.Tensor) -> None:
    """Refuse a tensor on the 'meta' device: it has a shape and no values."""
    if t.device.type == "meta":
        raise DataError("a tensor on the 'meta' device holds no values",
                        expected="data on the cpu or a gpu")


TIMES = ("datetime64", "timedelta64", "period")
TIME_ADVICE = ("numbers: a time as the seconds (or days) since a start, e.g. "
               "(t - t[0]) / np.timedelta64(1, 's')")


def check_not_times(a, name: str = "data") -> None:
    """Refuse dates and durations: as numbers they are counts of an unstated unit (ns, us
    or days, by the array's dtype) and NaT is -9.2e18, which had been fitted as a point."""
    import datetime
    dtype = getattr(a, "dtype", None)
    if getattr(dtype, "kind", None) in ("M", "m") or str(dtype).startswith(TIMES):
        raise DataError(f"bad {name}: times ({dtype})", expected=TIME_ADVICE)
    if isinstance(a, (list, tuple)) and a and isinstance(
            a[0], (datetime.date, datetime.timedelta, np.datetime64, np.timedelta64)):
        raise DataError(f"bad {name}: times ({type(a[0]).__name__})", expected=TIME_ADVICE)


def check_real(a, name: str = "data") -> None:
    """Refuse complex numbers and times in ``a`` (read off its dtype: a lazy array is not
    loaded)."""
    check_not_times(a, name)
    if np.iscomplexobj(a):
        raise DataError(f"bad {name}: complex numbers", expected="real numbers",
                        given=f"{getattr(a, 'dtype', None) or np.asarray(a).dtype}")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = real_array(a)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Dataset:
    """Points to fit: ``x`` (n,) or (n, d), ``y`` (n,), optional ``sigma`` (n,), all float64.

    The arrays are copied and made read-only. ``dropped`` counts rows left out because
    of missing or non-finite values (``load_csv(..., drop_nan=True)``).

    >>> d = Dataset(x=[0, 1, 2], y=[1, 3, 5], sigma=None, x_names=("x",))
    >>> d.n, d.n_inputs, d.to_dict()["y"]
    (3, 1, [1.0, 3.0, 5.0])
    """

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray | None
    x_names: tuple[str, ...]
    y_name: str = "y"
    name: str = ""
    dropped: int = 0
    columns: tuple[str, ...] = ()   # a CSV's named columns, in order (what x/y may name)

    def __post_init__(self):
        x, y = _frozen(self.x), _frozen(self.y)
        sigma = None if self.sigma is None else _frozen(self.sigma)
        names = (self.x_names,) if isinstance(self.x_names, str) else tuple(self.x_names)
        arrays, d = [a for a in (x, y, sigma) if a is not None], x.shape[-1] if x.ndim == 2 else 1
        problem = ("x and y do not match" if y.ndim != 1 or x.ndim not in (1, 2) or len(x) != len(y)
                   else "sigma does not match y" if sigma is not None and sigma.shape != y.shape
                   else "x_names does not match x" if len(names) != d
                   else "non-finite values" if not all(np.isfinite(a).all() for a in arrays)
                   else "sigma has values <= 0" if sigma is not None and not (sigma > 0).all()
                   else None)
        if problem:
            raise DataError(problem, expected="finite x of shape (n,) or (n, d) with d x_names, "
                            "y and optional sigma > 0 of shape (n,)", where=self.name or None,
                            given=f"x {x.shape}, y {y.shape}, {len(names)} x_names")
        for field, value in (("x", x), ("y", y), ("sigma", sigma), ("x_names", names)):
            object.__setattr__(self, field, value)

    @property
    def n(self) -> int:
        """Number of points."""
        return len(self.y)

    @property
    def n_inputs(self) -> int:
        """Number of input columns: 1 when ``x`` has shape (n,)."""
        return 1 if self.x.ndim == 1 else self.x.shape[1]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (plain lists and numbers)."""
        return {"name": self.name, "x_names": list(self.x_names), "y_name": self.y_name,
                "n": self.n, "n_inputs": self.n_inputs, "dropped": self.dropped,
                "x": self.x.tolist(), "y": self.y.tolist(),
                "sigma": None if self.sigma is None else self.sigma.tolist()}


def _lesson_f(x):
    return 3*x**2 + 2*x + 1


def lesson_data(n: int = 20) -> Dataset:
    """The lesson's data: ``3x²+2x+1`` on ``torch.linspace(-2, 2, n)`` (float32), with
    15% multiplicative and 1.5 additive normal noise from ``np.random.seed(42)``.

    ``x`` holds the float32 grid cast to float64; ``y`` equals the lesson's float64 ``y``.

    >>> d = lesson_data(5)
    >>> d.x.tolist()
    [-2.0, -1.0, 0.0, 1.0, 2.0]
    """
    data = synthetic(_lesson_f, n=n, x_range=(-2.0, 2.0), mult=0.15, add=1.5, seed=42)
    return Dataset(data.x, data.y, None, ("x",), name="lesson")


def _check_number(value, label: str, *, minimum: float | None = None, top=None) -> float:
    kinds = (int, np.integer) if top else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) \
            or (minimum is not None and value < minimum) or (top and value > top):
        what = "an integer" if top else "a finite number"
        what += "" if minimum is None else f" >= {minimum:g}" + (f" and <= {top}" if top else "")
        raise DataError(f"bad {label}", expected=what, given=value)
    return int(value) if top else float(value)


def synthetic(f: Callable | str, *, n: int = 20, x_range: tuple[float, float] = (-2.0, 2.0),
              mult: float = 0.15, add: float = 1.5, seed: int = 42) -> Dataset:
    """Noisy samples of ``f`` by the lesson's recipe, from a private ``RandomState(seed)``.

    ``x = torch.linspace(lo, hi, n)`` in float32; ``f`` is evaluated on that float32
    tensor (shape (n,)); then ``y = f(x)*(1 + N(0, mult)) + N(0, add)`` in float64, the
    multiplicative draw first. ``f`` is a callable on tensors or a text expression in
    ``x`` with no free parameters. The global numpy random state is left alone.

    >>> def line(x): return 2*x + 1
    >>> d = synthetic(line, n=3, x_range=(0, 1), mult=0, add=0)
    >>> d.x.tolist(), d.y.tolist(), d.name
    ([0.0, 0.5, 1.0], [1.0, 2.0, 3.0], 'synthetic: line')
    """
    n = _check_number(n, "number of points n", minimum=1, top=10**9)
    try:
        lo, hi = x_range
    except (TypeError, ValueError):
        raise DataError("bad x_range", expected="two numbers (lo, hi)", given=x_range) from None
    lo, hi = _check_number(lo, "x_range start"), _check_number(hi, "x_range end")
    if not lo < hi:
        raise DataError("bad x_range", expected="lo < hi", given=x_range)
    mult = _check_number(mult, "mult (multiplicative noise scale)", minimum=0)
    add = _check_number(add, "add (additive noise scale)", minimum=0)
    seed = _check_number(seed, "seed", minimum=0, top=2**32 - 1)
    if isinstance(f, str):
        from gradfit.expr import parse_expression
        expr = parse_expression(f, inputs=("x",))
        if expr.params:
            raise DataError(f"the expression has free parameters: {', '.join(expr.params)}",
                            expected="an expression in x with numbers only, e.g. '3*x^2+2*x+1'",
                            given=f)
        func, name = (lambda t: expr({"x": t})), f"synthetic: {f}"
    elif callable(f):
        func, name = f, f"synthetic: {getattr(f, '__name__', type(f).__name__)}"
    else:
        raise DataError("bad function f", expected="a callable or a text expression in x",
                        given=repr(f))

    xt = torch.linspace(lo, hi, steps=n, dtype=torch.float32)
    with torch.no_grad():
        out = func(xt)
    fx = np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out, dtype=np.float64)
    if fx.size == 1:
        fx = np.full(n, fx.item())
    elif fx.size == n:
        fx = fx.reshape(n)
    else:
        raise DataError("f returned the wrong shape", expected=f"{n} values (one per x)",
                        given=fx.shape, where=name)
    bad = ~np.isfinite(fx)
    if bad.any():
        raise DataError(f"f is not finite at x = {float(xt[bad.argmax()]):g}",
                        expected="finite values over x_range", where=name)
    rs = np.random.RandomState(seed)          # = np.random.seed(seed), but private
    noise_mult = rs.normal(scale=mult, size=n)  # drawn first, as in the lesson
    y = fx * (1 + noise_mult) + rs.normal(scale=add, size=n)
    return Dataset(xt.numpy().astype(np.float64), y, None, ("x",), name=name)


def check_enough_points(data: Dataset, n_params: int) -> None:
    """Raise DataError when there are fewer points than parameters.

    >>> check_enough_points(lesson_data(), 3)
    >>> check_enough_points(lesson_data(2), 3)
    Traceback (most recent call last):
    ...
    gradfit.errors.DataError: lesson: 2 points but 3 parameters: need at least 3 points
    """
    if data.n < n_params:
        p, q = "s" * (data.n != 1), "s" * (n_params != 1)
        raise DataError(f"{data.n} point{p} but {n_params} parameter{q}: need at least "
                        f"{n_params} points", where=data.name or None)




def load_data(spec: str, **csv_options) -> Dataset:
    """A built-in dataset by name (see ``DATASETS``), else ``load_csv(spec, **csv_options)``.

    Built-in names win over files of the same name (write ``./lesson`` for such a file);
    CSV options other than None/False are refused for a built-in dataset.

    >>> load_data("lesson").name
    'lesson'
    """
    from .csv_read import STDIN, load_csv
    from .datasets import DATASETS      # the registry builds on this module
    spec = str(spec)
    if spec in DATASETS:
        given = sorted(k for k, v in csv_options.items() if v is not None and v is not False)
        if given:
            raise DataError(f"options {', '.join(given)} apply only to CSV files",
                            expected=f"no CSV options for the built-in dataset {spec!r}")
        return DATASETS[spec]()
    if spec != STDIN and not Path(spec).exists():
        raise DataError(f"no built-in dataset or file named {spec!r}",
                        expected="a built-in dataset (" + ", ".join(DATASETS)
                        + "), the path of a CSV file, or - for standard input")
    return load_csv(spec, **csv_options)


def as_tensors(data: Dataset, dtype: torch.dtype = torch.float64, device="cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(x, y, sigma)`` as new tensors (``sigma`` None when the data has none).

    >>> x, y, s = as_tensors(lesson_data(), dtype=torch.float32)
    >>> x.shape, y.dtype, s
    (torch.Size([20]), torch.float32, None)
    """
    def t(a):
        return None if a is None else torch.tensor(a, dtype=dtype, device=device)
    return t(data.x), t(data.y), t(data.sigma)
