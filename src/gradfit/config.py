"""A run described by one value: ``FitConfig``, frozen and serialisable.

Every field of a fit, seed included, so a command, an API call or a link reproduces a
run bit for bit. Round trips through dicts, JSON and URL queries::

    >>> c = FitConfig(model="a*x^2 + b*x + c", loss="mae", optimizer="gd", lr=0.01, steps=10)
    >>> FitConfig.from_query(c.to_query()) == c
    True
    >>> FitConfig.from_json(c.to_json()) == c
    True

Validation happens here, at the boundary, in one voice (``InputError``), by the rows of
the settings table (``gradfit.settings.SETTINGS``): each field's type, choices and range are
stated there once, for this class, the command line, the web API and the page's URL.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

import numpy as np
import torch

from .errors import InputError
from .optimizers import OPTIMIZERS, resolve_options
from .settings import DTYPES, MAX_STARTS, MAX_STEPS, SETTINGS, check_options  # noqa: F401


@dataclass(frozen=True)
class FitConfig:
    """Everything that decides a fit, apart from the data.

    ``model``: an expression, ``poly:K``, ``relu:K`` or ``mlp:H1,H2[:act]``.
    ``loss`` (``delta`` for huber), ``optimizer`` (``lr`` None = its default; ``options``
    such as momentum, batch_size, accumulate_grad), ``schedule``, ``steps``: the step limit.
    ``p0``: starting values by name. ``seed``: random starts and mini-batches.
    ``ftol``: stop when the loss changes by less than this, relatively; ``gtol``: when the
    gradient norm falls below this (None: 1e-12 and 1e-10 for gradient methods, off for lm
    and irls, which stop by their own rules); ``time_limit`` in seconds (None: none).
    ``divergence``: stop as diverged when the loss exceeds this many times its start.
    """

    model: str = "a*x^2 + b*x + c"
    loss: str = "mse"
    delta: float = 1.0
    optimizer: str = "auto"
    lr: float | None = None
    steps: int = 1000
    p0: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    ftol: float | None = None
    gtol: float | None = None
    time_limit: float | None = None
    schedule: str = "constant"
    options: tuple[tuple[str, Any], ...] = ()
    divergence: float = 1e4
    dtype: str = "float64"
    device: str = "cpu"
    bounds: tuple[tuple[str, tuple[float, float]], ...] = ()
    fixed: tuple[tuple[str, float], ...] = ()
    absolute_sigma: bool = False
    starts: int | None = None

    def __post_init__(self):
        # numpy scalars (np.float64, np.int64, np.bool_) are the Python numbers they hold
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, plain(getattr(self, f.name)))
        # accept mappings for p0, options, bounds and fixed; store tuples (hashable, frozen)
        for name in ("p0", "options", "bounds", "fixed"):
            value = pairs(name, getattr(self, name))
            if name == "bounds":
                value = tuple((k, _bound_pair(k, v)) for k, v in value)
            object.__setattr__(self, name, tuple((k, plain(v)) for k, v in value))
        self.validate()

    @property
    def bounds_dict(self) -> dict[str, tuple[float, float]]:
        return dict(self.bounds)

    @property
    def fixed_dict(self) -> dict[str, float]:
        return dict(self.fixed)

    @property
    def p0_dict(self) -> dict[str, float]:
        return dict(self.p0)

    @property
    def options_dict(self) -> dict[str, Any]:
        return dict(self.options)

    @property
    def learning_rate(self) -> float:
        return OPTIMIZERS[self.optimizer].default_lr if self.lr is None else self.lr

    def validate(self) -> None:
        """Every field by its row of ``SETTINGS``; p0 and fixed values finite; the options
        taken by the optimizer and each within its row's range."""
        for f in dataclasses.fields(self):
            SETTINGS[f.name].check(getattr(self, f.name))
        for name, value in self.p0 + self.fixed:
            check_finite(f"value of {name!r}", value)
        bounds = self.bounds_dict
        for name, value in self.fixed:        # a value held where its bounds forbid it
            lo, hi = bounds.get(name, (-math.inf, math.inf))
            if not lo <= value <= hi:
                raise InputError(f"{name!r} is fixed at {value:g}, outside its bounds "
                                 f"{lo:g}..{hi:g}", expected="a fixed value within its bounds, "
                                 "or no bounds for a fixed parameter")
        resolve_options(OPTIMIZERS[self.optimizer], self.options_dict)
        check_options(self.options_dict)

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["p0"], d["options"], d["fixed"] = self.p0_dict, self.options_dict, self.fixed_dict
        d["bounds"] = {k: [None if math.isinf(v) else v for v in pair]
                       for k, pair in self.bounds}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown setting {', '.join(map(repr, unknown))}",
                             expected="some of " + ", ".join(sorted(known)))
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "FitConfig":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError("bad JSON config", expected="a JSON object", given=str(exc)) from None
        if not isinstance(d, dict):
            raise InputError("bad JSON config", expected="a JSON object", given=type(d).__name__)
        return cls.from_dict(d)

    def to_query(self) -> str:
        """Only the fields that differ from the defaults; p0 and options as JSON."""
        default = FitConfig()
        pairs = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == getattr(default, f.name):
                continue
            if SETTINGS[f.name].kind == "map":
                value = json.dumps(self.to_dict()[f.name])
            pairs.append((f.name, "" if value is None else str(value)))
        return urlencode(pairs)

    @classmethod
    def from_query(cls, query: str) -> "FitConfig":
        """Each value parsed by its row's type (``Setting.parse_text``)."""
        known = [f.name for f in dataclasses.fields(cls)]
        d: dict[str, Any] = {}
        for key, text in parse_qsl(query.lstrip("?#"), keep_blank_values=True):
            if key not in known:
                raise InputError(f"unknown setting {key!r}", expected="some of " + ", ".join(known))
            d[key] = SETTINGS[key].parse_text(text)
        return cls.from_dict(d)


def plain(value):
    """A numpy scalar, or a 0-d numpy array or torch tensor of a real number, as the Python
    number it holds; anything else as it is."""
    if isinstance(value, np.generic) and isinstance(value, (np.bool_, np.integer, np.floating)):
        return value.item()
    if getattr(value, "ndim", None) == 0 and type(value).__module__.split(".")[0] in (
            "numpy", "torch"):
        held = value.item()
        return held if isinstance(held, (bool, int, float)) else value
    if isinstance(value, tuple) and any(isinstance(v, np.generic) for v in value):
        return tuple(plain(v) for v in value)
    return value


def dtype_name(value):
    """A dtype given as numpy's or torch's own (``np.float64``, ``np.dtype("float32")``,
    ``torch.float64``) as its name (``"float64"``); a text, or anything else, as it is."""
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    try:
        return np.dtype(value).name
    except TypeError:
        return value


_MAP_EXPECTED = {"p0": "name -> starting value", "fixed": "name -> value",
                 "bounds": "name -> (low, high)", "options": "option name -> value"}


def pairs(name: str, value) -> tuple:
    """A map setting as ``((key, value), ...)``: from a mapping, None, or such pairs."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        return tuple(value.items())
    if isinstance(value, tuple) and all(isinstance(kv, tuple) and len(kv) == 2
                                        and isinstance(kv[0], str) for kv in value):
        return value
    raise InputError(f"bad {name}", expected="a mapping " + _MAP_EXPECTED[name] + ", e.g. "
                     + ("{'a': (0, 10)}" if name == "bounds" else "{'a': 1.0}"),
                     given=type(value).__name__)


def _bound_pair(name, pair) -> tuple[float, float]:
    """``(low, high)`` with None for no bound, as floats with infinities."""
    try:
        lo, hi = pair
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise InputError(f"bad bounds for {name!r}", expected="a pair (low, high)",
                         given=repr(pair)) from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise InputError(f"bad bounds for {name!r}", expected="low < high", given=f"{lo}:{hi}")
    return lo, hi


def check_finite(what: str, value) -> None:
    """Refuse a value that is not a finite number (a bool is none), saying which."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"bad {what}", expected="a finite number", given=value)
