"""``gradfit fit``: arguments -> one fit (or one per group, or on Dask) -> report and files."""
from __future__ import annotations

import sys

from ..errors import InputError
from .exits import EXIT_FAILED, EXIT_OK
from .inputs import DATASETS, add_data_args, check_uses_an_input, load
from .options import add_settings, optimizer_options
from .parsing import assignments_or_none, check_outputs, parse_bounds, write_json

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
#: the run settings of ``gradfit fit``, in the order of ``--help`` (rows of ``SETTINGS``)
FIT_SETTINGS = ("optimizer", "lr", "steps", "p0", "bounds", "fixed", "absolute_sigma", "seed",
                "starts", "schedule", "momentum", "nesterov", "batch_size", "accumulate_grad",
                "weight_decay", "max_iter", "history_size", "xtol", "factor", "max_tries",
                "inner_steps", "ftol", "gtol", "time_limit", "divergence", "dtype", "device")


def add_parser(sub, fmt) -> None:
    from .dask import add_arguments             # --workers, --scheduler: on Dask
    fitp = sub.add_parser("fit", help="fit a model to data", epilog=FIT_EXAMPLES,
                          formatter_class=fmt)
    add_data_args(fitp)
    add_settings(fitp, FIT_SETTINGS)
    fitp.add_argument("--group", help="column naming the series of a long table: fit every "
                      "series (fit_many), one row per series; a progress bar over the "
                      "series shows on stderr when it is a terminal (not with --quiet or "
                      "--json -)")
    fitp.add_argument("--out", "-O", help="with --group: write the table of fits to this file "
                      "(.csv or .parquet); without it the table goes to standard output as "
                      "CSV")
    add_arguments(fitp)
    fitp.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no report")
    fitp.add_argument("--plot", metavar="PATH", help="draw the fit: data, start, fit, "
                      "residuals and the loss over steps (.png, .pdf, .svg, .jpg, .webp)")
    fitp.add_argument("--animate", metavar="PATH", help="the fit moving step by step "
                      "(.gif; .mp4 when ffmpeg is installed)")
    fitp.add_argument("--frames", type=int, default=100,
                      help="most frames of --animate, sampled over the run (default 100)")
    fitp.set_defaults(func=cmd_fit)


def run_kwargs(args) -> dict:
    """The keyword arguments of ``iter_fit``/``fit_many`` given on the command line. A
    name in both --p0 and --fix follows Python's rule (``config.unused_p0``): the fixed
    value wins, and the report says that --p0's start was not used."""
    p0, fixed = assignments_or_none(args.p0, "--p0"), assignments_or_none(args.fixed, "--fix")
    kw = dict(loss=args.loss, delta=args.delta, optimizer=args.optimizer, lr=args.lr,
              steps=args.steps, p0=p0, bounds=parse_bounds(args.bounds), fixed=fixed,
              seed=args.seed, ftol=args.ftol, gtol=args.gtol, schedule=args.schedule,
              divergence=args.divergence, dtype=args.dtype, device=args.device,
              absolute_sigma=args.absolute_sigma, **optimizer_options(args))
    if args.starts is not None:
        kw["starts"] = args.starts
    return kw


def cmd_fit(args) -> int:
    from .dask import cmd_fit_dask, wants_dask
    check_outputs(args)           # before the work: a typo in --out must not lose a long run
    if args.time_limit is not None and (args.group or wants_dask(args)):
        raise InputError("--time-limit stops one fit in this process, not many series or a "
                         "fit on Dask", expected="no --time-limit here (--steps bounds each "
                         "fit)", given=args.time_limit)
    if args.out and not args.group:     # it wrote nothing, without a word
        raise InputError("--out writes the table of a --group fit (one row per series)",
                         expected="--group COL, or --json FILE for this one fit",
                         given=args.out)
    if args.out and not args.out.lower().endswith((".csv", ".parquet")):
        # '-' too: --out names a file; without it the table goes to stdout as CSV
        raise InputError("bad --out", expected="a .csv or .parquet path (the table's format); "
                         "leave out --out to write the table as CSV to standard output",
                         given=args.out)
    if args.group:                # a model of the group column: fitted as a parameter before
        from .inputs import check_group_column
        check_group_column(args.model, args.group)
    if wants_dask(args):          # Parquet, a glob or folder, --workers, --scheduler: on Dask
        return cmd_fit_dask(args)
    if args.group and args.data in DATASETS:
        raise InputError(f"{args.data!r} is a built-in dataset, one series without a group "
                         "column", expected="--group with a CSV file of many series")
    if args.group:                # many series: one fit each, one row each
        from .inputs import guess_group_sigma
        from .many import cmd_fit_many
        guess_group_sigma(args)       # an 'err' column is sigma, as for one fit
        return cmd_fit_many(args, run_kwargs(args))
    from ..data import check_enough_points
    from ..fit import iter_fit
    from ..models import table_inputs
    data = load(args)
    if args.plot or args.animate:
        from .pictures import check_fit_outputs
        check_fit_outputs(args)
    inputs = table_inputs(args.model, list(data.x_names))
    check_uses_an_input(args.model, inputs, data)
    note_unused_inputs(args, inputs, len(data.y))
    run = iter_fit(args.model, data.x, data.y, sigma=data.sigma, time_limit=args.time_limit,
                   inputs=inputs, **run_kwargs(args))
    if run.problem.model.identifiable:
        check_enough_points(data, run.problem.model.n_params)
    if data.dropped and args.json != "-":
        print(f"gradfit: dropped {data.dropped} row(s) holding NaN, inf or empty cells",
              file=sys.stderr)
    show_bar = not args.quiet and args.json != "-" and sys.stdout.isatty()
    _drain(run, args.steps, show_bar)
    result = run.result
    _note_unused_rate(args, run, result)
    if args.json:
        payload = result.to_dict(history=args.json != "-")
        if data.dropped:            # --drop-nan's rows: said on stderr too, unless --json -
            payload["dropped_rows"] = data.dropped
        write_json(args.json, payload)
    if args.json != "-" and not args.quiet:
        print(result.report())
    if args.plot or args.animate:
        from .pictures import write_fit_pictures
        write_fit_pictures(args, result, data,
                           say=print if args.json != "-" and not args.quiet else _silent)
    if not result.converged:       # diverged, failed, or stopped before the optimum
        hint = "; allow more with --steps" if result.reason == "max_steps" else ""
        print(f"gradfit: not converged: {result.message}{hint}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def note_unused_inputs(args, inputs, n: int | None = None) -> None:
    """One line on stderr for each thing given that changes nothing (each had been taken
    without a word): an input column chosen by --x that the model does not use, --delta
    with a loss other than huber, --frames without --animate, a --batch-size of all ``n``
    points or more (every step then uses the whole data)."""
    from ..models import unused_inputs
    from ..settings import SETTINGS
    unused = unused_inputs(args.model, inputs)
    if args.json == "-":
        return
    notes = []
    if unused:
        notes.append(f"the model does not use the input column(s) {', '.join(unused)}")
    if args.delta != SETTINGS["delta"].default and args.loss != "huber":
        notes.append(f"--delta not used: it is huber's, and the loss is {args.loss}")
    if getattr(args, "frames", 100) != 100 and not getattr(args, "animate", None):
        notes.append("--frames not used: it is the most frames of --animate, not given")
    batch = getattr(args, "batch_size", None)
    if batch is not None and n is not None and batch >= n:
        notes.append(f"--batch-size {batch} is not a mini-batch: the data have {n} points, "
                     "so every step uses them all (as gd does)")
    for note in notes:
        print(f"gradfit: note: {note}", file=sys.stderr)


def _note_unused_rate(args, run, result) -> None:
    """One line on stderr where --lr or --schedule was given to a method without a
    learning rate (lm or irls, as auto chooses them) or --schedule to one without a
    schedule: taken before without a word. (The gradient method auto chooses runs at the
    given rate and schedule.) A run of several starts is asked through its first start (it
    had exited 70: a ``MultiStartRun`` has no stepper of its own)."""
    one = getattr(run, "first", run)          # MultiStartRun: the start being watched
    stepper = one.stepper
    given = [flag for flag, unused in (
        ("--lr", args.lr is not None and not stepper.has_lr),
        ("--schedule", args.schedule != "constant" and (
            not stepper.has_lr or getattr(stepper, "scheduler", None) is None)))
        if unused]
    if not given or args.json == "-":
        return
    if not stepper.has_lr:
        print(f"gradfit: note: {' and '.join(given)} not used: the fit ran "
              f"{result.optimizer}, which sets its own steps (a learning rate is for "
              "--optimizer gd, momentum, adam, ...)", file=sys.stderr)
    else:
        print(f"gradfit: note: --schedule not used: {result.optimizer} takes no schedule",
              file=sys.stderr)


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

