"""fit_many under hostile and odd real data: every bad problem fails alone with its reason,
every bad argument is one InputError saying what was expected, and nothing wrong is
called converged."""
import numpy as np
import pytest

import gradfit
from gradfit.errors import InputError

X = np.linspace(0, 3, 20)
EXP = "a*exp(-k*x)"


def decays(scale=1.0):
    """Two decays; the first scaled by ``scale``, with a wiggle so no start is the optimum."""
    y = 2 * np.exp(-X) * (1 + 0.01 * np.sin(9 * X))
    return np.vstack([scale * y, 2 * np.exp(-0.5 * X)])


@pytest.mark.parametrize("scale", [1e-160, 1e-200, 1e-300])
@pytest.mark.parametrize("optimizer", ["lm", "gd", "adam"])
def test_data_whose_squares_underflow_are_never_called_converged(scale, optimizer):
    # before: LM called 'a*x+b' on 1e-300 data "a perfect fit" at a = -1.2e-165 (the sum
    # of squares underflowed to 0), and 1e-160 data converged 6e-6 off; gd "converged"
    y = decays(scale)
    p0 = {"a": [2 * scale, 2.0], "k": 1.0}
    res = gradfit.fit_many(EXP, X, y, p0=p0, optimizer=optimizer, lr=0.1, steps=3000)
    assert not res.converged[0], res.message[0]
    alone = gradfit.fit_many(EXP, X, y[1:], p0={"a": 2.0, "k": 1.0}, optimizer=optimizer,
                             lr=0.1, steps=3000)
    assert res.params["k"][1] == alone.params["k"][0] and res.reason[1] == alone.reason[0]


def test_an_underflowing_sum_of_squares_says_so_in_fit_and_fit_many():
    y = decays(1e-300)
    res = gradfit.fit_many("a*x + b", X, y)
    assert res.reason[0] == "failed" and "underflow" in res.message[0]
    assert "rescale y" in res.message[0] and res.converged[1]
    one = gradfit.fit(EXP, X, decays(1e-160)[0], p0={"a": 2e-160, "k": 1.0})
    assert not one.converged and "underflow" in one.message
    one = gradfit.fit(EXP, X, decays(1e-160)[0], p0={"a": 2e-160, "k": 1.0}, optimizer="gd")
    assert not one.converged and "underflow" in one.message


@pytest.mark.parametrize("scale", [1e-100, 1e-150])
def test_small_data_that_square_fine_still_converge_to_the_scaled_answer(scale):
    y = decays(scale)
    res = gradfit.fit_many(EXP, X, y, p0={"a": [2 * scale, 2.0], "k": 1.0})
    ref = gradfit.fit_many(EXP, X, y / [[scale], [1.0]], p0={"a": 2.0, "k": 1.0})
    assert res.converged.all(), res.message
    assert res.params["k"] == pytest.approx(ref.params["k"], rel=1e-8)
    assert res.params["a"][0] == pytest.approx(scale * ref.params["a"][0], rel=1e-8)


@pytest.mark.parametrize("kwargs,text", [
    ({"starts": 10 ** 9}, "bad number of starts: expected a whole number 1..1000, got 1000000000"),
    ({"starts": True}, "bad number of starts: .* got True"),
    ({"steps": True}, "bad number of steps: .* got True"),
    ({"steps": 0}, "bad number of steps: expected a whole number 1..10000000, got 0"),
    ({"chunk_size": True}, "bad chunk_size: expected a whole number >= 1, got True"),
    ({"dtype": "int"}, "unknown dtype 'int': expected one of float64, float32"),
    ({"guess": 3}, "bad guess: expected a function, or None, got 'int'"),
    ({"progress": "yes"}, "bad progress: expected a function, or None, got 'str'"),
])
def test_bad_arguments_are_refused_before_any_work_by_fits_own_rows(kwargs, text):
    # before: starts=1e9 was a MemoryError, True counted as 1, guess=3 failed every problem
    # with a TypeError in its row, and progress=3 raised TypeError after the first chunk
    with pytest.raises(InputError, match=text):
        gradfit.fit_many(EXP, X, decays(), **kwargs)
