"""What a landscape picture shows, as numbers (``LandscapeView``): the loss surface, the
fit's path on it, and the choices of the default view (each parameter's natural scale, the
slice's exact minimum, a start far off in scale). ``surface.draw_view`` draws it."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import landscape as core
from ..fit import prepare
from .common import as_data, diverged_at, loss_label, plural, short

REACH = 20      # the slice's minimum widens a default view up to this many half-widths
FAR = 1000      # path points beyond this many natural half-widths are left out of the view


@dataclass
class LandscapeView:
    """What a landscape picture shows, as numbers: the ``surface`` (a ``LossGrid`` or a
    ``LossSlice``), the fit's ``path`` on the chosen parameters ``(k, d)`` (all of it: a
    diverged run's ends where the divergence showed, step ``diverged_at``), the loss at
    each of its points on this slice (``path_loss``), the legend's ``label``, the
    ``bounds`` of the drawn parameters and the loss's ``loss_label``; ``valley``: the
    slice's minimum is no point (the data do not determine the drawn parameters: one
    point for a line), so the grid's lowest point says nothing of where it lies."""

    surface: "core.LossGrid | core.LossSlice"
    path: np.ndarray | None
    path_loss: np.ndarray | None
    label: str
    loss_label: str
    diverged_at: int | None = None
    bounds: dict = field(default_factory=dict)
    valley: bool = False

    def to_dict(self) -> dict:
        body = self.surface.to_dict()
        if self.path is not None:
            body["path"] = core._json_rows(self.path)
            body["path_loss"] = core._json_rows(self.path_loss)      # on the surface
        body["loss_label"], body["diverged_at"] = self.loss_label, self.diverged_at
        return body


def landscape_view(result, x=None, y=None, sigma=None, *, params, around=None, span=None,
                   resolution: int | None = None, loss: str | None = None,
                   delta: float = 1.0, path: bool = True) -> LandscapeView:
    """The numbers of ``landscape`` (same arguments), computed once: a picture and a JSON
    answer share them."""
    x, y, sigma = as_data(result, x, y, sigma)
    model = result.model_object
    name = loss or result.loss_name
    problem = prepare(model, x, y, sigma, loss=name, delta=delta, inputs=model.input_names)
    names = core.check_names(problem, [params] if isinstance(params, str) else params)
    center = core.full_center(problem, {**result.params, **dict(around or {})})
    idx = [model.param_names.index(n) for n in names]
    traj_all = np.asarray(result.trajectory, dtype=float)
    k = diverged_at(result)
    finite = traj_all[:max(k, 1)] if k is not None else traj_all   # the points with a loss
    traj = traj_all[:, idx] if path else None
    keep = finite[:, idx] if path else np.empty((0, len(names)))
    half = _natural_halves(problem, names, center, span)
    best, valley = _slice_minimum(result, problem, x, y, sigma, name, delta, names, center,
                                  half, keep)
    far = None
    if len(keep) and half:        # a start far off in scale (1 for a slope of 3e-9): the
        out = (np.abs(keep - [center[n] for n in names]) > FAR * np.array(half)).any(1)
        if out.any() and not out.all():     # view holds the rest, and says where it starts
            far, keep = keep[out][0] if out[0] else None, keep[~out]
    if best is not None:
        keep = np.vstack([keep, best])
    if k and path:          # where it diverged, in view when it is no farther than the path
        escape = traj[k]
        if np.isfinite(escape).all() and (np.abs(escape - finite[-1, idx])
                                           <= 3 * np.ptp(finite[:, idx], axis=0)).all():
            keep = np.vstack([keep, escape])
    keep = keep if len(keep) else None
    if len(names) == 2:
        surface = core.loss_grid(problem, names, center, span, resolution or 81, path=keep)
    else:
        surface = core.loss_slice(problem, names[0], center, span, resolution or 301,
                                  path=None if keep is None else keep[:, 0])
    on = None if traj is None else core.loss_along(problem, names, np.nan_to_num(traj), center)
    if on is not None:
        on[~np.isfinite(traj).all(1)] = np.nan
    label = f"{result.method}: {plural(result.steps, 'step')}"
    if k is not None:
        label += f", DIVERGED at step {k}"
    note = _projected(model.param_names, names, finite, center)
    if note and path:
        label += f" (projected: {note})"
    if far is not None:
        label += f"; it starts off the view, at {short(dict(zip(names, far)))}"
    bounds = {n: tuple(result.bounds[n]) for n in names if n in (result.bounds or {})}
    return LandscapeView(surface, traj, on, label, loss_label(name, sigma), k, bounds,
                         valley and len(names) == 2)


def _projected(all_names, names, finite, center) -> str:
    """Why the path is not on the drawn slice: other parameters moved during the fit, or
    ``around`` holds one elsewhere than the fit had it."""
    moved, elsewhere = [], {}
    for j, n in enumerate(all_names):
        if n in names:
            continue
        col = finite[:, j]
        if np.ptp(col) > 0:
            moved.append(n)
        elif col[0] != center[n]:
            elsewhere[n] = float(col[0])
    parts = [f"{_few(moved)} moved too"] if moved else []
    if elsewhere:
        parts.append(f"the fit had {short(elsewhere)}")
    return "; ".join(parts)


def _natural_halves(problem, names, center, span) -> list[float] | None:
    """Each drawn parameter's default half-width (``default_half_width`` at its natural
    scale), or None where a span is given for any of them."""
    if span is not None and not (isinstance(span, dict) and all(n not in span for n in names)):
        return None
    scales = core.natural_scales(problem.model, problem.x.double(), problem.y, center, names)
    return [core.default_half_width(center[n], scales.get(n)) for n in names]


def _slice_minimum(result, problem, x, y, sigma, loss, delta, names, center, half, keep):
    """The exact minimum of the drawn slice (the other parameters held, the fit's bounds
    kept), for a default view (``half``: its half-widths) to hold it; None where a span
    is given, the fit fails or the minimum lies beyond ``REACH`` half-widths (the picture
    then says that the grid's lowest point is on its edge). And whether the minimum is a
    valley, not a point (the fit says the data do not determine the drawn parameters)."""
    from ..fit import fit
    if half is None:
        return None, False
    others = {n: v for n, v in center.items() if n not in names}
    bounds = {n: b for n, b in (result.bounds or {}).items() if n in names}
    try:
        r = fit(problem.model, x, y, sigma=sigma, loss=loss, delta=delta, optimizer="auto",
                p0={n: center[n] for n in names}, fixed=others or None, bounds=bounds or None,
                starts=1, steps=200, inputs=problem.model.input_names)
    except Exception:            # a view's courtesy: the landscape is drawn without it
        return None, False
    valley = r.reason == "failed" and r.message.startswith(UNDETERMINED)
    point = np.array([r.params[n] for n in names])
    if not (np.isfinite(point).all() and math.isfinite(r.loss)):
        return None, valley
    for j, n in enumerate(names):
        extent = float(np.ptp(keep[:, j])) if len(keep) else 0.0
        if abs(point[j] - center[n]) > REACH * max(half[j], extent):
            return None, valley
    return point, valley


#: how a fit's message begins where the data do not determine its parameters (``verdict``)
UNDETERMINED = ("underdetermined", "the Jacobian lost rank")


def _few(names, limit=3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
