""""Show code": a Python snippet with gradfit that reproduces the page's run."""
from __future__ import annotations

from .datasets import DATASETS
from .schemas import CodeIn

MAX_LITERAL_POINTS = 2_000


def _data_lines(req: CodeIn) -> list[str]:
    d = req.data or {}
    if req.points is not None and len(req.points.x) <= MAX_LITERAL_POINTS:
        return [f"x = {[round(v, 10) for v in req.points.x]!r}",
                f"y = {[round(v, 10) for v in req.points.y]!r}"]
    if req.points is not None or d.get("source") == "csv":
        name = d.get("file") or "your.csv"
        return [f"data = gradfit.load_csv({name!r}, x={d.get('x')!r}, y={d.get('y')!r})",
                "x, y = data.x, data.y"]
    name = d.get("name", "lesson")
    spec = DATASETS.get(name, DATASETS["lesson"])
    n, mult, add = d.get("n", spec.n), d.get("mult", spec.mult), d.get("add", spec.add)
    seed = d.get("seed", 42)
    lines = [f"data = gradfit.synthetic({spec.expression!r}, n={n}, x_range={spec.x_range!r},",
             f"                         mult={mult}, add={add}, seed={seed})   # {name}",
             "x, y = data.x, data.y"]
    if spec.outliers:
        lines += ["y = y.copy()"] + [f"y[{min(n - 1, int(round(at * (n - 1))))}] += {dy}   # an outlier"
                                     for at, dy in spec.outliers]
    return lines


def snippet(req: CodeIn) -> str:
    lr = "None" if req.lr is None else f"{req.lr:g}"
    p0 = "None" if not req.p0 else "{" + ", ".join(f"{k!r}: {v:.6g}" for k, v in req.p0.items()) + "}"
    lines = ["import gradfit", ""] + _data_lines(req) + [
        "",
        f"result = gradfit.fit({req.model!r}, x, y, loss={req.loss!r}, optimizer={req.optimizer!r},",
        f"                     lr={lr}, steps={req.steps}, seed={req.seed},",
        f"                     p0={p0})",
        "print(result.report())",
        "",
        "# the exact optimum, for comparison",
        f"best = gradfit.fit({req.model!r}, x, y, loss={req.loss!r}, optimizer='auto', seed={req.seed})",
        "print(best.params)",
    ]
    return "\n".join(lines) + "\n"
