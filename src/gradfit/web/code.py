""""Show code": a Python snippet with gradfit that reproduces the page's run.

Built from validated values only (``schemas.CodeIn``): numbers formatted as numbers, every
string through ``repr``, the dataset looked up in the registry; nothing the client sent is
pasted into the code as it came.
"""
from __future__ import annotations

from .datasets import DATASETS
from .dataview import model_inputs
from .schemas import CodeIn, ExactIn

MAX_LITERAL_POINTS = 2_000
EXACT_STEPS = ExactIn.model_fields["steps"].default      # the page's exact fit


def _numbers(values) -> str:
    return repr([round(float(v), 10) for v in values])


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


def _data_args(req: CodeIn) -> str:
    """The fit's keywords for σ and the input names, where the data has them."""
    pts, d = req.points, req.data
    literal = pts is not None and len(pts.x) <= MAX_LITERAL_POINTS
    sigma = pts.sigma is not None if literal else bool(d.sigma)
    out = ", sigma=sigma" if sigma else ""
    if _inputs(req) != ("x",):
        out += f", inputs={_inputs(req)!r}"
    return out


def snippet(req: CodeIn) -> str:
    """The page's run and its exact fit (optimizer auto from the same start), as code. The
    model is checked as every other endpoint checks it: a snippet that cannot run is a 422,
    not code."""
    from .compute import build_model, check_model
    check_model(build_model(req.model, _inputs(req)))
    lr = "None" if req.lr is None else repr(float(req.lr))
    p0 = "None" if not req.p0 else repr({k: float(v) for k, v in req.p0.items()})
    data = _data_args(req)
    loss = f"{req.loss!r}" + (f", delta={float(req.delta)!r}" if req.loss == "huber" else "")
    lines = ["import gradfit", ""] + _data_lines(req) + [
        "",
        f"p0 = {p0}",
        f"result = gradfit.fit({req.model!r}, x, y{data}, loss={loss},",
        f"                     optimizer={req.optimizer!r}, lr={lr}, steps={int(req.steps)},",
        f"                     seed={int(req.seed)}, p0=p0)",
        "print(result.report())",
        "",
        "# the exact optimum (the page's: optimizer auto from the same start), for comparison",
        f"best = gradfit.fit({req.model!r}, x, y{data}, loss={loss}, optimizer='auto',",
        f"                   steps={EXACT_STEPS}, seed={int(req.seed)}, p0=p0)",
        "print(best.report())",
    ]
    return "\n".join(lines) + "\n"
