"""The command line: arguments -> config -> core -> report and files.

Exit codes (``EXIT_CODES``, also in ``gradfit --help`` and the README): 0 done (a fit
converged), 1 a fit did not converge (diverged, failed, lost rank, or stopped at the step or
time limit: the report still shows where it was), 2 bad input or usage (one line on
stderr), 3 ``serve`` cannot listen (the port is in use), 70 an internal error (a bug of
gradfit's), 130 interrupted (Ctrl+C).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from typing import Sequence

from . import __version__, finite_json
from .data import check_enough_points, load_data
from .datasets import DATASETS
from .errors import GradfitError, InputError
from .losses import LOSSES
from .optimizers import OPTIMIZERS, SCHEDULES

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_PORT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 70, 130
EXIT_CODES = {
    EXIT_OK: "done (for fit: the fit converged)",
    EXIT_FAILED: "the fit did not converge: diverged, failed (lost rank, not smooth) or "
                 "stopped at the step or time limit; the report shows where it stopped",
    EXIT_INPUT: "bad input or usage: data, model, option (one line on stderr)",
    EXIT_PORT: "serve: cannot listen on the address (the port is in use)",
    EXIT_INTERNAL: "internal error, a bug of gradfit's (GRADFIT_DEBUG=1 shows the traceback)",
    EXIT_INTERRUPTED: "interrupted (Ctrl+C)",
}
EXIT_EPILOG = "exit codes:\n" + "\n".join(
    textwrap.fill(v, 88, initial_indent=f"  {k:<5}", subsequent_indent=" " * 7)
    for k, v in EXIT_CODES.items())

FIT_EXAMPLES = """examples:
  gradfit fit lesson --model "a*x^2 + b*x + c" --optimizer gd --lr 0.1 --steps 500
  gradfit fit lesson --model relu:5 --optimizer adam --steps 2000
  gradfit fit data.csv --x t --y signal --sigma err --model "A*exp(-k*t) + C" --p0 A=10,k=0.5
  gradfit fit lesson --model poly:2 --optimizer lbfgs --json -
  gradfit fit lesson --model "a*x^2 + b*x + c" --bounds a=0:2.5 --fix c=1
  gradfit fit lesson --model relu:5 --optimizer adam --plot fit.png --animate fit.gif
  gradfit fit plate.csv --group well --x t --y od --model "A/(1+exp(-k*(t-t0)))" --out fits.csv
  gradfit fit 'data/*.parquet' --group id --x t --y v --model "A*exp(-k*t)" --workers 4
  gradfit fit 'big/*.parquet' --x t --y v --model "A*exp(-k*t)" --scheduler tcp://HOST:8786
"""
LANDSCAPE_EXAMPLES = """examples:
  gradfit landscape lesson --model "a*x^2 + b*x + c" --params a,b --loss mae
  gradfit landscape lesson --model "a*x + b" --params a,b --lr 0.1 --out path.png
  gradfit landscape lesson --model "a*x^2 + b*x + c" --params a --around b=1.1,c=1.1 \\
      --p0 a=1.1,b=1.1,c=1.1 --fix-others --loss mae --lr 1 --steps 10
"""
LR_SWEEP_EXAMPLES = """examples:
  gradfit lr-sweep lesson --model "a*x^2 + b*x + c" --lrs 0.001,0.01,0.1,1,3
  gradfit lr-sweep lesson --model relu:5 --optimizer adam --lrs 0.001,0.01,0.1 --find
"""
EVAL_EXAMPLES = """examples:
  gradfit eval lesson --model "a*x^2 + b*x + c" --params a=1.1,b=1.1,c=1.1 --loss mae
"""
SERVE_EXAMPLES = """examples:
  gradfit serve                     # then open http://127.0.0.1:8000/
  gradfit serve --port 8080 --open  # another port, and open a browser
  gradfit serve --data outliers     # start on another built-in dataset
"""
LESSON_EXAMPLES = """examples:
  gradfit lesson                      # the lesson's numbers, replayed with gradfit
  gradfit lesson --pictures figures   # and its pictures, as PNG files in figures/
"""


def parse_assignments(text: str, what: str) -> dict[str, float]:
    """``"a=1.1,b=2"`` -> ``{"a": 1.1, "b": 2.0}``."""
    values = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            values[name.strip()] = float(value)
        except ValueError:
            raise InputError(f"bad {what}", expected="name=value pairs separated by commas, "
                             "e.g. a=1.1,b=2", given=part) from None
    return values


def parse_size(text: str) -> int:
    """``"1G"`` -> 1073741824, ``"512M"`` -> 536870912, ``"2000000"`` -> 2000000 (bytes)."""
    t = text.strip().upper().removesuffix("B")
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        value = -1
    if not 0 < value < 1 << 50:
        raise InputError("bad --max-memory", expected="a size such as 1G or 1500M", given=text)
    return int(value)


def parse_bounds(text: str) -> dict[str, tuple[float | None, float | None]]:
    """``"a=0:10,b=:5"`` -> ``{"a": (0.0, 10.0), "b": (None, 5.0)}`` (empty side: no bound)."""
    bounds = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, pair = part.partition("=")
        lo, colon, hi = pair.partition(":")
        try:
            if not eq or not colon or not name.strip():
                raise ValueError
            bounds[name.strip()] = (float(lo) if lo.strip() else None,
                                    float(hi) if hi.strip() else None)
        except ValueError:
            raise InputError("bad --bounds", expected="name=low:high pairs separated by commas, "
                             "e.g. a=0:10,b=:5", given=part) from None
    return bounds


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("data", help="a CSV file with a header, or a built-in dataset: "
                   + ", ".join(DATASETS))
    p.add_argument("--model", "-m", required=True,
                   help="an expression such as 'a*x^2 + b*x + c', poly:K, relu:K or mlp:H1,H2")
    p.add_argument("--x", help="input column(s) of the CSV, comma-separated (default: the first)")
    p.add_argument("--y", help="output column of the CSV (default: the last)")
    p.add_argument("--sigma", help="column of per-point uncertainties, used as weights")
    p.add_argument("--drop-nan", action="store_true",
                   help="drop rows holding NaN, inf or empty cells (default: refuse them)")
    p.add_argument("--loss", "-l", default="mse", choices=list(LOSSES), help="default: mse")
    p.add_argument("--delta", type=float, default=1.0, help="huber's delta (default 1.0)")
    p.add_argument("--json", metavar="PATH|-", help="write the result as JSON ('-': stdout only)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradfit", description="Fit any function to data by gradient descent.",
        epilog=EXIT_EPILOG + "\n\nRun 'gradfit COMMAND --help' for a command's options and "
        "examples.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"gradfit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    lesson = sub.add_parser("lesson", help="replay the lesson 'deep learning is just graph plotting'",
                            epilog=LESSON_EXAMPLES, formatter_class=fmt)
    lesson.add_argument("--pictures", metavar="DIR",
                        help="also write the lesson's pictures as PNG files into DIR")
    lesson.set_defaults(func=cmd_lesson)

    fitp = sub.add_parser("fit", help="fit a model to data", epilog=FIT_EXAMPLES,
                          formatter_class=fmt)
    _data_args(fitp)
    fitp.add_argument("--optimizer", "-o", default="auto", choices=list(OPTIMIZERS),
                      help="default: auto, the exact optimum for the loss (lm for mse, irls "
                           "for mae and huber); gd, sgd, adam... to watch gradient descent")
    fitp.add_argument("--lr", type=float, help="learning rate (default: the optimizer's own)")
    fitp.add_argument("--steps", "-n", type=int, default=1000, help="step limit (default 1000)")
    fitp.add_argument("--p0", help="starting values, e.g. a=1.1,b=1.1,c=1.1")
    fitp.add_argument("--bounds", help="bounds, e.g. a=0:10,b=:5 (an empty side is unbounded)")
    fitp.add_argument("--fix", help="fixed parameters, e.g. c=1")
    fitp.add_argument("--absolute-sigma", action="store_true",
                      help="take --sigma as absolute: the covariance is not scaled by the "
                           "residual variance (as curve_fit's absolute_sigma)")
    fitp.add_argument("--seed", type=int, default=0, help="seed of random starts and batches")
    fitp.add_argument("--schedule", default="constant", choices=list(SCHEDULES))
    fitp.add_argument("--momentum", type=float, help="momentum (momentum, sgd, rmsprop)")
    fitp.add_argument("--nesterov", action="store_true", help="Nesterov momentum (momentum, sgd)")
    fitp.add_argument("--batch-size", type=int, help="mini-batch size (sgd; default 32)")
    fitp.add_argument("--accumulate-grad", action="store_true",
                      help="gd only: never zero the gradient, as the lesson's loop does")
    fitp.add_argument("--ftol", type=float, help="stop when the loss changes by less than "
                      "this, relatively (default 1e-12 for gradient methods; lm and irls stop "
                      "by their own rules)")
    fitp.add_argument("--gtol", type=float,
                      help="stop when the gradient norm is below this (default 1e-10 for "
                           "gradient methods)")
    fitp.add_argument("--time-limit", type=float, help="stop after this many seconds")
    fitp.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    fitp.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    fitp.add_argument("--group", help="column naming the series of a long table: fit every "
                      "series (fit_many), one row per series")
    fitp.add_argument("--out", "-O", help="with --group: write the table of fits to this CSV")
    from .cli_dask import add_arguments      # --workers, --scheduler: on Dask
    add_arguments(fitp)
    fitp.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no report")
    fitp.add_argument("--plot", metavar="PATH", help="draw the fit: data, start, fit, "
                      "residuals and the loss over steps (.png, .pdf, .svg)")
    fitp.add_argument("--animate", metavar="PATH", help="the fit moving step by step "
                      "(.gif; .mp4 when ffmpeg is installed)")
    fitp.add_argument("--frames", type=int, default=100,
                      help="most frames of --animate, sampled over the run (default 100)")
    fitp.set_defaults(func=cmd_fit)

    land = sub.add_parser("landscape", help="the loss over one or two parameters, with the "
                          "optimizer's path on it", epilog=LANDSCAPE_EXAMPLES, formatter_class=fmt)
    _data_args(land)
    land.add_argument("--params", required=True,
                      help="one or two parameter names, e.g. a,b (one: the loss against it, "
                      "each step an arrow)")
    land.add_argument("--around", help="values to hold the other parameters at and to centre "
                      "the view on, e.g. c=1 (default: the fit's values)")
    land.add_argument("--span", help="the view: a half-width such as 2, or per parameter "
                      "a=2,b=0:5 (half-width or low:high); default: around the fit and its path")
    land.add_argument("--resolution", type=int, help="grid points per axis (default 81; 301 "
                      "for one parameter)")
    land.add_argument("--fix-others", action="store_true", help="fit only --params, the others "
                      "held at --around (else --p0, else their start): the path then lies on "
                      "the drawn surface")
    _path_args(land, steps=200)
    land.add_argument("--out", "-O", default="landscape.png", help="the picture (default "
                      "landscape.png)")
    land.set_defaults(func=cmd_landscape)

    sweep = sub.add_parser("lr-sweep", help="the same fit at several learning rates, side by "
                           "side and labelled", epilog=LR_SWEEP_EXAMPLES, formatter_class=fmt)
    _data_args(sweep)
    sweep.add_argument("--lrs", default="0.001,0.01,0.1,1",
                       help="learning rates, comma-separated (default 0.001,0.01,0.1,1)")
    sweep.add_argument("--find", action="store_true", help="also run the learning-rate finder "
                       "(fastai's lr_find) and mark its suggestion")
    _path_args(sweep, steps=100)
    sweep.add_argument("--out", "-O", default="lr-sweep.png",
                       help="the picture (default lr-sweep.png)")
    sweep.set_defaults(func=cmd_lr_sweep)

    servep = sub.add_parser("serve", help="the playground in the browser: fit by hand, watch "
                            "gradient descent", epilog=SERVE_EXAMPLES, formatter_class=fmt)
    servep.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1, this machine only)")
    servep.add_argument("--port", type=int, default=8000, help="default 8000")
    servep.add_argument("--open", action="store_true", help="open the page in a browser")
    servep.add_argument("--data", default="lesson", choices=list(DATASETS),
                        help="the built-in dataset the page opens with (default: lesson)")
    servep.add_argument("--max-memory", default="1G", metavar="SIZE",
                        help="the server's memory cap, e.g. 1G or 1500M (default 1G): every "
                        "request is priced against it")
    servep.add_argument("--max-seconds", type=float, default=10.0, metavar="S",
                        help="seconds a request may compute before it is cancelled (default 10)")
    servep.add_argument("--allow-origin", action="append", default=[], metavar="URL",
                        help="a page origin allowed besides the server's own, e.g. "
                        "http://localhost:3000 (repeatable)")
    servep.set_defaults(func=cmd_serve)

    evalp = sub.add_parser("eval", help="the loss and its gradient at given parameters",
                           epilog=EVAL_EXAMPLES, formatter_class=fmt)
    _data_args(evalp)
    evalp.add_argument("--params", required=True, help="parameter values, e.g. a=1.1,b=1.1,c=1.1")
    evalp.set_defaults(func=cmd_eval)
    return parser


def _path_args(p: argparse.ArgumentParser, steps: int) -> None:
    """The gradient-descent run behind a picture."""
    p.add_argument("--optimizer", "-o", default="gd", choices=list(OPTIMIZERS),
                   help="default: gd, the lesson's gradient descent")
    p.add_argument("--lr", type=float, help="learning rate (default: the optimizer's own)")
    p.add_argument("--steps", "-n", type=int, default=steps, help=f"step limit (default {steps})")
    p.add_argument("--p0", help="starting values, e.g. a=1.1,b=1.1,c=1.1")
    p.add_argument("--seed", type=int, default=0, help="seed of random starts and batches")


def _run_kwargs(args) -> dict:
    kw = dict(optimizer=args.optimizer, steps=args.steps, seed=args.seed,
              p0=parse_assignments(args.p0, "--p0") if args.p0 else None)
    if getattr(args, "lr", None) is not None:
        kw["lr"] = args.lr
    return kw


def _load(args):
    return load_data(args.data, x=args.x, y=args.y, sigma=args.sigma, drop_nan=args.drop_nan) \
        if args.data not in DATASETS else load_data(args.data)


def _write_json(args, payload: dict) -> None:
    text = finite_json.dumps(payload, indent=None if args.json == "-" else 2)
    if args.json == "-":
        print(text)
        return
    try:
        with open(args.json, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise InputError("cannot write the JSON file", expected="a writable path",
                         given=f"{args.json} ({exc.strerror})") from None


def cmd_lesson(args) -> int:
    from .lesson import replay
    pictures = None
    if args.pictures:
        from .plots.commands import lesson_pictures
        pictures = lesson_pictures(args.pictures)
    for line in replay(pictures):
        print(line, flush=True)
    return EXIT_OK


def cmd_landscape(args) -> int:
    from .plots.commands import landscape_command
    landscape_command(args, _load(args), _run_kwargs(args))
    return EXIT_OK


def cmd_lr_sweep(args) -> int:
    from .plots.commands import lr_sweep_command
    kw = _run_kwargs(args)
    kw.pop("lr", None)
    lr_sweep_command(args, _load(args), kw)
    return EXIT_OK


def cmd_fit(args) -> int:
    from .cli_dask import cmd_fit_dask, wants_dask
    if wants_dask(args):          # Parquet, a glob or folder, --workers, --scheduler: on Dask
        return cmd_fit_dask(args)
    from .fit import iter_fit
    options = {k: v for k, v in (("momentum", args.momentum), ("batch_size", args.batch_size))
               if v is not None}
    if args.nesterov:
        options["nesterov"] = True
    if args.accumulate_grad:
        options["accumulate_grad"] = True
    if args.group:                     # many series: one fit each, one row each
        from .cli_many import cmd_fit_many
        return cmd_fit_many(args, options)
    data = _load(args)
    p0 = parse_assignments(args.p0, "--p0") if args.p0 else None
    if args.plot or args.animate:
        from .plots.commands import check_fit_outputs
        check_fit_outputs(args)
    run = iter_fit(args.model, data.x, data.y, sigma=data.sigma, loss=args.loss, delta=args.delta,
                   optimizer=args.optimizer, lr=args.lr, steps=args.steps, p0=p0, seed=args.seed,
                   ftol=args.ftol, gtol=args.gtol, time_limit=args.time_limit,
                   schedule=args.schedule, dtype=args.dtype, device=args.device,
                   inputs=data.x_names,
                   bounds=parse_bounds(args.bounds) if args.bounds else None,
                   fixed=parse_assignments(args.fix, "--fix") if args.fix else None,
                   absolute_sigma=args.absolute_sigma, **options)
    if run.problem.model.identifiable:
        check_enough_points(data, run.problem.model.n_params)
    if data.dropped and args.json != "-":
        print(f"gradfit: dropped {data.dropped} row(s) holding NaN, inf or empty cells",
              file=sys.stderr)
    show_bar = not args.quiet and args.json != "-" and sys.stdout.isatty()
    _drain(run, args.steps, show_bar)
    result = run.result
    if args.json:
        _write_json(args, result.to_dict(history=args.json != "-"))
    if args.json != "-" and not args.quiet:
        print(result.report())
    if args.plot or args.animate:
        from .plots.commands import write_fit_pictures
        write_fit_pictures(args, result, data,
                           say=print if args.json != "-" and not args.quiet else _silent)
    if not result.converged:       # diverged, failed, or stopped before the optimum
        hint = "; allow more with --steps" if result.reason == "max_steps" else ""
        print(f"gradfit: not converged: {result.message}{hint}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _silent(text: str) -> None:
    pass


def _drain(run, steps: int, show_bar: bool) -> None:
    """Run the fit; a progress bar observes it when the fit lasts over a second."""
    tqdm = None
    if show_bar:
        try:
            from tqdm import tqdm      # the [cli] extra; without it, no bar
        except ImportError:
            pass
    if tqdm is None:
        for _ in run:
            pass
        return
    with tqdm(total=steps, delay=1.0, file=sys.stderr, unit="step", leave=False) as bar:
        for i, record in enumerate(run):
            if i % 50 == 0:
                bar.set_postfix_str(f"loss={record.loss:.4g}", refresh=False)
                bar.update(50 if i else 1)


def cmd_serve(args) -> int:
    from .web import serve          # here, so that the core never loads the web stack
    if not 0 < args.port < 65536:
        raise InputError("bad --port", expected="a port number 1..65535", given=args.port)
    try:
        serve(host=args.host, port=args.port, open_browser=args.open, data=args.data,
              max_memory=parse_size(args.max_memory), max_seconds=args.max_seconds,
              origins=tuple(args.allow_origin))
    except OSError as exc:     # raised by the bind, before any "open http://..." line
        print(f"gradfit: error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
              f"; try another port, e.g. --port {8080 if args.port != 8080 else 8081}",
              file=sys.stderr)
        return EXIT_PORT
    return EXIT_OK


def cmd_eval(args) -> int:
    from .fit import loss_and_grad
    data = _load(args)
    params = parse_assignments(args.params, "--params")
    value, grad = loss_and_grad(args.model, data.x, data.y, params, sigma=data.sigma,
                                loss=args.loss, delta=args.delta, inputs=data.x_names)
    if args.json:
        _write_json(args, {"loss": value, "loss_name": args.loss, "params": params, "grad": grad})
    if args.json != "-":
        width = max(len(n) for n in grad)
        print(f"{args.loss} = {value:.6g}")
        print("gradient:")
        for name, g in grad.items():
            print(f"  {name:<{width}}  {g: .6g}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"gradfit: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except GradfitError as exc:
        print(f"gradfit: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("gradfit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug of ours: one clear line, the traceback on request
        if os.environ.get("GRADFIT_DEBUG"):
            raise
        print(f"gradfit: internal error: {type(exc).__name__}: {exc} "
              "(set GRADFIT_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
