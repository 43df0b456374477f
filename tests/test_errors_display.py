"""How gradfit's errors reach a notebook user: IPython shows the message alone, never the
frames of gradfit's own code (a syntax error in a model had been 83 lines)."""
import subprocess
import sys

import pytest

import gradfit
from gradfit.errors import ExpressionError, InputError


def test_an_error_renders_as_its_message_alone():
    with pytest.raises(ExpressionError) as info:
        gradfit.fit("a*x+", [1.0, 2.0], [1.0, 2.0])
    assert info.value._render_traceback_() == [
        "ExpressionError: invalid syntax (unexpected end of expression) at column 5"]
    err = InputError("bad learning rate", expected="a positive number", given=-1.0)
    assert err._render_traceback_() == [
        "InputError: bad learning rate: expected a positive number, got -1.0"]


def test_ipython_shows_one_line_for_a_refused_input():
    pytest.importorskip("IPython")
    out = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor",
                          "-c", "import gradfit; gradfit.fit('a*x+', [1, 2], [1, 2])"],
                         capture_output=True, text=True, timeout=120)
    text = (out.stdout + out.stderr).strip()
    assert text.endswith("ExpressionError: invalid syntax (unexpected end of expression) "
                         "at column 5")
    assert "Traceback" not in text and "File " not in text and len(text.splitlines()) <= 2
