"""The run's settings as one declarative table: ``SETTINGS``, name -> ``Setting``.

Each row says a setting's type, default, allowed values (a registry's names, read when
asked, or a range) and help text. That one table drives every face:

* ``FitConfig`` validates with ``Setting.check`` (one voice: ``InputError``);
* the command line builds its options and choices from it (``gradfit.cli.options``);
* the web API's pydantic fields take their choices and limits from it (``web/schemas.py``);
* the page's URL form parses by its types (``FitConfig.from_query``) and ``/api/meta``
  serves ``describe()``.

A name registered in ``OPTIMIZERS`` (or ``LOSSES``, ``SCHEDULES``) is therefore accepted
everywhere at once, with nothing else to edit::

    >>> SETTINGS["optimizer"].check("adam")
    'adam'
    >>> SETTINGS["steps"].check(-1)
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: bad number of steps: expected a whole number 0..10000000, got -1
    >>> SETTINGS["momentum"].describe()["range"]
    '0 <= momentum < 1'

``scope`` says where a row lives: ``"config"`` a field of ``FitConfig``; ``"option"`` an
optimizer option, kept in ``FitConfig.options`` (its optimizer must take it); ``"page"`` a
setting of the web page's run that is not part of a fit (the held-out fraction).

Every option of every optimizer has a row (``OPTION_ROWS``: lm's ``xtol``, ``factor``,
``max_tries``, irls's ``inner_steps`` too; lm's and irls's own ``ftol``/``gtol``, named as
the config's settings, in ``OPTION_ONLY_ROWS``), and ``check_options`` holds the rules
between options (a row's ``needs``: nesterov needs momentum > 0), for ``fit``,
``FitConfig`` and ``fit_many`` alike::

    >>> check_options({"nesterov": True}, {"momentum": 0.0, "nesterov": True})
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: nesterov needs momentum > 0 (the momentum is 0): expected a momentum above 0 with nesterov (e.g. momentum=0.9, --momentum 0.9), or no nesterov
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import InputError
from .losses import LOSSES
from .models import MODELS
from .optimizers import OPTIMIZERS, SCHEDULES

DTYPES = ("float64", "float32")
DEVICES = "cpu, cuda, cuda:N or mps"
MAX_STEPS = 10_000_000
MAX_STARTS = 1000
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Setting:
    """One row: ``kind`` is ``str``, ``int``, ``float``, ``bool`` or ``map`` (name -> value).

    ``choices()`` lists the allowed names (a registry's keys, looked up on every call);
    ``low``/``high`` bound a number (``low_open``/``high_open``: strictly); ``optional``:
    None is allowed (and means "the method's own default"). ``what`` names the setting in
    messages; ``flag``/``short`` are its command-line spelling (None: not an option there).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: Callable[[], Iterable[str]] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    what: str | None = None
    scope: str = "config"
    flag: str | None = None
    short: str | None = None
    expected: str | None = None     # a message's "expected ..." where the type says too little
    allow_inf: bool = False         # divergence=inf: never call a growing loss diverged
    rule: Callable[[Any], bool] | None = None   # one more test a value must pass (``expected``)
    #: an option that needs another option's value (nesterov needs momentum > 0):
    #: ``(its value, the optimizer's options with their defaults) -> None`` if they fit,
    #: else ``(message, expected)`` (``check_options`` raises it, in the table's voice)
    needs: Callable[[Any, dict], tuple[str, str] | None] | None = None

    @property
    def label(self) -> str:
        return self.what or self.name

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def names(self) -> list[str]:
        return list(self.choices()) if self.choices else []

    def check(self, value):
        """``value`` if it is allowed, else an ``InputError`` saying what was expected."""
        if value is None and self.optional:
            return None
        if self.choices is not None:
            allowed = self.names()
            if value not in allowed:
                raise InputError(f"unknown {self.label} {value!r}",
                                 expected="one of " + ", ".join(allowed))
            return value
        if self.kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise InputError(f"bad {self.label}", expected=self.expected or "a text",
                                 given=value)
            if self.rule is not None and not self.rule(value):
                raise InputError(f"bad {self.label}", expected=self.expected, given=value)
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise InputError(f"bad {self.label}", expected="true or false", given=value)
            return value
        if self.kind == "int":
            if not isinstance(value, int) or isinstance(value, bool) or not self._in_range(value):
                raise InputError(f"bad {self.label}", expected="a whole number " + self._span(),
                                 given=value)
            return value
        if self.kind == "float":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                math.isfinite(value) or (self.allow_inf and value == math.inf))
            if not ok or not self._in_range(value):
                raise InputError(f"bad {self.label}", expected=self._number_text(), given=value)
            return value
        return value                   # "map": checked entry by entry by FitConfig

    def refusal(self, given) -> InputError:
        """The error ``check`` gives a value of the wrong type or choice, for a face that
        meets the value as text first (the command line: ``--steps 3.0``, ``-o Adam``), so
        that it says what Python says."""
        if self.choices is not None:
            return InputError(f"unknown {self.label} {given!r}",
                              expected="one of " + ", ".join(self.names()))
        expected = {"int": "a whole number " + self._span(), "float": self._number_text(),
                    "bool": "true or false"}.get(self.kind, self.expected or "a text")
        return InputError(f"bad {self.label}", expected=expected, given=given)

    def _in_range(self, v) -> bool:
        if self.low is not None and (v < self.low or (self.low_open and v == self.low)):
            return False
        return not (self.high is not None and (v > self.high or (self.high_open and v == self.high)))

    def _span(self) -> str:
        lo, hi = (None if v is None else (f"{v:g}" if self.kind == "float" else str(int(v)))
                  for v in (self.low, self.high))
        if lo is not None and hi is not None and not self.low_open and not self.high_open:
            return f"{lo}..{hi}"
        parts = ([f"{'>' if self.low_open else '>='} {lo}"] if lo is not None else []) + \
            ([f"{'<' if self.high_open else '<='} {hi}"] if hi is not None else [])
        return " and ".join(parts)

    def _number_text(self) -> str:
        if self.low == 0 and self.low_open and self.high is None:
            return "a positive finite number"
        if self.low is None and self.high is None:
            return "a finite number"
        return f"a finite number, {self.range_text()}"

    def range_text(self) -> str:
        """``"0 <= momentum < 1"``; empty without bounds."""
        if self.low is None and self.high is None:
            return ""
        text = self.name
        if self.low is not None:
            text = f"{self.low:g} {'<' if self.low_open else '<='} {text}"
        if self.high is not None:
            text = f"{text} {'<' if self.high_open else '<='} {self.high:g}"
        return text

    def parse_text(self, text: str):
        """A value from its text form (a URL query, a command line): by ``kind``."""
        import json
        try:
            if self.kind == "map":
                value = json.loads(text, object_pairs_hook=no_duplicate_keys)
                if not isinstance(value, dict):
                    raise ValueError
                return value
            if text == "" and self.optional:
                return None
            if self.kind == "bool":
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                return text.lower() in ("true", "1")
            if self.kind == "int":
                return int(text)
            if self.kind == "float":
                return float(text)
            return text
        except InputError:
            raise
        except ValueError:
            raise InputError(f"bad value for {self.name!r} in the query", given=text) from None

    def describe(self) -> dict:
        """The row as JSON, for ``/api/meta`` and the docs."""
        d = {"type": self.kind, "default": self.default, "help": self.help, "scope": self.scope,
             "optional": self.optional}
        if self.choices is not None:
            d["choices"] = self.names()
        if self.low is not None or self.high is not None:
            d.update(range=self.range_text(), low=self.low, high=self.high,
                     low_open=self.low_open, high_open=self.high_open)
        return d


def _nesterov_needs_momentum(on, options: dict) -> tuple[str, str] | None:
    """Nesterov momentum looks ahead along the momentum: without any it is undefined (torch
    refused it with a bare ValueError; the command line exited 70)."""
    momentum = options.get("momentum")
    if on and not (isinstance(momentum, (int, float)) and momentum > 0):
        now = f" (the momentum is {momentum:g})" if isinstance(momentum, (int, float)) else ""
        return (f"nesterov needs momentum > 0{now}",
                "a momentum above 0 with nesterov (e.g. momentum=0.9, --momentum 0.9), or "
                "no nesterov")
    return None


def _device_ok(v: str) -> bool:
    return re.fullmatch(r"cpu|mps|cuda(:[0-9]+)?", v) is not None


_ROWS = [
    # --- what is fitted -------------------------------------------------------------------
    Setting("model", "str", "a*x^2 + b*x + c",
            "an expression such as 'a*x^2 + b*x + c', or a family: "
            "poly:K, relu:K or mlp:H1,H2[:act]",
            expected="an expression, poly:K, relu:K or mlp:H1,H2", short="-m"),
    Setting("loss", "str", "mse", "the loss minimised", choices=lambda: LOSSES, short="-l"),
    Setting("delta", "float", 1.0, "huber's delta", low=0, low_open=True, what="huber delta"),
    # --- how --------------------------------------------------------------------------------
    Setting("optimizer", "str", "auto", "auto: the exact optimum for the loss (lm for mse, "
            "irls for mae and huber); gd, sgd, adam... to watch gradient descent",
            choices=lambda: OPTIMIZERS, short="-o"),
    Setting("lr", "float", None, "learning rate (default: the optimizer's own)", low=0,
            low_open=True, optional=True, what="learning rate"),
    Setting("steps", "int", 1000, "step limit", low=0, high=MAX_STEPS, what="number of steps",
            short="-n"),
    Setting("schedule", "str", "constant", "learning-rate schedule over the run",
            choices=lambda: SCHEDULES),
    Setting("seed", "int", 0, "seed of random starts and mini-batches", low=0, high=MAX_SEED),
    Setting("p0", "map", {}, "starting values by name, e.g. a=1.1,b=1.1,c=1.1"),
    Setting("starts", "int", None, "fit from this many starts and keep the best (default: "
            "several for flexible models, else one)", low=1, high=MAX_STARTS, optional=True,
            what="number of starts"),
    Setting("bounds", "map", {}, "bounds by name, e.g. a=0:10,b=:5 (an empty side is "
            "unbounded)"),
    Setting("fixed", "map", {}, "parameters held fixed, e.g. c=1", flag="--fix"),
    Setting("absolute_sigma", "bool", False, "take sigma as absolute: the covariance is not "
            "scaled by the residual variance (as curve_fit's absolute_sigma)"),
    Setting("options", "map", {}, "optimizer options by name (the rows of scope 'option')"),
    # --- when to stop -----------------------------------------------------------------------
    Setting("ftol", "float", None, "stop when the loss changes by less than this, relatively "
            "(default 1e-12 for gradient methods; lm and irls stop by their own rules)",
            low=0, optional=True),
    Setting("gtol", "float", None, "stop when the gradient norm is below this (default 1e-10 "
            "for gradient methods)", low=0, optional=True),
    Setting("time_limit", "float", None, "stop after this many seconds", low=0, low_open=True,
            optional=True, what="time limit"),
    Setting("divergence", "float", 1e4, "stop as diverged when the loss exceeds this many "
            "times its start (inf: never)", low=0, low_open=True, what="divergence factor",
            allow_inf=True),
    # --- where ------------------------------------------------------------------------------
    Setting("dtype", "str", "float64", "floating-point type", choices=lambda: DTYPES),
    Setting("device", "str", "cpu", "cpu (default), cuda, cuda:N or mps", expected=DEVICES,
            rule=_device_ok),
    # --- optimizer options (FitConfig.options; the optimizer must take them) ----------------
    Setting("momentum", "float", None, "momentum (momentum, sgd, rmsprop)", low=0, high=1,
            high_open=True, optional=True, scope="option"),
    Setting("nesterov", "bool", False, "Nesterov momentum (momentum, sgd; needs momentum "
            "> 0)", scope="option", needs=_nesterov_needs_momentum),
    Setting("batch_size", "int", None, "mini-batch size (sgd; default 32)", low=1,
            high=MAX_STEPS, optional=True, what="batch size", scope="option"),
    Setting("accumulate_grad", "bool", False, "gd only: never zero the gradient, as the "
            "lesson's loop does", scope="option"),
    Setting("weight_decay", "float", None, "weight decay (adam, adamw)", low=0, high=1,
            optional=True, what="weight decay", scope="option"),
    Setting("max_iter", "int", None, "L-BFGS iterations per step", low=1, high=10_000,
            optional=True, scope="option"),
    Setting("history_size", "int", None, "L-BFGS history", low=1, high=10_000, optional=True,
            scope="option"),
    # lm's and irls's own options (lm.OPTIONS, irls.OPTIONS); their ftol and gtol are in
    # OPTION_ONLY_ROWS below, as the config has settings of those names
    Setting("xtol", "float", None, "lm: stop when a step is below this, relative to the "
            "parameters (default 1e-15; fit_many: 1e-10)", low=0, high=1, optional=True,
            what="lm xtol", scope="option"),
    Setting("factor", "float", None, "lm: the first trust region's radius, times the scaled "
            "start's size (MINPACK's factor; default 0.3)", low=0, low_open=True, high=1e6,
            optional=True, what="lm factor", scope="option"),
    Setting("max_tries", "int", None, "lm: rejected trial steps in a row before it gives up "
            "(default 100)", low=1, high=MAX_STEPS, optional=True, what="lm max_tries",
            scope="option"),
    Setting("inner_steps", "int", None, "irls: Gauss-Newton steps per weighted least-squares "
            "solve (default 50)", low=1, high=MAX_STEPS, optional=True, what="irls inner_steps",
            scope="option"),
    # --- the page's run, not the fit's ------------------------------------------------------
    Setting("test_fraction", "float", 0.0, "the fraction of points held out as a test set",
            low=0, high=0.9, what="held-out fraction", scope="page"),
]

#: name -> Setting, in the order above
SETTINGS: dict[str, Setting] = {s.name: s for s in _ROWS}

#: optimizer options named as a setting of the config: lm's and irls's own ``ftol`` and
#: ``gtol`` in ``FitConfig.options`` are other settings than the config's ``ftol``/``gtol``
#: (the fit loop's), with rows of their own here
OPTION_ONLY_ROWS = [
    Setting("ftol", "float", None, "lm, irls: their own stop on the relative reduction of "
            "the loss (an option: not the config's ftol; default 1e-15 lm, 1e-14 irls)",
            low=0, high=1, optional=True, what="lm/irls option ftol", scope="option"),
    Setting("gtol", "float", None, "lm: its own stop on the cosine between the residuals and "
            "the Jacobian's columns (an option: not the config's gtol; default 1e-15)",
            low=0, high=1, optional=True, what="lm option gtol", scope="option"),
]

#: option name -> its row: every row of scope "option" (``check_options``)
OPTION_ROWS: dict[str, Setting] = {
    **{s.name: s for s in _ROWS if s.scope == "option"},
    **{s.name: s for s in OPTION_ONLY_ROWS}}


def no_duplicate_keys(pairs: list) -> dict:
    """``json.loads``' ``object_pairs_hook`` that refuses a key given twice (``{"lr": 0.1,
    "lr": 5}``: JSON parsers keep the last one without a word; the web API refuses it)."""
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise InputError(f"{key!r} is given twice", expected="each key once")
        out[key] = value
    return out


def model_families() -> list[str]:
    """The named model families (``poly``, ``relu``, ``mlp`` ...): ``MODELS``' keys."""
    return sorted(MODELS)


def check_options(options: dict, resolved: dict | None = None) -> None:
    """Each optimizer option given, ``options``, by its row (``OPTION_ROWS``), then each
    row's ``needs`` on ``resolved``, the optimizer's options with their defaults (nesterov
    needs momentum > 0)."""
    for name, value in options.items():
        row = OPTION_ROWS.get(name)
        if row is not None:
            row.check(value)
    for name, value in (resolved if resolved is not None else options).items():
        row = OPTION_ROWS.get(name)
        if row is not None and row.needs is not None:
            wrong = row.needs(value, resolved if resolved is not None else options)
            if wrong is not None:
                raise InputError(wrong[0], expected=wrong[1])


def describe() -> dict:
    """The whole table as JSON: name -> type, default, choices or range, help."""
    return {name: row.describe() for name, row in SETTINGS.items()}
