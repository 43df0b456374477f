"""JSON out is strict JSON: no NaN or Infinity anywhere, null plus a reason instead; and the
command line's `serve` options refuse what cannot work."""
import json
import math

import pytest

from gradfit.cli import main, parse_size
from gradfit.errors import InputError
from gradfit.finite_json import MAX_REASONS, dumps


def strict_loads(text: str):
    def refuse(word):
        raise AssertionError(f"{word} in JSON output")
    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null_with_a_reason():
    out = strict_loads(dumps({"a": [1.0, math.inf, -math.inf, math.nan], "b": {"c": math.nan}}))
    assert out["a"] == [1.0, None, None, None] and out["b"] == {"c": None}
    assert out["not_finite"] == {"a[1]": "inf", "a[2]": "-inf", "a[3]": "nan", "b.c": "nan"}


def test_reasons_are_bounded():
    out = strict_loads(dumps({"y": [math.inf] * 1000}))
    assert len(out["not_finite"]) == MAX_REASONS + 1
    assert out["not_finite"]["more"] == 1000 - MAX_REASONS


def test_eval_json_to_stdout_is_strict(capsys):
    code = main(["eval", "lesson", "--model", "exp(a*x)", "--params", "a=1000", "--json", "-"])
    out = strict_loads(capsys.readouterr().out)
    assert code == 0 and out["loss"] is None and out["grad"] == {"a": None}
    assert out["not_finite"] == {"loss": "inf", "grad.a": "inf"}


def test_eval_json_of_a_finite_answer_is_unchanged(capsys):
    main(["eval", "lesson", "--model", "a*x^2 + b*x + c", "--params", "a=1.1,b=1.1,c=1.1",
          "--loss", "mae", "--json", "-"])
    out = strict_loads(capsys.readouterr().out)
    assert round(out["loss"], 4) == 2.4219 and "not_finite" not in out


@pytest.mark.parametrize("text,size", [("1G", 1 << 30), ("1500M", 1500 << 20), ("512mb", 512 << 20),
                                       ("2000000", 2_000_000)])
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("argv,words", [(["--max-memory", "lots"], "--max-memory"),
                                        (["--max-memory", "100M"], "memory cap is too small"),
                                        (["--max-seconds", "0"], "bad --max-seconds")])
def test_serve_refuses_limits_that_cannot_work(capsys, argv, words):
    assert main(["serve", "--port", "1", *argv]) == 2
    assert words in capsys.readouterr().err


def test_parse_size_refuses_nonsense():
    with pytest.raises(InputError):
        parse_size("-1G")
