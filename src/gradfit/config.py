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
``fit_many`` checks its settings by the same functions (``check_optimizer_options``,
``check_bound_sides``; ``unused_p0``: a fixed value wins over p0's start, and the result
says so), so a value one refuses the other refuses in the same words.

Two configs are equal when their values are: the order of the names in ``p0``, ``options``,
``bounds`` and ``fixed`` does not matter. JSON in and out is strict: ``divergence=inf``
(never diverged) is written ``null`` and read back as inf, as an unbounded side of a bound;
a key given twice is refused (``{"lr": 0.1, "lr": 5}`` had kept the second silently).
``config.fit(x, y)`` runs the config (``FitResult.config`` holds the one a result ran)::

    >>> import numpy as np
    >>> x = np.linspace(0, 1, 20); y = 3 * x + 1
    >>> r = FitConfig(model="a*x + b", optimizer="lm").fit(x, y)
    >>> r.config.fit(x, y).params == r.params
    True
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping
from urllib.parse import parse_qsl, urlencode

import numpy as np
import torch

from .errors import InputError
from .optimizers import OPTIMIZERS, resolve_options
from .settings import (DTYPES, MAX_STARTS, MAX_STEPS, OPTION_ROWS, SETTINGS,  # noqa: F401
                       check_options, no_duplicate_keys)

#: the map fields: name -> value pairs, equal whatever their order
MAP_FIELDS = ("p0", "options", "bounds", "fixed")


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
        for name in MAP_FIELDS:
            value = pairs(name, getattr(self, name))
            if name == "bounds":
                value = tuple((k, _bound_pair(k, v)) for k, v in value)
            object.__setattr__(self, name, tuple((k, plain(v)) for k, v in value))
        self.validate()

    def _canonical(self) -> tuple:
        """The values, each map's pairs by name: what equality and the hash compare."""
        return tuple(tuple(sorted(v, key=lambda kv: kv[0])) if f.name in MAP_FIELDS else v
                     for f in dataclasses.fields(self) for v in [getattr(self, f.name)])

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._canonical() == other._canonical()

    def __hash__(self):
        return hash(self._canonical())

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
        """Every field by its row of ``SETTINGS``; p0 and fixed values finite (a name in
        both: the fixed value wins, ``unused_p0``); the options taken by the optimizer and
        each within its row's range (``check_optimizer_options``)."""
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
        check_optimizer_options(self.optimizer, self.options_dict)

    # --- serialisation -------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-ready: an infinity is None (an unbounded side; ``divergence``: never)."""
        d = dataclasses.asdict(self)
        d["p0"], d["options"], d["fixed"] = self.p0_dict, self.options_dict, self.fixed_dict
        d["bounds"] = {k: [None if math.isinf(v) else v for v in pair]
                       for k, pair in self.bounds}
        if d["divergence"] == math.inf:
            d["divergence"] = None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FitConfig":
        """``to_dict``'s form back (``divergence`` None: inf, never diverged)."""
        if not isinstance(d, Mapping):
            raise InputError("bad config", expected="a mapping of settings",
                             given=type(d).__name__)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"unknown setting {', '.join(map(repr, unknown))}",
                             expected="some of " + ", ".join(sorted(known)))
        d = dict(d)
        if "divergence" in d and d["divergence"] is None:     # JSON's word for inf
            d["divergence"] = math.inf
        return cls(**d)

    def to_json(self) -> str:
        """Strict JSON (no NaN or Infinity: ``to_dict`` writes inf as null)."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> "FitConfig":
        """A key given twice, at any depth, is refused (JSON parsers keep one silently)."""
        try:
            d = json.loads(text, object_pairs_hook=no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise InputError("bad JSON config", expected="a JSON object", given=str(exc)) from None
        except InputError as exc:
            raise InputError(f"bad JSON config: {exc.problem}", expected=exc.expected) from None
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
            if key in d:            # 'lr=0.1&lr=5' had kept the second silently
                raise InputError(f"setting {key!r} is given twice in the query",
                                 expected="each setting once")
            d[key] = SETTINGS[key].parse_text(text)
        return cls.from_dict(d)

    # --- running it ----------------------------------------------------------------
    def fit(self, x, y, *, sigma=None, inputs=None, model=None, jac=None, callback=None):
        """This run on data ``x``, ``y``: ``gradfit.fit`` with exactly these settings (the
        optimizer's options included: lm's own ``ftol`` in ``options`` too). ``model``: the
        function or ``Model`` that ``self.model`` names, for a model that is no text."""
        from .fit import run_config
        run = run_config(self, x, y, sigma=sigma, inputs=inputs, model=model, jac=jac,
                         callback=callback)
        for _ in run:
            pass
        return run.result


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
    """``(low, high)`` with None for no bound, as floats with infinities. A text is no pair
    (``"05"`` had been read as (0, 5)), and a side is a number or None: not a text
    (``"-inf"``) or a bool (True had been 1.0), as p0's values."""
    check_bound_sides(name, pair)
    try:
        lo, hi = pair
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
    except (TypeError, ValueError):
        raise InputError(f"bad bounds for {name!r}", expected="a pair (low, high)",
                         given=repr(pair)) from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise InputError(f"bad bounds for {name!r}", expected="low < high", given=f"{lo:g}:{hi:g}")
    from .bounds import check_width
    check_width(name, lo, hi)
    return lo, hi


BOUND_PAIR = "a pair (low, high) of numbers, None for an unbounded side"


def check_bound_sides(name, pair, per_problem: bool = False) -> None:
    """Refuse bounds that are no pair of numbers: a text (``"05"``), a side that is a text
    or a bool. ``per_problem`` (``fit_many``): a side may also be an array of numbers."""
    if isinstance(pair, (str, bytes)) or isinstance(pair, Mapping) or \
            not hasattr(pair, "__len__") or len(pair) != 2:
        raise InputError(f"bad bounds for {name!r}", expected=BOUND_PAIR, given=pair)
    for side in pair:
        side = plain(side)
        if side is None or (isinstance(side, (int, float)) and not isinstance(side, bool)):
            continue
        if per_problem and not isinstance(side, (str, bytes)) and hasattr(side, "__len__"):
            a = np.asarray(side)
            if a.dtype.kind in "iuf" or (a.dtype.kind == "O" and not any(
                    isinstance(v, (str, bytes, bool, np.bool_)) for v in a.reshape(-1))):
                continue
        raise InputError(f"bad bounds for {name!r}", expected=BOUND_PAIR + (
            " (or B of them, one per problem)" if per_problem else ""), given=tuple(pair))


def check_optimizer_options(optimizer: str, options: Mapping) -> dict:
    """The options ``optimizer`` takes, each by its row of the table (``OPTION_ROWS``), and
    the rules between them (nesterov needs momentum > 0): ``fit``, ``FitConfig`` and
    ``fit_many`` alike. Returns the options with the optimizer's defaults. A name it does
    not take is refused, naming the setting it looks like (``stpes``: steps)."""
    spec = OPTIMIZERS[optimizer]
    options = {k: plain(v) for k, v in options.items()}
    for name in options:
        if name in spec.options:
            continue
        if name in SETTINGS and SETTINGS[name].scope == "config":
            raise InputError(f"{name} is a setting of the run, not an option of optimizer "
                             f"{optimizer!r}", expected=f"{name}= as a setting of its own, "
                             "not in options")
        close = difflib.get_close_matches(
            name, [n for n, r in SETTINGS.items() if r.scope == "config"] + list(spec.options),
            n=1, cutoff=0.75)
        if close and close[0] != name:
            raise InputError(f"optimizer {optimizer!r} does not take {name} (did you mean "
                             f"{close[0]}?)", expected=(
                                 "one of its options: " + ", ".join(spec.options))
                             if spec.options else "no options (it takes none)")
    resolved = resolve_options(spec, options)
    check_options(options, resolved)
    return resolved


def unused_p0(p0: Mapping, fixed: Mapping, B: int | None = None) -> dict:
    """The starts in ``p0`` that a fixed value overrides: a name in both with another value
    there. The rule, in every face (``fit``, ``fit_many``, ``FitConfig``, the command
    line): a fixed parameter starts, and stays, at its fixed value; p0's other value for it
    is not used, and the result's message says so (``unused_p0_note``). Before, ``fit`` and
    ``fit_many`` dropped it without a word and the command line refused it. A p0 made for
    every parameter (a guess, an earlier fit's start) may keep a fixed one's entry.

    Returns name -> ``(start, fixed)``; with ``B`` (``fit_many``: values may be B numbers)
    name -> ``(starts, fixed values, where)``, arrays of B and the problems that differ."""
    out = {}
    for name in p0 or {}:
        if name not in (fixed or {}):
            continue
        start, held = plain(p0[name]), plain(fixed[name])
        try:
            a, b = np.broadcast_arrays(np.asarray(start, dtype=float),
                                       np.asarray(held, dtype=float))
            if B is not None:
                a, b = np.broadcast_to(a, (B,)), np.broadcast_to(b, (B,))
        except (TypeError, ValueError):
            continue           # not numbers (or not B of them): their own checks say so
        differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        if differ.any():
            out[name] = (start, held) if B is None else (a, b, np.flatnonzero(differ))
    return out


def unused_p0_note(name: str, start: float, held: float) -> str:
    """The words of ``unused_p0``'s rule in a result's message (``fit`` and ``fit_many``)."""
    return f"the start {name}={start:g} in p0 is not used: {name} is fixed at {held:g}"


def check_finite(what: str, value) -> None:
    """Refuse a value that is not a finite number (a bool is none), saying which."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise InputError(f"bad {what}", expected="a finite number", given=value)
