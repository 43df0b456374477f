""""Show code": a Python snippet with gradfit that reproduces the page's run.

Built from validated values only (``schemas.CodeIn``): numbers formatted as numbers, every
string through ``repr``, the dataset looked up in the registry; nothing the client sent is
pasted into the code as it came.
"""
from __future__ import annotations

from .datasets import DATASETS
from .schemas import CodeIn

MAX_LITERAL_POINTS = 2_000


def _data_lines(req: CodeIn) -> list[str]:
    d = req.data
    if req.points is not None and len(req.points.x) <= MAX_LITERAL_POINTS:
        return [f"x = {[round(v, 10) for v in req.points.x]!r}",
                f"y = {[round(v, 10) for v in req.points.y]!r}"]
    if req.points is not None or d.source == "csv":
        return [f"data = gradfit.load_csv({d.file or 'your.csv'!r}, x={d.x!r}, y={d.y!r})",
                "x, y = data.x, data.y"]
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


def snippet(req: CodeIn) -> str:
    lr = "None" if req.lr is None else repr(float(req.lr))
    p0 = "None" if not req.p0 else repr({k: float(f"{v:.6g}") for k, v in req.p0.items()})
    lines = ["import gradfit", ""] + _data_lines(req) + [
        "",
        f"result = gradfit.fit({req.model!r}, x, y, loss={req.loss!r}, optimizer={req.optimizer!r},",
        f"                     lr={lr}, steps={int(req.steps)}, seed={int(req.seed)},",
        f"                     p0={p0})",
        "print(result.report())",
        "",
        "# the exact optimum, for comparison",
        f"best = gradfit.fit({req.model!r}, x, y, loss={req.loss!r}, optimizer='auto', seed={int(req.seed)})",
        "print(best.params)",
    ]
    return "\n".join(lines) + "\n"
