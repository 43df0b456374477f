"""The built-in datasets: noisy samples of a few curves by the lesson's recipe.

Each is ``gradfit.synthetic(expression, ...)`` (the lesson's quadratic is bit for bit
``gradfit.lesson_data()``), so a snippet of code can rebuild it; ``outliers`` moves a few
points by fixed amounts after the noise. One registry (name -> ``BuiltinDataset``) feeds the
command line (``gradfit fit sine ...``), the page's menu, the URL state and the tests::

    >>> d = DATASETS["decay"]()
    >>> d.name, d.n
    ('decay', 30)
    >>> bool((DATASETS["lesson"]().y == __import__("gradfit").lesson_data().y).all())
    True
"""
from __future__ import annotations

from dataclasses import dataclass


from .data import Dataset, synthetic
from .errors import InputError


@dataclass(frozen=True)
class BuiltinDataset:
    """A named curve with its default size, range and noise; call it for a ``Dataset``."""

    name: str
    description: str
    expression: str                    # the true curve, in x
    x_range: tuple[float, float] = (-2.0, 2.0)
    n: int = 20
    mult: float = 0.15
    add: float = 1.5
    model: str = "a*x^2 + b*x + c"     # the model the page suggests
    outliers: tuple[tuple[float, float], ...] = ()   # (fraction of the way along x, dy)

    def __call__(self, n: int | None = None, mult: float | None = None,
                 add: float | None = None, seed: int = 42) -> Dataset:
        """The dataset, with the defaults for whatever is not given."""
        return self.make(self.n if n is None else n, self.mult if mult is None else mult,
                         self.add if add is None else add, seed)

    def make(self, n: int, mult: float, add: float, seed: int) -> Dataset:
        d = synthetic(self.expression, n=n, x_range=self.x_range, mult=mult, add=add, seed=seed)
        y = d.y.copy()
        for at, dy in self.outliers:
            y[outlier_index(at, n)] += dy
        return Dataset(d.x, y, None, ("x",), name=self.name)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "expression": self.expression,
                "x_range": list(self.x_range), "n": self.n, "mult": self.mult, "add": self.add,
                "model": self.model, "outliers": [list(o) for o in self.outliers]}


def outlier_index(at: float, n: int) -> int:
    return min(n - 1, int(round(at * (n - 1))))


DATASETS: dict[str, BuiltinDataset] = {d.name: d for d in [
    BuiltinDataset("lesson", "the lesson's quadratic 3x^2 + 2x + 1 (gradfit.lesson_data())",
               "3*x^2 + 2*x + 1"),
    BuiltinDataset("sine", "a sine wave 2 sin(2x)", "2*sin(2*x)", (-3.0, 3.0), 40, 0.05, 0.3,
               "a*sin(w*x + p)"),
    BuiltinDataset("step", "a step from -1 to 1 at x = 0.3", "2*min(max(100*(x - 0.3), 0), 1) - 1",
               (-2.0, 2.0), 40, 0.0, 0.2, "relu:2"),
    BuiltinDataset("xsinx", "x sin x", "x*sin(x)", (-6.0, 6.0), 50, 0.05, 0.4, "relu:6"),
    BuiltinDataset("decay", "an exponential decay 5 exp(-1.3 x) + 1", "5*exp(-1.3*x) + 1",
               (0.0, 4.0), 30, 0.05, 0.15, "A*exp(-k*x) + C"),
    BuiltinDataset("outliers", "a line 2x + 1 with three outliers (mae shrugs them off, mse does not)",
               "2*x + 1", (-2.0, 2.0), 30, 0.0, 0.3, "a*x + b",
               ((0.1, 8.0), (0.5, -7.0), (0.85, 9.0))),
]}


def make_dataset(name: str, n: int, mult: float, add: float, seed: int) -> Dataset:
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}", expected="one of " + ", ".join(DATASETS))
    return DATASETS[name].make(n, mult, add, seed)

