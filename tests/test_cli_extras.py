"""Without an extra, a command that needs it says which to install (exit 2), and the
commands that do not need it still work: the core installs with torch and numpy alone."""
import subprocess
import sys

import pytest

BLOCK = {"plots": ("matplotlib", "PIL"), "web": ("fastapi", "uvicorn", "starlette"),
         "dask": ("dask", "distributed", "pandas", "xarray", "pyarrow")}


def run_blocked(blocked, argv, tmp_path):
    code = ("import sys\n"
            f"for m in {tuple(blocked)!r}:\n    sys.modules[m] = None\n"
            "from gradfit.cli import main\n"
            f"sys.exit(main({argv!r}))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("extra,argv", [
    ("plots", ["fit", "lesson", "--model", "a*x+b", "--plot", "fit.png"]),
    ("plots", ["landscape", "lesson", "--model", "a*x+b", "--params", "a,b"]),
    ("web", ["serve", "--port", "1"]),
    ("dask", ["fit", "data/*.parquet", "--model", "a*x", "--group", "g"]),
])
def test_a_missing_extra_is_named_in_one_line_with_exit_2(extra, argv, tmp_path):
    out = run_blocked(BLOCK[extra], argv, tmp_path)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith("gradfit: error: this command needs ")
    assert f"pip install 'gradfit[{extra}]'" in line


def test_without_every_extra_a_plain_fit_and_eval_still_work(tmp_path):
    everything = sum(BLOCK.values(), ())
    fit = run_blocked(everything, ["fit", "lesson", "--model", "a*x^2+b*x+c", "--json", "-"],
                      tmp_path)
    assert fit.returncode == 0 and fit.stdout.startswith('{"params": {"a": 2.76'), fit.stderr
    ev = run_blocked(everything, ["eval", "lesson", "--model", "a*x", "--params", "a=1"],
                     tmp_path)
    assert ev.returncode == 0 and "gradient:" in ev.stdout
