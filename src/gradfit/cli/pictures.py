"""The command line's pictures: ``fit --plot/--animate``, ``landscape``, ``lr-sweep`` and
``lesson --pictures``. matplotlib (``gradfit.plots``) is imported inside the commands that
draw, so the other commands never load it; ``plots/`` imports nothing from here."""
from __future__ import annotations

import numpy as np

from ..errors import InputError
from .exits import EXIT_OK
from .inputs import add_data_args, load
from .options import add_settings
from .parsing import assignments_or_none, parse_assignments, write_json

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
#: the run behind a picture: gradient descent by default (the lesson's), from the table
PATH_SETTINGS = ("optimizer", "lr", "steps", "p0", "seed")
#: a landscape's cost: data points x grid points (about a minute of a quadratic's loss on
#: one CPU core at the far end); beyond it the command refuses and says how to ask for less
LANDSCAPE_WORK = 2e9
#: ... and from this much on it says what it is doing (seconds)
LANDSCAPE_NOTE = 2e8


def add_parsers(sub, fmt) -> None:
    land = sub.add_parser("landscape", help="the loss over one or two parameters, with the "
                          "optimizer's path on it", epilog=LANDSCAPE_EXAMPLES, formatter_class=fmt)
    add_data_args(land)
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
    add_settings(land, PATH_SETTINGS, optimizer="gd", steps=200)
    land.add_argument("--out", "-O", default="landscape.png", help="the picture (default "
                      "landscape.png)")
    land.set_defaults(func=cmd_landscape)

    sweep = sub.add_parser("lr-sweep", help="the same fit at several learning rates, side by "
                           "side and labelled", epilog=LR_SWEEP_EXAMPLES, formatter_class=fmt)
    add_data_args(sweep)
    sweep.add_argument("--lrs", default="0.001,0.01,0.1,1",
                       help="learning rates, comma-separated (default 0.001,0.01,0.1,1)")
    sweep.add_argument("--find", action="store_true", help="also run the learning-rate finder "
                       "(fastai's lr_find) and mark its suggestion")
    add_settings(sweep, [n for n in PATH_SETTINGS if n != "lr"], optimizer="gd", steps=100)
    sweep.add_argument("--out", "-O", default="lr-sweep.png",
                       help="the picture (default lr-sweep.png)")
    sweep.set_defaults(func=cmd_lr_sweep)


def _path_kwargs(args) -> dict:
    kw = dict(optimizer=args.optimizer, steps=args.steps, seed=args.seed,
              p0=assignments_or_none(args.p0, "--p0"))
    if getattr(args, "lr", None) is not None:
        kw["lr"] = args.lr
    return kw


def cmd_landscape(args) -> int:
    landscape_command(args, load(args), _path_kwargs(args))
    return EXIT_OK


def cmd_lr_sweep(args) -> int:
    lr_sweep_command(args, load(args), _path_kwargs(args))
    return EXIT_OK


def parse_names(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: one or two names."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise InputError("bad --params", expected="one or two different parameter names, "
                         "e.g. a,b", given=text)
    return names


def parse_span(text: str | None):
    """``"2"`` (a half-width for each) or ``"a=2,b=0:5"`` (half-width or low:high)."""
    from .. import landscape as core
    if text is None:
        return None
    hint = "a half-width such as 2, or a=2,b=0:5 (half-width or low:high per parameter)"
    try:
        if "=" not in text:
            half = float(text)
            core.axis_range("every parameter", 0.0, half)    # its own message if bad
            return half
        span = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            lo, colon, hi = value.partition(":")
            span[name.strip()] = (float(lo), float(hi)) if colon else float(value)
    except InputError:
        raise
    except ValueError:
        raise InputError("bad --span", expected=hint, given=text) from None
    for name, value in span.items():          # refuse a bad span before the fit runs
        core.axis_range(name, 0.0, value)
    return span


def parse_lrs(text: str) -> list[float]:
    """``"0.001,0.01,0.1"`` -> rates, each positive."""
    from .. import learning_rates as rates
    try:
        lrs = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError("bad --lrs", expected="positive numbers separated by commas, "
                         "e.g. 0.001,0.01,0.1", given=text) from None
    return rates.check_lrs(lrs)


def check_fit_outputs(args) -> None:
    """Refuse bad --plot and --animate paths, a number of --frames beyond 2..MAX_FRAMES,
    and an animation of a model of three or more inputs (--x), before the fit runs."""
    from ..plots.animation import check_animation_path, check_frames
    from ..plots.common import check_image_path
    if args.plot:
        check_image_path(args.plot)
    if args.animate:
        check_animation_path(args.animate)
        check_frames(args.frames, "--frames")
        inputs = [c for c in (getattr(args, "x", None) or "").split(",") if c.strip()]
        if len(inputs) > 2:
            raise InputError("cannot animate this fit", expected="a model of one or two "
                             "inputs (--plot draws more: fitted against observed y)",
                             given=f"{len(inputs)} inputs (--x {args.x})")


def write_fit_pictures(args, result, data, say) -> None:
    from ..plots.animation import animate
    from ..plots.common import save
    from ..plots.curves import fit
    if args.plot:
        say(f"picture: {save(fit(result, data), args.plot)}")
    if args.animate:
        frames = animate(result, args.animate, data, max_frames=args.frames)
        say(f"animation: {args.animate} ({len(frames)} frames)")


def check_landscape_work(n: int, k: int, resolution: int | None, quiet: bool) -> None:
    """Price a landscape before it runs: ``n`` data points times its grid points (``k``
    parameters at ``resolution`` each); refuse beyond ``LANDSCAPE_WORK`` with the
    resolution that fits, and say the work on stderr from ``LANDSCAPE_NOTE`` on."""
    import sys
    res = resolution or (81 if k == 2 else 301)
    points = res ** k
    work = float(n) * points
    if work > LANDSCAPE_WORK:
        most = int((LANDSCAPE_WORK / n) ** (1 / k))
        ask = (f"--resolution {most} or less, or " if most >= 2 else "") + \
            "fewer data points (a sample of them: the landscape's shape needs few)"
        raise InputError(f"the landscape is too much work: {points:,} grid points x {n:,} "
                         f"data points = {work:.3g} evaluations of the model, beyond the "
                         f"{LANDSCAPE_WORK:.0e} this command takes", expected=ask,
                         given=f"--resolution {res}")
    if work >= LANDSCAPE_NOTE and not quiet:
        print(f"gradfit: note: the landscape evaluates the loss at {points:,} grid points "
              f"over {n:,} data points ({work:.2g} evaluations of the model)", file=sys.stderr)


def landscape_command(args, data, fit_kwargs: dict) -> None:
    """Fit (the optimizer's path), then draw the loss over --params around it."""
    import sys
    from .. import landscape as core
    from ..models import make_model, start_values
    from ..fit import iter_fit
    from ..plots.common import check_image_path, plural, save
    from ..plots.landscape_view import landscape_view
    from ..plots.surface import draw_view
    names = parse_names(args.params)
    around = _assignments(args.around, "--around")
    span = parse_span(args.span)
    out = check_image_path(args.out)
    if args.resolution is not None:
        core.check_resolution(args.resolution, 1)
    check_landscape_work(len(data.y), len(names), args.resolution, args.json == "-")
    model = make_model(args.model, data.x_names)
    problem = core.as_problem(model, data.x, data.y, data.sigma, loss=args.loss,
                              delta=args.delta, inputs=data.x_names,
                              device=getattr(args, "device", "cpu"))
    core.check_names(problem, names)
    unknown = [n for n in list(around) + list(span if isinstance(span, dict) else {})
               if n not in model.param_names]
    if unknown:
        raise InputError(f"unknown parameter {unknown[0]!r}",
                         expected="one of " + ", ".join(model.param_names[:20]))
    if args.fix_others:
        p0 = fit_kwargs.get("p0") or {}
        start = start_values(model, p0, problem.x, fit_kwargs.get("seed", 0))
        fit_kwargs["fixed"] = {n: around.get(n, start[n]) for n in model.param_names
                               if n not in names}
    run = iter_fit(model, data.x, data.y, sigma=data.sigma, loss=args.loss, delta=args.delta,
                   inputs=data.x_names, **fit_kwargs)
    for _ in run:
        pass
    r = run.result
    if not np.isfinite(r.history).any():    # an all-inf picture, exit 0, before
        raise InputError("no finite loss to draw: the fit " + r.message)
    if args.lr is not None and "lr=" not in r.method and args.json != "-":
        print(f"gradfit: note: --lr not used: the path ran {r.optimizer}, which sets its own "
              "steps (a learning rate is for --optimizer gd, momentum, adam, ...)",
              file=sys.stderr)
    view = landscape_view(r, data, params=names, around=around, span=span,
                          resolution=args.resolution, delta=args.delta)
    save(draw_view(view), out)
    if args.json:                       # the grid the picture drew, not a second one
        payload = view.to_dict()
        payload["history"] = r.history.tolist()                     # the fit's own
        write_json(args.json, payload)
    if args.json != "-":
        end = f"{r.loss:.4g}" if r.reason != "diverged" else \
            f"diverged at step {len(r.history) - 1} (last finite {r.loss:.4g})"
        print(f"wrote {out}: {view.loss_label} over {', '.join(names)}; path: {r.method}, "
              f"{plural(r.steps, 'step')}, loss {r.history[0]:.4g} -> {end} ({r.reason})")


def lr_sweep_command(args, data, fit_kwargs: dict) -> None:
    """Run the sweep (and the finder with --find), draw it, print the labels."""
    from .. import learning_rates as rates
    from ..plots.common import check_image_path, save
    from ..plots.rates import lr_sweep
    lrs = parse_lrs(args.lrs)
    out = check_image_path(args.out)
    if args.find:
        rates.check_finder_optimizer(fit_kwargs["optimizer"])
    rates.check_sweep_optimizer(fit_kwargs["optimizer"])      # lm, auto...: every run the same
    common = dict(sigma=data.sigma, loss=args.loss, delta=args.delta, inputs=data.x_names)
    sweep = rates.lr_sweep(args.model, data.x, data.y, lrs, **common, **fit_kwargs)
    if not any(np.isfinite(run.result.history).any() for run in sweep.runs):
        # empty panels and exit 0 before; landscape says so too
        raise InputError("no finite loss to draw: the fit " + sweep.runs[0].result.message)
    found = None
    if args.find:
        found = rates.lr_find(args.model, data.x, data.y, optimizer=fit_kwargs["optimizer"],
                             p0=fit_kwargs.get("p0"), seed=fit_kwargs.get("seed", 0), **common)
    save(lr_sweep(sweep, data, finder=found), out)
    if args.json:
        payload = sweep.to_dict()
        if found is not None:
            payload["lr_find"] = found.to_dict()
        write_json(args.json, payload)
    if args.json == "-":
        return
    print(f"{'lr':>10}  {'start':>11}  {'end':>11}  label")
    for run in sweep.runs:
        h = run.result.history
        print(f"{run.lr:>10g}  {h[0]:>11.5g}  {h[-1]:>11.5g}  {run.label}")
    print(f"rule: {rates.LR_RULE}")
    if found is not None:
        print(f"lr_find suggests lr={found.suggestion:.3g} (fastai's valley; steepest fall at "
              f"{found.steep:.3g}, lowest loss / 10 at {found.minimum:.3g})")
    print(f"wrote {out}")


def lesson_pictures(directory) -> dict[str, str]:
    from ..plots.lesson_plots import lesson_figures
    return {k: str(v) for k, v in lesson_figures(directory).items()}


def _assignments(text, what) -> dict[str, float]:
    return parse_assignments(text, what) if text else {}
