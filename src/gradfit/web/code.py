""""Show code": a Python snippet with gradfit that reproduces the page's run.

Built from validated values only (``schemas.CodeIn``, then its ``FitConfig``, checked by the
settings table): numbers formatted as numbers, every string through ``repr``, the dataset
looked up in the registry; nothing the client sent is pasted into the code as it came.

Every setting of the run's config is written (schedule, optimizer options, bounds, fixed
values, dtype ...: those that differ from ``FitConfig``'s defaults), and every number as
Python reads back the same float (``repr``: 17 significant digits where they are needed).
Data of 1e-11 had been rounded to 10 decimals, all zeros, and the snippet fitted another
problem.
"""
from __future__ import annotations

import math

from ..config import FitConfig
from .datasets import DATASETS
from .dataview import model_inputs
from .runconfig import FIELDS, config_of
from .schemas import CodeIn, ExactIn

MAX_LITERAL_POINTS = 2_000
EXACT_STEPS = ExactIn.model_fields["steps"].default      # the page's exact fit
#: written in every snippet, defaults or not (the run's own keywords, in this order)
ALWAYS = ("loss", "optimizer", "lr", "steps", "seed")
#: the exact fit's settings taken from the run's (as the page's /api/exact takes them)
EXACT_FROM_RUN = ("bounds", "fixed", "absolute_sigma")
LINE = 88


def literal(v) -> str:
    """A Python literal that reads back as ``v``: floats by ``repr`` (exact), infinities as
    ``float('inf')``, None for a bound's open side; dicts and tuples entry by entry.

    >>> literal({"a": (0.0, math.inf)}), literal(1e-11), literal(-math.inf)
    ("{'a': (0.0, None)}", '1e-11', "-float('inf')")
    """
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return repr(v)
    if isinstance(v, float):
        if math.isfinite(v):
            return repr(v)
        return "float('nan')" if math.isnan(v) else ("-" if v < 0 else "") + "float('inf')"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k!r}: {literal(u)}" for k, u in v.items()) + "}"
    if isinstance(v, tuple):            # a bound pair: an infinite side is None (no bound)
        return "(" + ", ".join("None" if isinstance(u, float) and math.isinf(u) else literal(u)
                               for u in v) + ")"
    return repr(v)


def _numbers(values) -> str:
    """A list of floats that Python reads back bit for bit (``repr``)."""
    return "[" + ", ".join(literal(float(v)) for v in values) + "]"


def _data_lines(req: CodeIn) -> list[str]:
    """Lines that define ``x``, ``y`` (and ``sigma``) as the page has them: the points
    themselves (the chosen columns, σ, two inputs as the columns of ``x``), the CSV file read
    with the same columns, or the built-in dataset rebuilt."""
    d, pts = req.data, req.points
    if pts is not None and len(pts.x) <= MAX_LITERAL_POINTS:
        if pts.x2 is None:
            lines = [f"x = {_numbers(pts.x)}"]
        else:
            lines = ["import numpy as np", "",
                     f"x = np.column_stack([{_numbers(pts.x)},",
                     f"                     {_numbers(pts.x2)}])"
                     f"   # columns {', '.join(pts.inputs)}"]
        lines.append(f"y = {_numbers(pts.y)}")
        if pts.sigma is not None:
            lines.append(f"sigma = {_numbers(pts.sigma)}")
        return lines
    if pts is not None or d.source == "csv":
        sigma = f", sigma={d.sigma!r}" if d.sigma else ""
        return [f"data = gradfit.load_csv({d.file or 'your.csv'!r}, x={d.x!r}, y={d.y!r}{sigma})",
                "x, y" + (", sigma" if d.sigma else "") + " = data.x, data.y"
                + (", data.sigma" if d.sigma else "")]
    name = d.name if d.name in DATASETS else "lesson"
    spec = DATASETS[name]
    n = int(spec.n if d.n is None else d.n)
    mult = float(spec.mult if d.mult is None else d.mult)
    add = float(spec.add if d.add is None else d.add)
    seed = int(d.seed)
    lines = [f"data = gradfit.synthetic({spec.expression!r}, n={n}, x_range={spec.x_range!r},",
             f"                         mult={mult!r}, add={add!r}, seed={seed})  # {name}",
             "x, y = data.x, data.y"]
    if spec.outliers:
        lines += ["y = y.copy()"] + [f"y[{min(n - 1, int(round(at * (n - 1))))}] += {dy}   # an outlier"
                                     for at, dy in spec.outliers]
    return lines


def _inputs(req: CodeIn) -> tuple[str, ...]:
    """The input names the page's fits used (``dataview.model_inputs``): a model of x on one
    column t reads x as t, and its code has no ``inputs=('t',)`` (which had made it fail)."""
    return model_inputs(req.model, req.points.inputs) if req.points else ("x",)


def _data_args(req: CodeIn) -> list[str]:
    """The fit's keywords for σ and the input names, where the data has them."""
    pts, d = req.points, req.data
    literal_points = pts is not None and len(pts.x) <= MAX_LITERAL_POINTS
    sigma = pts.sigma is not None if literal_points else bool(d.sigma)
    out = ["sigma=sigma"] if sigma else []
    if _inputs(req) != ("x",):
        out.append(f"inputs={_inputs(req)!r}")
    return out


def _keywords(cfg: FitConfig, names) -> list[str]:
    """``name=value`` for each of ``names`` (p0 as the variable ``p0``); a map as a dict, a
    bound's open side as None, the optimizer's options as keywords of their own."""
    out = []
    for name in names:
        if name == "p0":
            out.append("p0=p0")
        elif name == "options":
            out += [f"{k}={literal(v)}" for k, v in cfg.options_dict.items()]
        elif name in ("bounds", "fixed"):
            out.append(f"{name}={literal(dict(getattr(cfg, name)))}")
        elif name == "loss":
            with_delta = cfg.loss == "huber" or cfg.delta != FitConfig().delta
            out.append(f"loss={cfg.loss!r}")
            out += [f"delta={literal(float(cfg.delta))}"] if with_delta else []
        else:
            out.append(f"{name}={literal(getattr(cfg, name))}")
    return out


def _call(head: str, args: list[str]) -> list[str]:
    """``head(args...)`` over lines of at most ``LINE`` characters, aligned under the
    parenthesis."""
    lines, line = [], head + "("
    indent = " " * len(line)
    for i, arg in enumerate(args):
        text = arg + (", " if i < len(args) - 1 else ")")
        if len(line) + len(text.rstrip()) > LINE and line.strip() not in ("", head + "("):
            lines.append(line.rstrip())
            line = indent
        line += text
    return lines + [line]


def _differs(cfg: FitConfig, names) -> list[str]:
    default = FitConfig()
    return [n for n in names if getattr(cfg, n) != getattr(default, n)]


def snippet(req: CodeIn) -> str:
    """The page's run and its exact fit (optimizer auto from the same start), as code. The
    model is checked as every other endpoint checks it: a snippet that cannot run is a 422,
    not code; so is a config the settings table refuses (``FitConfig``)."""
    from .compute import build_model, check_model
    check_model(build_model(req.model, _inputs(req)))
    cfg = config_of(req)
    p0 = "None" if not req.p0 else literal({k: float(v) for k, v in req.p0.items()})
    head = [repr(req.model), "x", "y"] + _data_args(req)
    rest = [n for n in FIELDS if n not in ALWAYS + ("model", "p0", "delta")]
    run = _keywords(cfg, ALWAYS + ("p0",) + tuple(_differs(cfg, rest)))
    exact = FitConfig(model=cfg.model, loss=cfg.loss, delta=cfg.delta, steps=EXACT_STEPS,
                      seed=cfg.seed,
                      bounds=cfg.bounds, fixed=cfg.fixed, absolute_sigma=cfg.absolute_sigma)
    best = _keywords(exact, ("loss", "optimizer", "steps", "seed", "p0")
                     + tuple(_differs(exact, EXACT_FROM_RUN)))
    lines = ["import gradfit", ""] + _data_lines(req) + [
        "",
        f"p0 = {p0}",
        *_call("result = gradfit.fit", head + run),
        "print(result.report())",
        "",
        "# the exact optimum (the page's: optimizer auto from the same start), for comparison",
        *_call("best = gradfit.fit", head + best),
        "print(best.report())",
    ]
    return "\n".join(lines) + "\n"
