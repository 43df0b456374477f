"""Loss landscapes: contours over two parameters with the optimizer's path on them, or
the loss against one parameter with each step drawn as an arrow."""
from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import MaxNLocator

from .. import landscape as core
from ..fit import prepare
from .common import PATH_COLOR, as_data, figure, new_figure, short
from .landscape_view import LandscapeView, landscape_view

MAX_MARKERS = 300


def landscape(result, x=None, y=None, sigma=None, *, params, around=None, span=None,
              resolution: int | None = None, loss: str | None = None, delta: float = 1.0,
              path: bool = True, max_arrows: int = 25, title: str | None = None, ax=None):
    """The loss around a fit over one or two of its parameters, with its path; returns
    the Figure.

    ``params``: one or two names. The others are held at the fit's values, overridden by
    ``around`` (name -> value, which also moves the centre of the view). ``span``,
    ``resolution``: see ``gradfit.landscape.axis_range`` and ``loss_grid``; the default
    view follows each parameter's natural scale and holds the path and the slice's exact
    minimum where it can (``landscape_view``). ``loss``: the fit's own unless given
    (``delta`` for huber). ``x`` may be a ``Dataset``.
    The path is the fit's trajectory projected on the chosen parameters; where other
    parameters moved during the fit, or ``around`` holds one elsewhere than the fit had it,
    it was not on this slice (the legend says "projected"; fix them in the fit,
    ``fixed=``, for an exact picture). Bounds of the fit on a drawn parameter shade the
    side outside them; a diverged path ends in an X where the divergence showed.
    """
    view = landscape_view(result, x, y, sigma, params=params, around=around, span=span,
                          resolution=resolution, loss=loss, delta=delta, path=path)
    return draw_view(view, ax=ax, max_arrows=max_arrows, title=title)


def draw_view(view: LandscapeView, *, ax=None, max_arrows: int = 25, title: str | None = None):
    """Draw a ``LandscapeView`` (``landscape``'s picture); returns the Figure."""
    k, p = view.diverged_at, view.path
    finite = escape = None
    if p is not None:
        finite = p[:max(k, 1)] if k is not None else p
        escape = p[k] if k else None
    if isinstance(view.surface, core.LossGrid):
        return draw_grid(view.surface, finite, ax=ax, path_label=view.label, title=title,
                         bounds=view.bounds, escape=escape, loss_label=view.loss_label,
                         valley=view.valley)
    on = None if view.path_loss is None else view.path_loss[:len(finite)]
    return draw_slice(view.surface, None if finite is None else finite[:, 0], on, ax=ax,
                      max_arrows=max_arrows, path_label=view.label, title=title,
                      bounds=view.bounds, loss_label=view.loss_label,
                      escape=None if escape is None else (escape[0], view.path_loss[k]))


def _others(center, names) -> str:
    others = {k: v for k, v in center.items() if k not in names}
    return f"\nothers held at {short(others)}" if others else ""


def log_ticks(lo: float, hi: float, most: int = 8) -> list[float]:
    """Labelled ticks of a log colour bar over ``lo..hi`` (both > 0): 1, 2, 5 per decade
    over up to three decades, else every decade, or every n-th one so that at most
    ``most`` remain (matplotlib's ``LogLocator(subs=(1, 2, 5))`` labelled none beyond ten
    decades).

        >>> log_ticks(1.0, 100.0)
        [1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
        >>> log_ticks(1e-10, 1e10)
        [1e-09, 1e-06, 0.001, 1.0, 1000.0, 1000000.0, 1000000000.0]
    """
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if b - a <= 3:
        marks = [m * 10.0 ** e for e in range(a, b + 1) for m in (1, 2, 5)]
    else:
        stride = max(1, math.ceil((b - a) / most))
        marks = [10.0 ** e for e in range(a, b + 1) if e % stride == 0]
    return [float(f"{v:.12g}") for v in marks if lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9)]


def draw_grid(grid: core.LossGrid, path=None, *, ax=None, title: str | None = None,
              path_label: str = "path", levels: int = 30, bounds=None, escape=None,
              loss_label: str | None = None, valley: bool = False):
    """Filled contours of a ``LossGrid`` (log-spaced when the loss spans a wide range),
    its lowest grid point (said to be on the edge when it is: the minimum lies beyond),
    and ``path`` ``(k, 2)`` from start to end; ``escape``: where a diverged path went
    next (an X, see ``draw_path``); ``bounds``: name -> (low, high), the side outside
    shaded; ``valley``: the minimum is a valley (the data do not determine the two
    parameters), said instead of an edge's "the minimum lies beyond"; returns the Figure."""
    fig, ax = new_figure(ax, (7, 5.6))
    loss = np.ma.masked_invalid(grid.loss)
    name = loss_label or grid.loss_name
    lo, hi = float(loss.min()), float(loss.max())
    hi = hi if hi > lo else lo + 1.0
    if lo > 0 and hi / lo > 30:
        lv, norm = np.geomspace(lo, hi, levels), LogNorm(lo, hi)
        ticks = log_ticks(lo, hi)
    else:
        lv, norm, ticks = MaxNLocator(levels).tick_values(lo, hi), None, MaxNLocator(8)
    filled = ax.contourf(grid.x, grid.y, loss, levels=lv, norm=norm, cmap="viridis",
                         extend="neither")
    ax.contour(grid.x, grid.y, loss, levels=lv[::3], colors="white", linewidths=0.5,
               alpha=0.55, norm=norm)
    bar = fig.colorbar(filled, ax=ax, label=name + (" (log scale)" if norm else ""),
                       ticks=ticks, format="%.3g")
    bar.ax.set_gid("colorbar")
    j, i = np.unravel_index(int(np.argmin(loss.filled(np.inf))), loss.shape)
    edge = i in (0, len(grid.x) - 1) or j in (0, len(grid.y) - 1)
    outside = _outside(bounds, grid.names, (grid.x[i], grid.y[j]))
    (low,) = ax.plot(grid.x[i], grid.y[j], "X", color="white", mec="k", ms=11, zorder=6,
                     label="lowest on the grid"
                     + (": the minimum is a valley, the data do not determine "
                        f"{grid.names[0]} and {grid.names[1]}" if valley else
                        ": on its edge, the minimum lies beyond" if edge else "")
                     + (" (outside the bounds)" if outside else ""))
    low.set_gid("grid-min")
    _shade_bounds(ax, bounds, grid.names, (grid.x[0], grid.x[-1]), (grid.y[0], grid.y[-1]))
    if path is not None:
        draw_path(ax, np.asarray(path, dtype=float).reshape(-1, 2), path_label, escape)
    ax.set_xlim(grid.x[0], grid.x[-1])
    ax.set_ylim(grid.y[0], grid.y[-1])
    _unclip_inside(ax)
    ax.set_xlabel(grid.names[0])
    ax.set_ylabel(grid.names[1])
    ax.set_title(title or f"{name} over ({grid.names[0]}, {grid.names[1]})"
                 + _others(grid.center, grid.names), fontsize=11)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2,
              frameon=False)          # below the map, off the surface
    return fig


def _unclip_inside(ax, gids=("start", "end", "grid-min")) -> None:
    """A marker on the frame is drawn whole, not cut in half; one off the view stays
    clipped (a path's start far off in scale)."""
    (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
    for artist in ax.get_lines():
        if artist.get_gid() in gids:
            px, py = artist.get_xydata()[0]
            artist.set_clip_on(not (x0 <= px <= x1 and y0 <= py <= y1))


def _outside(bounds, names, point) -> bool:
    for n, v in zip(names, point):
        low, high = (bounds or {}).get(n, (None, None))
        if (low is not None and v < low) or (high is not None and v > high):
            return True
    return False


def _shade_bounds(ax, bounds, names, xr, yr=None) -> None:
    """Shade the side of each drawn parameter's bound outside it (gid ``bound-NAME``),
    with a line on the bound; one legend entry."""
    label = "outside the fit's bounds"
    for axis, (n, r) in enumerate(zip(names, (xr, yr))):
        low, high = (bounds or {}).get(n, (None, None))
        for edge, side in ((low, (r[0], low)), (high, (high, r[1]))):
            if edge is None or not math.isfinite(edge) or not side[0] < side[1]:
                continue
            span = ax.axvspan if axis == 0 else ax.axhspan
            patch = span(*side, facecolor=(1, 1, 1, 0.3), edgecolor="0.2", hatch="//",
                         lw=0, zorder=2, label=label)
            patch.set_gid(f"bound-{n}")
            line = ax.axvline if axis == 0 else ax.axhline
            line(edge, color="0.15", lw=1.2, ls="-", zorder=2)
            label = None


def draw_path(ax, path: np.ndarray, label: str = "path", escape=None):
    """A path of parameter points ``(k, 2)``: a line, its start and its end; ``escape``:
    where a diverged path went next (a dashed leg to an X, clipped by the view)."""
    marker = "o" if len(path) <= MAX_MARKERS else None
    (ln,) = ax.plot(path[:, 0], path[:, 1], color=PATH_COLOR, lw=1.4, marker=marker, ms=2.8,
                    label=label)
    ln.set_gid("path")
    (s,) = ax.plot(*path[0], "o", color="tab:green", mec="k", ms=10, label="start", zorder=5)
    s.set_gid("start")
    (e,) = ax.plot(*path[-1], "*", color="gold", mec="k", ms=16, zorder=5,
                   label="end" if escape is None else "last finite point")
    e.set_gid("end")
    if escape is not None and np.isfinite(escape).all():
        (x,) = ax.plot([path[-1][0], escape[0]], [path[-1][1], escape[1]], "--", color=PATH_COLOR,
                       lw=1.4, zorder=5)
        x.set_gid("escape-leg")
        (m,) = ax.plot(*escape, "X", color=PATH_COLOR, mec="k", ms=11, zorder=5,
                       label="where it diverged")
        m.set_gid("escape")


def draw_slice(slc: core.LossSlice, path=None, path_loss=None, *, ax=None,
               title: str | None = None, max_arrows: int = 25, path_label: str = "steps",
               color: str = PATH_COLOR, bounds=None, escape=None, loss_label: str | None = None):
    """A ``LossSlice`` as a curve, and the steps of ``path`` (values of the parameter,
    with their losses ``path_loss``) as arrows; the first ``max_arrows`` steps are
    drawn; ``escape``: ``(value, loss)`` where a diverged path went next (a dashed arrow
    to an X); ``bounds``: the side outside the parameter's bound shaded; a lowest point
    at an end of the view is said so. Returns the Figure."""
    fig, ax = new_figure(ax, (7, 4.6))
    name = loss_label or slc.loss_name
    (curve,) = ax.plot(slc.values, slc.loss, color="0.25", lw=2, label=name)
    curve.set_gid("slice")
    finite = np.isfinite(slc.loss)
    if finite.any():
        i = int(np.nanargmin(np.where(finite, slc.loss, np.nan)))
        if i in (0, len(slc.values) - 1):
            note = ax.text(0.02 if i == 0 else 0.98, 0.02, "lowest at the edge of the view:\n"
                           "the minimum lies beyond", transform=ax.transAxes, fontsize=8,
                           ha="left" if i == 0 else "right", va="bottom", color="0.2")
            note.set_gid("edge-note")
    _shade_bounds(ax, bounds, (slc.name,), (slc.values[0], slc.values[-1]))
    if path is not None:
        p, q = np.asarray(path, dtype=float), np.asarray(path_loss, dtype=float)
        shown = min(len(p) - 1, max_arrows)
        (pts,) = ax.plot(p[:shown + 1], q[:shown + 1], "o", color=color, ms=5, zorder=4,
                         label=path_label if shown == len(p) - 1
                         else f"{path_label} (first {shown} drawn)", scalex=False, scaley=False)
        pts.set_gid("path")
        # the y view holds the path where it is in the x view (not a start far off in scale)
        seen = (p >= slc.values[0]) & (p <= slc.values[-1]) & np.isfinite(q)
        ys = np.concatenate([slc.loss[finite], q[seen]])
        if ys.size:
            lo, hi = float(ys.min()), float(ys.max())
            margin = 0.05 * (hi - lo) or 0.05 * abs(hi) or 1.0
            ax.set_ylim(lo - margin, hi + margin)
        for k in range(shown):
            if not (seen[k] and seen[k + 1]):   # a step from or to off the view: no arrow
                continue
            ax.annotate("", xy=(p[k + 1], q[k + 1]), xytext=(p[k], q[k]),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.3,
                                        shrinkA=3, shrinkB=3))
        (s,) = ax.plot(p[0], q[0], "o", color="tab:green", mec="k", ms=10, label="start",
                       zorder=5, scalex=False, scaley=False)
        s.set_gid("start")
        (e,) = ax.plot(p[-1], q[-1], "*", color="gold", mec="k", ms=15, zorder=5,
                       label="end" if escape is None else "last finite point",
                       scalex=False, scaley=False)
        e.set_gid("end")
        if escape is not None and np.isfinite(escape).all():
            (leg,) = ax.plot([p[-1], escape[0]], [q[-1], escape[1]], "--", color=color,
                             lw=1.3, zorder=4, scalex=False, scaley=False)
            leg.set_gid("escape-leg")                 # clipped by the view where it leaves it
            (m,) = ax.plot(*escape, "X", color=color, mec="k", ms=11, zorder=5,
                           label="where it diverged", scalex=False, scaley=False)
            m.set_gid("escape")
    ax.set_xlim(slc.values[0], slc.values[-1])
    _unclip_inside(ax)
    ax.set_xlabel(slc.name)
    ax.set_ylabel(name)
    ax.set_title(title or f"{name} against {slc.name}" + _others(slc.center, (slc.name,)),
                 fontsize=11)
    ax.legend(fontsize=8, loc="best")
    ax.grid(True, alpha=0.3)
    return fig


def compare_losses(model, x, y, params, center, *, losses=("mae", "mse", "huber"),
                   sigma=None, span=None, resolution: int = 81, delta: float = 1.0, ax=None):
    """The landscape of the same model and data under several losses, side by side (one
    axes each; ``ax``: a sequence of axes to draw on); returns the Figure.

    ``model``: a spec, a ``Model`` or a ``FitResult`` (then ``center`` may be None: its
    parameters). ``params``: one or two names; ``center``: every parameter's value."""
    if hasattr(model, "model_object"):
        center = dict(model.params) if center is None else center
        model = model.model_object
    x, y, sigma = as_data(None, x, y, sigma)
    if ax is None:
        fig = figure((5.2 * len(losses), 4.6))
        axes = [fig.add_subplot(1, len(losses), k + 1) for k in range(len(losses))]
    else:
        axes = list(ax)
        fig = axes[0].figure
    names = [params] if isinstance(params, str) else list(params)
    for a, name in zip(axes, losses):
        problem = prepare(model, x, y, sigma, loss=name, delta=delta)
        if len(names) == 2:
            draw_grid(core.loss_grid(problem, names, center, span, resolution), ax=a)
        else:
            draw_slice(core.loss_slice(problem, names[0], center, span, resolution * 2), ax=a)
        a.set_title(f"{name}" + (f" (delta={delta:g})" if name == "huber" else ""), fontsize=11)
    return fig
