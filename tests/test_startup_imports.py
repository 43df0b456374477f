"""A plain fit loads no optional library: ``import gradfit`` and the command line's fit
path leave pandas, matplotlib, fastapi, dask and the rest out of ``sys.modules``."""
import subprocess
import sys

HEAVY = ("pandas", "matplotlib", "fastapi", "starlette", "pydantic", "uvicorn", "dask",
         "distributed", "xarray", "scipy", "pyarrow", "sympy")


def _loaded(code: str) -> list[str]:
    probe = code + f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1].split() if out.stdout.strip() else []


def test_import_gradfit_loads_no_optional_library():
    assert _loaded("import gradfit\nd = gradfit.lesson_data()\n"
                   "gradfit.fit('a*x^2+b*x+c', d.x, d.y)") == []


def test_a_nonlinear_fit_and_its_final_checks_load_no_optional_library():
    # its Jacobians (LM's within bounds, the active set's multipliers, rank, covariance,
    # IRLS's) by the expression's forward mode: torch's batched autograd loads sympy
    # (1.4 s) the first time it runs
    code = ("import numpy as np, gradfit\nx = np.linspace(0, 5, 40)\n"
            "y = 3 * np.exp(-0.7 * x) + 0.5 + 0.01 * np.sin(9 * x)\n"
            "r = gradfit.fit('a*exp(-b*x)+c', x, y, bounds={'c': (0.6, 2)})\n"
            "assert r.at_bound and r.stderr\n"
            "m = gradfit.fit('a*exp(-b*x)+c', x, y, loss='mae', bounds={'b': (0, 5)})\n"
            "assert m.converged")
    assert _loaded(code) == []


def test_the_command_lines_fit_loads_no_optional_library():
    code = ("import io, contextlib\nfrom gradfit.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    code = main(['fit', 'lesson', '--model', 'a*x^2+b*x+c', '--json', '-'])\n"
            "assert code == 0 and out.getvalue().startswith('{')")
    assert _loaded(code) == []


def test_the_probe_does_see_a_library_that_is_loaded():
    assert _loaded("import json as pandas, sys\nsys.modules['pandas'] = pandas") == ["pandas"]
