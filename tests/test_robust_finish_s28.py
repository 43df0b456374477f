"""fit_many finishes its robust fits on bounds as fit does (fit's active set from the
batch's end, its inner IRLS fits batched: ``many_robust_finish``), and says what fit says.

Flat wells of the 4PL plate of ``benchmarks/bench_plate.py`` (no response: the data
determine neither ec50 nor hill) fitted by huber: the batch had kept its own end, "IRLS
stopped at a point it cannot certify", where fit goes lower and says the Jacobian lost
rank (``top`` and ``ec50`` trade off once the curve's step lies beyond the doses).
Oracle: fit on the same well (its verdict, and its loss)."""
import sys
from pathlib import Path

import pytest

import gradfit

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_plate = pytest.importorskip("bench_plate")


def test_flat_wells_end_where_fit_ends_and_say_the_same():
    dose, y, p0 = bench_plate.plate(16)
    wells = [1, 13]
    kw = dict(p0=p0, bounds=bench_plate.BOUNDS, loss="huber")
    many = gradfit.fit_many(bench_plate.MODEL, dose, y[wells], **kw)
    for i, w in enumerate(wells):
        one = gradfit.fit(bench_plate.MODEL, dose, y[w], **kw)
        assert many.reason[i] == one.reason == "failed"
        assert many.message[i] == one.message
        assert "lost rank" in one.message
        # a lost rank: one end among many equally good, reached by paths that part at the
        # rounding level (the batch's rows and fit's); the same basin, not the same point
        assert many.loss[i] <= one.loss * 1.02
