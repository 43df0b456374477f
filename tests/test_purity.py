"""The core imports no I/O, plots or web: it loads with matplotlib and fastapi blocked."""
import subprocess
import sys

CORE = ["gradfit", "gradfit.expr", "gradfit.models", "gradfit.losses", "gradfit.optimizers",
        "gradfit.fit", "gradfit.result", "gradfit.data", "gradfit.config", "gradfit.lesson",
        "gradfit.landscape", "gradfit.datasets", "gradfit.lm", "gradfit.irls", "gradfit.bounds",
        "gradfit.stats", "gradfit.fit_many", "gradfit.batch_lm", "gradfit.batch_gd",
        "gradfit.batch_irls", "gradfit.many_data", "gradfit.many_problem", "gradfit.many_result",
        "gradfit.many_starts", "gradfit.many_engines", "gradfit.expr_jacobian",
        "gradfit.numpy_model", "gradfit.report", "gradfit.active_set", "gradfit.verdict",
        "gradfit.multistart", "gradfit.linear_lsq", "gradfit.stepper",
        "gradfit.normal_lm", "gradfit.cluster", "gradfit.many_kkt", "gradfit.stationary",
        "gradfit.irls_check", "gradfit.array_ns", "gradfit.spd"]


def test_core_imports_with_plots_and_web_blocked():
    code = ("import sys\n"
            "for m in ('matplotlib', 'fastapi', 'uvicorn', 'starlette', 'tqdm', 'pandas', "
            "'scipy', 'dask'):\n"
            "    sys.modules[m] = None\n"
            f"import importlib\nfor m in {CORE!r}:\n    importlib.import_module(m)\n"
            "import gradfit\nd = gradfit.lesson_data()\n"
            "print(gradfit.fit('a*x+b', d.x, d.y, optimizer='gd', steps=3).steps)\n"
            "print(gradfit.fit_many('a*x+b', d.x, [d.y, d.y]).converged.all())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "True"]
