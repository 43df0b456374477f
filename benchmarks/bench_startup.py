"""Startup: a whole ``gradfit fit ... --json -`` process against ``python -c "import torch"``.

Each is a fresh subprocess, run ``--runs`` times, alternating (so a change of load hits
both alike); the medians, their difference and their ratio are printed. The target of
issue 9: the fit within 0.3 s of importing torch. Also prints which of the heavy optional
libraries the fit's process loaded (none should be).

    python benchmarks/bench_startup.py              # 7 runs each
    python benchmarks/bench_startup.py --runs 15

Both run with compiled bytecode, as an installed gradfit has it (pip compiles on install):
``PYTHONDONTWRITEBYTECODE`` is unset for them, and a first untimed run writes gradfit's
``__pycache__``. ``--source`` keeps this environment's setting instead (where it forbids
bytecode, each run compiles gradfit's ~40 modules from source: about 0.1 s more).

Wall-clock time is what a user waits; CPU time (user + system, from ``getrusage``) is
printed beside it because it moves far less when other processes share the machine.
torch's own threads make its CPU time exceed its wall time on an idle machine.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

FIT = ["fit", "lesson", "--model", "a*x^2+b*x+c", "--json", "-"]
HEAVY = ("pandas", "matplotlib", "fastapi", "pydantic", "scipy", "dask", "xarray", "pyarrow",
         "uvicorn")                              # (tqdm is not listed: torch imports it)


def gradfit_command() -> list[str]:
    """The installed console script next to this Python, else ``python -m gradfit.cli``."""
    script = os.path.join(os.path.dirname(sys.executable), "gradfit")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "gradfit.cli"]


ENV = dict(os.environ)


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall-clock seconds and CPU seconds (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def heavy_modules_loaded() -> list[str]:
    """Run the CLI's fit in-process in a child and list the heavy modules it loaded."""
    code = ("import sys, io, contextlib\nfrom gradfit.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({FIT!r})\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=ENV)
    return out.stdout.split()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--source", action="store_true", help="keep PYTHONDONTWRITEBYTECODE as "
                    "it is here (no bytecode cache where it is set)")
    args = ap.parse_args()
    if not args.source:
        ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    torch_cmd = [sys.executable, "-c", "import torch"]
    fit_cmd = gradfit_command() + FIT
    timed(torch_cmd), timed(fit_cmd)          # warm the file cache, write the bytecode
    torch_t, fit_t = [], []
    for _ in range(args.runs):
        torch_t.append(timed(torch_cmd))
        fit_t.append(timed(fit_cmd))
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}; medians of "
          f"{args.runs} runs each, alternating; bytecode "
          f"{'as this environment has it' if args.source else 'cached'}")
    for k, what in ((0, "wall"), (1, "CPU (user+sys)")):
        t = statistics.median(r[k] for r in torch_t)
        f = statistics.median(r[k] for r in fit_t)
        print(f"{what:>15}: import torch {t:.3f} s, gradfit fit {f:.3f} s, difference "
              f"{f - t:+.3f} s (target <= 0.3 s: {'PASS' if f - t <= 0.3 else 'FAIL'}), "
              f"ratio {f / t:.2f}")
    print(f"heavy modules loaded by the fit: {', '.join(heavy_modules_loaded()) or 'none'}")


if __name__ == "__main__":
    main()
