"""The command line's pictures: ``fit --plot/--animate``, ``landscape``, ``lr-sweep`` and
``lesson --pictures``. ``gradfit.cli`` parses the arguments and calls these lazily, so
the other commands never load matplotlib."""
from __future__ import annotations

import json

from .. import landscape as core
from .. import learning_rates as rates
from ..errors import InputError
from ..models import make_model, start_values


def parse_names(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``: one or two names."""
    names = [p.strip() for p in text.split(",") if p.strip()]
    if not 1 <= len(names) <= 2 or len(set(names)) != len(names):
        raise InputError("bad --params", expected="one or two different parameter names, "
                         "e.g. a,b", given=text)
    return names


def parse_span(text: str | None):
    """``"2"`` (a half-width for each) or ``"a=2,b=0:5"`` (half-width or low:high)."""
    if text is None:
        return None
    hint = "a half-width such as 2, or a=2,b=0:5 (half-width or low:high per parameter)"
    try:
        if "=" not in text:
            return core.axis_range("every parameter", 0.0, float(text)) and float(text)
        span = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, value = part.partition("=")
            lo, colon, hi = value.partition(":")
            span[name.strip()] = (float(lo), float(hi)) if colon else float(value)
    except ValueError:
        raise InputError("bad --span", expected=hint, given=text) from None
    for name, value in span.items():          # refuse a bad span before the fit runs
        core.axis_range(name, 0.0, value)
    return span


def parse_lrs(text: str) -> list[float]:
    """``"0.001,0.01,0.1"`` -> rates, each positive."""
    try:
        lrs = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise InputError("bad --lrs", expected="positive numbers separated by commas, "
                         "e.g. 0.001,0.01,0.1", given=text) from None
    return rates.check_lrs(lrs)


def check_fit_outputs(args) -> None:
    """Refuse bad --plot and --animate paths before the fit runs."""
    from .animation import check_animation_path
    from .common import check_image_path
    if args.plot:
        check_image_path(args.plot)
    if args.animate:
        check_animation_path(args.animate)
        if args.frames < 2:
            raise InputError("bad --frames", expected="at least 2", given=args.frames)


def write_fit_pictures(args, result, data, say) -> None:
    from .animation import animate
    from .common import save
    from .curves import fit
    if args.plot:
        say(f"picture: {save(fit(result, data), args.plot)}")
    if args.animate:
        frames = animate(result, args.animate, data, max_frames=args.frames)
        say(f"animation: {args.animate} ({len(frames)} frames)")


def landscape_command(args, data, fit_kwargs: dict) -> None:
    """Fit (the optimizer's path), then draw the loss over --params around it."""
    from ..fit import iter_fit
    from .common import check_image_path, save
    from .surface import landscape
    names = parse_names(args.params)
    around = _assignments(args.around, "--around")
    span = parse_span(args.span)
    out = check_image_path(args.out)
    if args.resolution is not None:
        core.check_resolution(args.resolution, 1)
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
    fig = landscape(r, data, params=names, around=around, span=span,
                    resolution=args.resolution, delta=args.delta)
    save(fig, out)
    if args.json:
        payload = _landscape_json(problem, r, names, around, span, args.resolution)
        _emit_json(args.json, payload)
    if args.json != "-":
        print(f"wrote {out}: {r.loss_name} over {', '.join(names)}; path: {r.method}, "
              f"{r.steps} steps, loss {r.history[0]:.4g} -> {r.loss:.4g} ({r.reason})")


def _landscape_json(problem, r, names, around, span, resolution) -> dict:
    center = core.full_center(problem, {**r.params, **around})
    idx = [problem.model.param_names.index(n) for n in names]
    path = r.trajectory[:, idx]
    if len(names) == 2:
        body = core.loss_grid(problem, names, center, span, resolution or 81, path=path).to_dict()
    else:
        body = core.loss_slice(problem, names[0], center, span, resolution or 301,
                               path=path[:, 0]).to_dict()
    body["path"] = path.tolist()
    body["path_loss"] = core.loss_along(problem, names, path, center).tolist()   # on the surface
    body["history"] = r.history.tolist()                                          # the fit's own
    return body


def lr_sweep_command(args, data, fit_kwargs: dict) -> None:
    """Run the sweep (and the finder with --find), draw it, print the labels."""
    from .common import check_image_path, save
    from .rates import lr_sweep
    lrs = parse_lrs(args.lrs)
    out = check_image_path(args.out)
    if args.find:
        rates.check_finder_optimizer(fit_kwargs["optimizer"])
    common = dict(sigma=data.sigma, loss=args.loss, delta=args.delta, inputs=data.x_names)
    sweep = rates.lr_sweep(args.model, data.x, data.y, lrs, **common, **fit_kwargs)
    found = None
    if args.find:
        found = rates.lr_find(args.model, data.x, data.y, optimizer=fit_kwargs["optimizer"],
                             p0=fit_kwargs.get("p0"), seed=fit_kwargs.get("seed", 0), **common)
    save(lr_sweep(sweep, data, finder=found), out)
    if args.json:
        payload = sweep.to_dict()
        if found is not None:
            payload["lr_find"] = found.to_dict()
        _emit_json(args.json, payload)
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
    from .lesson_plots import lesson_figures
    return {k: str(v) for k, v in lesson_figures(directory).items()}


def _assignments(text, what) -> dict[str, float]:
    from ..cli import parse_assignments
    return parse_assignments(text, what) if text else {}


def _emit_json(target: str, payload: dict) -> None:
    text = json.dumps(payload, indent=None if target == "-" else 2)
    if target == "-":
        print(text)
        return
    try:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    except OSError as exc:
        raise InputError("cannot write the JSON file", expected="a writable path",
                         given=f"{target} ({exc.strerror})") from None
