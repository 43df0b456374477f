"""What a request costs, before it runs: work (about how many floating-point operations) and
memory (bytes at its peak), from the points ``n``, the parameter sets ``m``, and the model's
own size (its parameter count ``P`` and its width ``w``).

The width of a model is how many float64 numbers one forward pass holds per data point and
parameter set (measured on this code, with room to spare):

- ``poly:K``: 4 live without gradients; autograd keeps the ``2K`` steps of Horner's rule
  (a Jacobian, measured: about 12);
- ``relu:K``: ``3K + 2`` (each unit's pre-activation, ReLU and the sum);
- ``mlp:H1,..``: ``3 max(H)`` live, ``4 sum(H) + 8`` kept for the gradient;
- an expression: its operators and calls, plus ``P`` for a design matrix.

The prices, in float64 numbers (8 bytes each)::

    eval        memory n (w_grad + 4),                  work 3 n f
    landscape   memory 3 m P + rows n (w_live + 2),     work m n e ELEMENT_WORK (rows to fit)
    exact       memory r P (j + 6) + 4 P^2 + n w_grad,  work 10 * 10 (n + r) P (w_grad + P)
    run (step)  as eval for gradient methods, as one exact iteration for lm / auto / irls

An answer is priced by what it holds, too: rendering a number to JSON takes about 1.5 us
and holds the interpreter's lock (the event loop waits), so an eval's curve (``x``, ``y``
and each ReLU unit's part: ``curve_points x (units + 2)`` numbers, or a 41 x 41 surface)
may hold at most ``MAX_ANSWER_NUMBERS``, and a run's frame (its curve, its parameters,
the losses since the last frame, the changes of settings) at most ``MAX_FRAME_NUMBERS``
(a run sends up to 50 a second, each also compressed on the event loop)::

    >>> from gradfit.models import make_model
    >>> price_eval(make_model("relu:999"), 20, 2000, ServerLimits())
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: too large an answer for one request: its curve holds about 2e+06 numbers (curve_points x (ReLU units + 2)) where the limit is 250,000 (8 times over): expected fewer curve_points or fewer units

with ``f`` the operations per point and parameter set, ``e`` the elementwise tensor
operations per point and parameter set of a batched forward pass and its loss
(``landscape_ops``: measured, a function call costs about four of ``+``), ``j`` the
Jacobian's width (autograd builds it by a backward pass batched over the ``P``
parameters), ``r`` the rows of the Jacobian's evaluation (``n``, or ``n^2`` up to 150
points, where it is taken row by row) and 10 iterations (the deadline holds the rest; each
iteration is a tenth of the work limit, so a cancelled fit stops soon). A request over a limit gets a 422 that names the
limit and by how much it is over::

    >>> from gradfit.models import make_model
    >>> c = price_exact(make_model("relu:999"), 10_000, ServerLimits())
    Traceback (most recent call last):
    ...
    gradfit.errors.InputError: too much memory for one request: about 4.6e+05 MB where the limit is 200 MB (2.3e+03 times over): expected fewer points or a smaller model

The server's memory cap is shared out once, at start (``ServerLimits``): what the process
holds with nothing to do (``RESERVED``), small requests (``LIGHT_MEMORY`` each), runs
(``RUN_MEMORY`` each), and the rest split between the heavy workers.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError
from ..models import MLPModel, Model, PolynomialModel, ReLUSumModel

MB = 1 << 20
DEFAULT_MEMORY = 1 << 30          # --max-memory
DEFAULT_SECONDS = 10.0            # --max-seconds
RESERVED = 400 * MB               # torch, numpy, FastAPI, lazily loaded kernels, request bodies
LIGHT_MEMORY = 16 * MB            # a small request (the light lane)
LIGHT_WORK = 5e7                  # ... and its work
RUN_MEMORY = 48 * MB              # one streaming run's step
RUN_STEP_WORK = 2e8               # one step of a run (~50 ms): cancel stays quick
MAX_WORK = 2e10                   # one request (~5 s here)
ELEMENT_WORK = 16                 # work of one elementwise tensor operation on one number
                                  # (measured 0.1-1.3 ns here: priced as 4 ns, 3x to spare)
MAX_JSON_BYTES = 16 * MB          # a JSON body
MAX_CSV_BYTES = 20 * MB           # an uploaded file
MAX_CSV_COLUMNS = 1_000           # columns of an uploaded file
MAX_BODY_BYTES_IN_FLIGHT = 64 * MB   # bodies being received at once, server-wide
MAX_CONNECTIONS = 2_000           # connections; past it a new one closes the longest idle
MAX_REQUESTS = 1_000              # HTTP requests answered at once (past it, 503 + Retry-After)
DRAIN_BYTES = 64 * MB             # a refused body's rest read (and thrown away) after its answer
SWITCH_SECONDS = 0.0005           # sys.setswitchinterval in a server process
EXACT_ITERATIONS = 10             # iterations an exact fit is priced for (the deadline holds the rest)
AUTOGRAD = 10                     # a Jacobian's batched double backward, per number it touches
MAX_ANSWER_NUMBERS = 250_000      # numbers in one answer's curve (~0.3 s to render, ~3 MB)
CHUNK_NUMBERS = 1 << 17           # numbers in one temporary of a landscape's batched call
MAX_FRAME_NUMBERS = 50_000        # numbers in one message of a run (~60 ms to render, ~600 KB)
NUMBER_BYTES = 64                 # a number in an answer: a Python float, its list slot, its text


@dataclass(frozen=True)
class ServerLimits:
    """The server's caps: memory (bytes), seconds a request may take, workers.

    >>> ServerLimits().job_memory // MB
    200
    """

    max_memory: int = DEFAULT_MEMORY
    max_seconds: float = DEFAULT_SECONDS
    heavy_workers: int = 2
    light_workers: int = 2
    max_runs: int = 4
    send_timeout: float = 10.0        # seconds a run's message may take to go out

    def __post_init__(self):
        least = RESERVED + self.light_workers * LIGHT_MEMORY + self.max_runs * RUN_MEMORY \
            + self.heavy_workers * 32 * MB
        if self.max_memory < least:
            shown = f"{self.max_memory / MB:.3g} MB" if self.max_memory >= MB else \
                f"{self.max_memory:,} bytes"
            raise InputError(f"the memory cap is too small ({shown})",
                             expected=f"at least {least // MB} MB")
        if not (math.isfinite(self.max_seconds) and 0 < self.max_seconds <= 3600):
            raise InputError("bad time limit", expected="seconds in (0, 3600]",
                             given=self.max_seconds)

    @property
    def job_memory(self) -> int:
        """Bytes one heavy request may use: what is left, split between the heavy workers."""
        rest = self.max_memory - RESERVED - self.light_workers * LIGHT_MEMORY \
            - self.max_runs * RUN_MEMORY
        return rest // self.heavy_workers

    def to_dict(self) -> dict:
        return {"MAX_MEMORY": self.max_memory, "MAX_SECONDS": self.max_seconds,
                "JOB_MEMORY": self.job_memory, "MAX_WORK": MAX_WORK,
                "MAX_JSON_BYTES": MAX_JSON_BYTES, "MAX_CSV_BYTES": MAX_CSV_BYTES,
                "MAX_CSV_COLUMNS": MAX_CSV_COLUMNS, "MAX_ANSWER_NUMBERS": MAX_ANSWER_NUMBERS,
                "MAX_FRAME_NUMBERS": MAX_FRAME_NUMBERS}


@dataclass(frozen=True)
class Cost:
    """A request's price: ``work`` (operations) and ``memory`` (bytes at its peak)."""

    work: float
    memory: float

    @property
    def light(self) -> bool:
        return self.work <= LIGHT_WORK and self.memory <= LIGHT_MEMORY


_OPS = re.compile(r"[-+*/^(]")
_CALLS = re.compile(r"[A-Za-z_]\w*\s*\(|\^")     # a function's call, or a power
_ARITHMETIC = re.compile(r"[-+*/]")
LOSS_OPS = 6                       # a residual, its loss (mae and huber: more), the sum


def landscape_ops(model: Model) -> float:
    """Elementwise tensor operations, per point and parameter set, of a landscape's batched
    forward pass and its loss, as measured on this code (2,000 points, huber, the server's
    settings: about 1 ns each, at most 1.3; ``ELEMENT_WORK`` prices one): an expression's
    ``+ - * /`` one each, its calls and powers (``sin(``, ``exp(``, ``^``) four each;
    ``poly:K`` one a degree; ``relu:K`` 11 a unit and input; an ``mlp`` 10 a hidden unit
    and half one a weight (its matrix products are batched).

    >>> from gradfit.models import make_model
    >>> [landscape_ops(make_model(m)) for m in ("a*x+b", "a*sin(b*x)+c", "poly:3", "relu:2")]
    [8, 13, 15, 32]
    """
    if isinstance(model, PolynomialModel):
        return LOSS_OPS + 6 + model.degree
    if isinstance(model, ReLUSumModel):
        return LOSS_OPS + 4 + 11 * model.units * len(model.input_names)
    if isinstance(model, MLPModel):
        sizes = (len(model.input_names),) + tuple(model.hidden) + (1,)
        return LOSS_OPS + 10 * sum(model.hidden) + sum(a * b for a, b in
                                                       zip(sizes[:-1], sizes[1:])) / 2
    spec = getattr(model, "spec", "")
    return LOSS_OPS + len(_ARITHMETIC.findall(spec)) + 4 * len(_CALLS.findall(spec))


def widths(model: Model) -> tuple[float, float, float, float]:
    """``(live, kept, jacobian, ops)``: numbers per point and parameter set held without
    gradients, kept for a gradient, held while autograd builds a Jacobian, and operations."""
    p = model.n_params
    if isinstance(model, PolynomialModel):
        k = model.degree
        return 4, 2 * k + 4, 12, 2 * k + 2
    if isinstance(model, ReLUSumModel):
        k = model.units * len(model.input_names)
        return 3 * k + 4, 3 * k + 4, 3 * k + 4, 3 * k + 2
    if isinstance(model, MLPModel):
        h = model.hidden
        return 3 * max(h) + 4, 4 * sum(h) + 8, 4 * sum(h) + 8, 2 * p
    ops = len(_OPS.findall(getattr(model, "spec", ""))) + 2
    return ops + p + 2, 2 * ops + p + 4, 2 * ops + p + 4, 2 * ops + 2 * p


def check(cost: Cost, memory_cap: float, what: str = "one request") -> Cost:
    """``cost`` as is, or a 422 that names the limit passed and by how much."""
    if cost.memory > memory_cap:
        raise InputError(f"too much memory for {what}: about {cost.memory / MB:.2g} MB where "
                         f"the limit is {memory_cap / MB:.0f} MB "
                         f"({cost.memory / memory_cap:.2g} times over)",
                         expected="fewer points or a smaller model")
    if cost.work > MAX_WORK:
        raise InputError(f"too much work for {what}: about {cost.work:.2g} operations where "
                         f"the limit is {MAX_WORK:.0e} ({cost.work / MAX_WORK:.2g} times over)",
                         expected="fewer points, a lower resolution or a smaller model")
    return cost


def curve_numbers(model: Model, curve_points: int) -> tuple[int, str]:
    """Numbers in a drawn curve (``views.curve``) and what makes them: ``x``, ``y`` and
    each ReLU unit's part over one input; a surface over two."""
    from .views import SURFACE_POINTS
    if len(model.input_names) > 1:
        return SURFACE_POINTS * (SURFACE_POINTS + 2), "a surface"
    if isinstance(model, ReLUSumModel):
        return curve_points * (model.units + 2), "curve_points x (ReLU units + 2)"
    return curve_points * 2, "curve_points x 2"


def price_eval(model: Model, n: int, curve_points: int, limits: ServerLimits) -> Cost:
    """The loss and gradient at one parameter set, and the curve (what it holds, too)."""
    live, kept, _, ops = widths(model)
    numbers, why = curve_numbers(model, curve_points)
    if numbers > MAX_ANSWER_NUMBERS:
        raise InputError(f"too large an answer for one request: its curve holds about "
                         f"{numbers:.2g} numbers ({why}) where the limit is "
                         f"{MAX_ANSWER_NUMBERS:,} ({numbers / MAX_ANSWER_NUMBERS:.2g} times "
                         "over)", expected="fewer curve_points or fewer units")
    c = Cost(work=3.0 * (n + curve_points) * ops + 10.0 * numbers,
             memory=8.0 * (n * (kept + 4) + curve_points * (live + 4)) + 64 * n
             + NUMBER_BYTES * numbers)
    return check(c, limits.job_memory)


def frame_numbers(model: Model, curve_points: int, steps_per_frame: int,
                  changes: int) -> tuple[int, str]:
    """Numbers in one message of a run: its curve, its parameters (and their distance to
    the optimum), the losses since the last frame, the changes of settings so far."""
    numbers, why = curve_numbers(model, curve_points)
    return numbers + 2 * model.n_params + steps_per_frame + 4 * changes, why


def price_frame(model: Model, curve_points: int, steps_per_frame: int, changes: int) -> int:
    """A run's frame, before the run starts: a 422 past ``MAX_FRAME_NUMBERS``."""
    numbers, why = frame_numbers(model, curve_points, steps_per_frame, changes)
    if numbers > MAX_FRAME_NUMBERS:
        raise InputError(f"too large a frame for a run: each holds about {numbers:.2g} "
                         f"numbers (its curve: {why}; the parameters; steps_per_frame losses) "
                         f"where the limit is {MAX_FRAME_NUMBERS:,} "
                         f"({numbers / MAX_FRAME_NUMBERS:.2g} times over)",
                         expected="fewer curve_points, fewer units or fewer steps_per_frame")
    return numbers


def landscape_rows(model: Model, n: int, limits: ServerLimits) -> int:
    """Parameter sets per batched call: at most a quarter of a job's memory, and at most
    ``CHUNK_NUMBERS`` numbers in each temporary (1 MB: below the mmap threshold that
    ``return_freed_memory`` sets, a temporary comes from the heap; above it, each one was
    mapped and its pages faulted in anew, and a landscape took 6 times as long)."""
    live = widths(model)[0]
    return max(1, min(int(limits.job_memory / 4 // (8.0 * n * (live + 2))), CHUNK_NUMBERS // n))


def price_landscape(model: Model, n: int, sets: int, limits: ServerLimits) -> Cost:
    """``sets`` parameter sets (a grid and a slice), evaluated ``landscape_rows`` at a time:
    ``landscape_ops`` each point and set (a ``sin`` landscape of 10,000 points at resolution
    201 had been priced as 1.5 s and ran past the 10 s deadline)."""
    live, p = widths(model)[0], model.n_params
    rows = min(sets, landscape_rows(model, n, limits))
    c = Cost(work=float(sets) * n * landscape_ops(model) * ELEMENT_WORK,
             memory=8.0 * (3 * sets * p + rows * n * (live + 2) + 2 * sets) + 64 * n)
    return check(c, limits.job_memory)


def price_exact(model: Model, n: int, limits: ServerLimits, iterations: int = EXACT_ITERATIONS
                ) -> Cost:
    """An exact fit (LM or IRLS): a Jacobian ``(n, P)`` by a batched backward pass, its SVD,
    ``P x P`` matrices (the covariance among them)."""
    _, kept, jac, ops = widths(model)
    p = model.n_params
    rows = n if n > 150 else n * n           # small problems take the Jacobian row by row
    c = Cost(work=iterations * AUTOGRAD * (n + rows) * p * (kept + p),
             memory=8.0 * (rows * p * (jac + 6) + 4 * p * p + n * kept) + 64 * n)
    return check(c, limits.job_memory)


def price_run_step(model: Model, n: int, optimizer: str, limits: ServerLimits) -> Cost:
    """One step of a streamed run: a gradient, or an exact iteration (lm, auto, irls)."""
    if optimizer in ("lm", "auto", "irls"):
        c = price_exact(model, n, limits, iterations=1)
    else:
        live, kept, _, ops = widths(model)
        c = Cost(work=3.0 * n * ops, memory=8.0 * n * (kept + 8))
    if c.work > RUN_STEP_WORK:
        raise InputError(f"too much work for one step of a run: about {c.work:.2g} operations "
                         f"where the limit is {RUN_STEP_WORK:.0e} "
                         f"({c.work / RUN_STEP_WORK:.2g} times over)",
                         expected="fewer points or a smaller model")
    return check(c, RUN_MEMORY, "one step of a run")


def prepare_process() -> None:
    """For a server process: freed memory goes back at once (``return_freed_memory``), and
    torch computes on one thread per worker, so that two heavy requests leave room on a
    small machine for the event loop and the small requests; and Python hands its lock
    between threads every ``SWITCH_SECONDS`` (not 5 ms), so that the event loop is not kept
    waiting behind worker threads."""
    import sys

    import torch
    return_freed_memory()
    torch.set_num_threads(1)
    sys.setswitchinterval(SWITCH_SECONDS)


def return_freed_memory() -> None:
    """Have glibc's malloc give large freed blocks back to the system at once (a fixed mmap
    threshold of 1 MB): otherwise it raises the threshold after each large free and keeps
    later large tensors in a heap that grows with fragmentation. No-op elsewhere."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)         # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


__all__ = ["ServerLimits", "prepare_process", "return_freed_memory", "Cost", "widths", "check",
           "price_eval", "price_landscape", "price_exact", "price_run_step", "price_frame",
           "curve_numbers", "frame_numbers", "landscape_rows", "landscape_ops", "MB",
           "MAX_ANSWER_NUMBERS",
           "MAX_FRAME_NUMBERS"]
