"""What the playground's API accepts and its limits, as pydantic models.

Every request is checked here, at the boundary; a bad one gets a 422 whose ``detail`` is
one line saying what was wrong, what was expected and what was given (see ``app.py``).
The limits are stated once, as constants, and ``/api/meta`` reports them to the page.

A field that is a run setting (model, loss, optimizer, lr, steps, seed, p0, schedule,
bounds ...) takes its choices, range, default and help from the settings table
(``gradfit.settings.SETTINGS``) through ``setting()`` and ``Choice()``: a name registered in
``OPTIMIZERS`` is accepted here with nothing to edit, and a request that leaves a setting
out runs the table's default, as Python and the command line do (the API had defaulted to
mae, gd and 200 exact steps). The requests' ranges are the table's: ``setting()`` refuses
another one on import. ``runconfig.config_of`` then builds the request's ``FitConfig``,
which checks what a field alone cannot (an option its optimizer takes, a fixed value inside
its bounds). The other fields are the requests' own shapes, listed in ``REQUEST_FIELDS``.
"""
from __future__ import annotations

import json
import keyword
import re
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..settings import OPTION_ROWS, SETTINGS

MAX_POINTS = 100_000          # data points in one request
MAX_STEPS = SETTINGS["steps"].high   # steps in one run: the table's (a run's memory does
                                     # not grow with them; RUN_TIME_LIMIT bounds its time)
MAX_PARAMS = 2_000            # parameters of a model
MAX_EXPR_LEN = 500            # characters of a model's text
MAX_RESOLUTION = 201          # grid points along one landscape axis
MIN_FIT_RESOLUTION = 11       # the lowest a landscape's resolution is lowered to (fit_resolution)
MAX_CURVE_POINTS = 2_000      # points of a drawn curve
MAX_STEPS_PER_FRAME = 10_000  # steps between two messages of a run
MAX_RUNS = 4                  # runs streaming at once, server-wide
RUN_TIME_LIMIT = 300.0        # seconds one run may take, whatever its client does
FRAME_SECONDS = 1 / 50        # a run sends at most this many messages a second
MAX_NOISE = 100.0             # noise scales of the built-in datasets
MAX_PATH_POINTS = 10_000      # points of a path kept in view on a landscape (the page: <= 3,003)
MAX_CHANGES = 1_000           # changes of settings in one run (replayed, and sent while it plays)
MAX_STEP_OFFSET = 1_000_000_000   # the first step's number: step numbers stay exact in JavaScript
MAX_NAME_LEN = MAX_EXPR_LEN   # characters of a parameter's or a dataset's name
# what one request's JSON can hold at most (with room for the text of its strings): a body
# past these is refused before it is parsed (``precheck``)
MAX_JSON_KEYS = 3 * MAX_PARAMS + 5 * MAX_CHANGES + 2_000
MAX_JSON_VALUES = 4 * MAX_POINTS + 2 * MAX_PATH_POINTS + 3 * MAX_PARAMS + 5 * MAX_CHANGES \
    + 10_000

LIMITS = {name: value for name, value in globals().items()
          if name.startswith("MAX_") or name in ("RUN_TIME_LIMIT", "FRAME_SECONDS")}

Finite = Annotated[float, Field(allow_inf_nan=False)]


def precheck(body: bytes | str) -> None:
    """Refuse, before it is parsed, a JSON body that holds more keys or values than any
    request may (a parse holds the interpreter's lock for about a second per 10 MB: a map
    of 450,000 names had held every other request that long, for a 422 in the end).
    Colons bound the keys and commas the values from above (strings may hold some, and
    the schemas bound strings), so a body this refuses would be refused after parsing.

    >>> precheck(b'{"params": {"a": 1, "b": 2}}')
    >>> precheck(b"{" + b'"k": 1,' * 20_000 + b"}")
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: too many keys in the body to parse (20,000): expected at most 2,000 names in params, optimum or p0, and at most 13,000 keys in all
    """
    from ..errors import InputError
    colon, comma = (b":", b",") if isinstance(body, bytes) else (":", ",")
    keys = body.count(colon)
    if keys > MAX_JSON_KEYS:
        raise InputError(f"too many keys in the body to parse ({keys:,})",
                         expected=f"at most {MAX_PARAMS:,} names in params, optimum or p0, "
                         f"and at most {MAX_JSON_KEYS:,} keys in all")
    values = body.count(comma)
    if values > MAX_JSON_VALUES:
        raise InputError(f"too many values in the body to parse (about {values:,})",
                         expected=f"at most {MAX_POINTS:,} points, {MAX_PATH_POINTS:,} path "
                         f"points, {MAX_PARAMS:,} parameters; {MAX_JSON_VALUES:,} values in all")


BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")      # UTF-8, UTF-16 LE and BE
#: arrays of plain numbers (the bulk of a body: its points), left out of the duplicate-key
#: check; the class holds no quote, so a match never reaches across a string's end
_NUMBERS = re.compile(rb"\[[-+0-9.eE,\s]{64,}\]")


def unique_keys(pairs: list) -> dict:
    """``json.loads``' ``object_pairs_hook``: an object whose key repeats is refused (JSON
    parsers keep the last one silently: ``{"n": 5, "n": 100001}`` was read as 100001)."""
    out = dict(pairs)
    if len(out) < len(pairs):
        seen = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        from ..errors import InputError
        raise InputError(f"the key {key[:40]!r} appears twice in one JSON object",
                         expected="each key once")
    return out


def check_json_body(body: bytes) -> None:
    """What a JSON body's parse would not say well: a byte order mark before it (JSON is
    UTF-8 without one), a key twice in one object. The duplicate check parses the body
    with its long arrays of numbers left out (a tenth of the parse's time), and only a
    duplicate found so is confirmed on the whole body (a key's text may hold such an array)."""
    from ..errors import InputError
    if body.startswith(BOMS):
        raise InputError("the body starts with a byte order mark (BOM)",
                         expected="JSON encoded as UTF-8 without a BOM")
    for text in (_NUMBERS.sub(b"0", body), body):
        try:
            json.loads(text, object_pairs_hook=unique_keys)
            return
        except InputError:
            if text is body:
                raise
        except (ValueError, RecursionError):    # not JSON: the parse says what is wrong
            return


_UNSET = object()
#: request fields that are not run settings (the data, views, paging of a stream)
REQUEST_FIELDS = frozenset({
    "data", "x", "y", "x2", "inputs", "sigma", "params", "optimum", "optimum_loss",
    "curve_points", "names", "slice", "resolution", "fit_resolution", "span", "path",
    "steps_per_frame",
    "step_offset", "paced", "type", "name", "n", "mult", "add", "source", "file", "points",
    "split_seed"})
#: fields named otherwise than their row of the table
ALIASES = {"split_seed": "seed"}


def Choice(name: str):
    """A ``str`` field allowed the table's choices for ``name`` (a registry's names, read at
    each request and each schema build); a bad one is refused in the table's own words."""
    row = SETTINGS[name]
    return Annotated[str, AfterValidator(row.check),
                     Field(description=row.help,
                           json_schema_extra=lambda schema: schema.update(enum=row.names()))]


def table_range(row) -> dict:
    """A row's range as pydantic's ``ge``/``gt``/``le``/``lt``."""
    low = {("gt" if row.low_open else "ge"): row.low} if row.low is not None else {}
    high = {("lt" if row.high_open else "le"): row.high} if row.high is not None else {}
    return {**low, **high}


def setting(name: str, default=_UNSET, **rest):
    """A ``Field`` with the table's default, help and range for ``name`` (one source: a
    range of another is refused here; ``rest``: ``max_length`` and such). ``default`` only
    where the field is not the run's setting itself (the data's seed, a None that means
    "not given")."""
    row = SETTINGS[name]
    assert not set(rest) & {"ge", "gt", "le", "lt"}, f"{name}: the range is the table's"
    return Field(row.default if default is _UNSET else default, description=row.help,
                 **table_range(row), **rest)


def default(name: str):
    """The table's default for ``name`` (a ``Choice`` field's)."""
    return SETTINGS[name].default


class Strict(BaseModel):
    # strict: true is no number and "61" no resolution (lax mode took them), a JSON number
    # may still be whole for a float field
    model_config = ConfigDict(extra="forbid", strict=True)


class ErrorOut(BaseModel):
    """Every error's body: one line saying what was wrong, what was expected, what was given."""

    detail: str


MAX_INPUT_NAME = 40      # characters of an input name


def usable_input_name(name: str) -> bool:
    """Whether an expression can name an input so: a Python-style name, not a keyword (an
    expression cannot write ``if``), at most ``MAX_INPUT_NAME`` characters."""
    return name.isidentifier() and not keyword.iskeyword(name) and len(name) <= MAX_INPUT_NAME


class Points(Strict):
    """The data: ``x`` and ``y`` of the same length; ``x2`` a second input column;
    ``inputs`` the input columns' names (the model's inputs: ``t`` for a column ``t``);
    ``sigma`` per-point uncertainties (weighted fits, error bars)."""

    x: list[Finite] = Field(min_length=1, max_length=MAX_POINTS)
    y: list[Finite] = Field(min_length=1, max_length=MAX_POINTS)
    x2: Optional[list[Finite]] = Field(None, max_length=MAX_POINTS)
    inputs: list[Annotated[str, Field(max_length=MAX_NAME_LEN)]] = Field(
        ["x"], min_length=1, max_length=2)
    sigma: Optional[list[Finite]] = Field(None, max_length=MAX_POINTS)

    @model_validator(mode="after")
    def _same_length(self):
        n = len(self.x)
        for name in ("y", "x2", "sigma"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"x and {name} differ in length: expected {n} values of "
                                 f"{name}, got {len(v)}")
        if len(self.inputs) != 1 + (self.x2 is not None):
            raise ValueError(f"expected {1 + (self.x2 is not None)} input names (one per x "
                             f"column), got {len(self.inputs)}")
        for name in self.inputs:
            if not usable_input_name(name):
                raise ValueError(f"bad input name {name[:40]!r}: expected a name such as t or x1")
        if len(set(self.inputs)) != len(self.inputs):
            raise ValueError("the input names repeat: expected two different names")
        if self.sigma is not None and min(self.sigma) <= 0:
            raise ValueError("sigma holds a value <= 0: expected positive uncertainties")
        return self


class ProblemIn(Strict):
    """A model, a loss and the data it is measured on."""

    data: Points
    model: str = setting("model", ..., min_length=1, max_length=MAX_EXPR_LEN)
    loss: Choice("loss") = default("loss")
    delta: Finite = setting("delta")
    test_fraction: Finite = setting("test_fraction")   # points held out as a test set
    split_seed: int = setting("seed")


ParamName = Annotated[str, Field(max_length=MAX_NAME_LEN)]
#: values by parameter name: at most ``MAX_PARAMS`` of them (a model has no more), checked
#: as the map is read, so that an oversized one is refused before its values are validated
Params = Annotated[dict[ParamName, Finite], Field(max_length=MAX_PARAMS)]
#: bounds by parameter name, as ``FitConfig.to_dict`` writes them: ``[low, high]``, null
#: for no bound on that side
Bounds = Annotated[dict[ParamName, Annotated[list[Optional[Finite]],
                                             Field(min_length=2, max_length=2)]],
                   Field(max_length=MAX_PARAMS, description=SETTINGS["bounds"].help)]
#: optimizer options by name (the table's rows of scope "option"; ``FitConfig`` checks each
#: by its row and that the optimizer takes it)
Options = Annotated[dict[Annotated[str, Field(max_length=40)], Union[bool, int, Finite]],
                    Field(max_length=len(OPTION_ROWS), description=SETTINGS["options"].help)]


class FitSettings(Strict):
    """The run settings beyond the loss, the optimizer and the start: every other field of
    ``FitConfig`` a server runs (``device`` is the server's own), each from the table."""

    schedule: Choice("schedule") = default("schedule")
    options: Optional[Options] = None
    bounds: Optional[Bounds] = None
    fixed: Optional[Params] = Field(None, description=SETTINGS["fixed"].help)
    dtype: Choice("dtype") = default("dtype")
    ftol: Optional[Finite] = setting("ftol")
    gtol: Optional[Finite] = setting("gtol")
    time_limit: Optional[Finite] = setting("time_limit")
    # JSON has no infinity: null is inf ("never"), as the table allows
    divergence: Optional[Finite] = setting("divergence")
    absolute_sigma: bool = setting("absolute_sigma")
    starts: Optional[int] = setting("starts")


class ModelIn(Strict):
    """A model's parameter names and its default start on the given data."""

    model: str = setting("model", ..., min_length=1, max_length=MAX_EXPR_LEN)
    data: Optional[Points] = None
    seed: int = setting("seed")


class EvalIn(ProblemIn):
    """The loss, its gradient and the curve at ``params``."""

    params: Params
    optimum: Optional[Params] = None        # the exact fit, to report the distance to it
    curve_points: int = Field(200, ge=2, le=MAX_CURVE_POINTS)


class LandscapeIn(ProblemIn):
    """The loss over two parameters ``names`` (and/or along one, ``slice``), the others at
    ``params``; ``span`` a half-width (None: the core's default); ``path`` points
    ``(k, 2)`` to keep in view."""

    params: Params
    names: Optional[list[ParamName]] = Field(None, min_length=2, max_length=2)
    slice: Optional[ParamName] = None
    resolution: int = Field(61, ge=2, le=MAX_RESOLUTION)
    # true: a resolution that the server's limits refuse is lowered, as far as
    # MIN_FIT_RESOLUTION, to the highest they allow (the answer's "resolution" says which)
    fit_resolution: bool = False
    span: Optional[Finite] = Field(None, gt=0)
    # each point a pair (rows of other lengths had been dropped or cut, without a word)
    path: Optional[list[Annotated[list[Finite], Field(min_length=2, max_length=2)]]] = Field(
        None, max_length=MAX_PATH_POINTS)

    @model_validator(mode="after")
    def _something(self):
        if self.names is None and self.slice is None:
            raise ValueError("nothing to compute: expected names (two parameters) or slice (one)")
        return self


class ExactIn(ProblemIn):
    """The exact optimum (optimizer ``auto``: LM for mse, IRLS for mae and huber), of the
    problem as the run states it: its bounds and fixed values, ``absolute_sigma`` for its
    uncertainty."""

    p0: Optional[Params] = setting("p0", None)
    seed: int = setting("seed")
    steps: int = setting("steps")
    bounds: Optional[Bounds] = None
    fixed: Optional[Params] = Field(None, description=SETTINGS["fixed"].help)
    absolute_sigma: bool = setting("absolute_sigma")


def _known_dataset(v: str) -> str:
    from ..datasets import DATASETS
    if v not in DATASETS:
        raise ValueError(f"unknown dataset {v[:40]!r}: expected one of {', '.join(DATASETS)}")
    return v


def _dataset_names(schema: dict) -> None:
    from ..datasets import DATASETS
    schema.update(enum=list(DATASETS))


#: a built-in dataset's name: the schema lists them (an enum), as the check accepts them
DatasetName = Annotated[str, Field(max_length=MAX_NAME_LEN, json_schema_extra=_dataset_names),
                        AfterValidator(_known_dataset)]
#: a noise scale: -0.0 (which passes ``ge=0``, but numpy's normal refuses by its sign bit:
#: it had been a 500) is taken as 0
Noise = Annotated[Finite, Field(ge=0, le=MAX_NOISE), AfterValidator(lambda v: v + 0.0)]


class DataIn(Strict):
    """A built-in dataset (see ``datasets.DATASETS``) with its noise, size and seed."""

    name: DatasetName = "lesson"
    n: int = Field(20, ge=1, le=MAX_POINTS)
    mult: Noise = 0.15
    add: Noise = 1.5
    seed: int = setting("seed", 42)


class RunIn(ProblemIn, FitSettings):
    """A run to stream: ``steps`` more steps from ``p0``, numbered from ``step_offset``, with
    every setting of ``FitConfig`` but the device (``FitSettings``)."""

    optimizer: Choice("optimizer") = default("optimizer")
    lr: Optional[Finite] = setting("lr")
    steps: int = setting("steps")
    p0: Optional[Params] = setting("p0", None)
    seed: int = setting("seed")
    steps_per_frame: int = Field(10, ge=1, le=MAX_STEPS_PER_FRAME)
    step_offset: int = Field(0, ge=0, le=MAX_STEP_OFFSET)
    optimum: Optional[Params] = None
    optimum_loss: Optional[Finite] = None
    curve_points: int = Field(200, ge=2, le=MAX_CURVE_POINTS)
    paced: bool = True          # False: send as fast as the fit runs (benchmarks)


class SetIn(Strict):
    """A change of settings while a run plays: it goes on from where it is."""

    type: str = Field("set", max_length=40)
    lr: Optional[Finite] = setting("lr")
    loss: Optional[Choice("loss")] = None
    optimizer: Optional[Choice("optimizer")] = None


Name = Annotated[str, Field(max_length=200)]


class CodeData(Strict):
    """Where the page's data came from: a built-in dataset (``name``, ``n``, ``mult``,
    ``add``, ``seed``) or an uploaded CSV (``source="csv"``, ``file``, ``x``, ``y``,
    ``sigma``: its columns)."""

    source: Literal["builtin", "csv"] = "builtin"
    name: DatasetName = "lesson"
    n: Optional[int] = Field(None, ge=1, le=MAX_POINTS)
    mult: Optional[Noise] = None
    add: Optional[Noise] = None
    seed: int = setting("seed", 42)
    file: Optional[Name] = None
    x: Optional[Name] = None
    y: Optional[Name] = None
    sigma: Optional[Name] = None


class CodeIn(FitSettings):
    """The page's state, for the "show code" snippet: every field of ``FitConfig`` (the
    device too: the snippet runs where its reader runs it)."""

    data: CodeData = Field(default_factory=CodeData)
    model: str = setting("model", min_length=1, max_length=MAX_EXPR_LEN)
    loss: Choice("loss") = default("loss")
    delta: Finite = setting("delta")      # huber's
    optimizer: Choice("optimizer") = default("optimizer")
    lr: Optional[Finite] = setting("lr")
    steps: int = setting("steps")
    p0: Optional[Params] = setting("p0", None)
    seed: int = setting("seed")
    device: str = setting("device", max_length=40)
    points: Optional[Points] = None       # edited or uploaded data: written out literally

