"""Loss landscapes: contours over two parameters with the optimizer's path on them, or
the loss against one parameter with each step drawn as an arrow."""
from __future__ import annotations

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import LogLocator, MaxNLocator

from .. import landscape as core
from ..fit import prepare
from .common import PATH_COLOR, as_data, figure, new_figure, short

MAX_MARKERS = 300


def landscape(result, x=None, y=None, sigma=None, *, params, around=None, span=None,
              resolution: int | None = None, loss: str | None = None, delta: float = 1.0,
              path: bool = True, max_arrows: int = 25, title: str | None = None, ax=None):
    """The loss around a fit over one or two of its parameters, with its path; returns
    the Figure.

    ``params``: one or two names. The others are held at the fit's values, overridden by
    ``around`` (name -> value, which also moves the centre of the view). ``span``,
    ``resolution``: see ``gradfit.landscape.axis_range`` and ``loss_grid``. ``loss``: the
    fit's own unless given (``delta`` for huber). ``x`` may be a ``Dataset``.
    The path is the fit's trajectory projected on the chosen parameters; where other
    parameters moved during the fit, it was not on this slice all along (fix them in the
    fit, ``fixed=``, for an exact picture).
    """
    x, y, sigma = as_data(result, x, y, sigma)
    model = result.model_object
    problem = prepare(model, x, y, sigma, loss=loss or result.loss_name, delta=delta,
                      inputs=model.input_names)
    names = core.check_names(problem, [params] if isinstance(params, str) else params)
    center = core.full_center(problem, {**result.params, **dict(around or {})})
    idx = [model.param_names.index(n) for n in names]
    traj = np.asarray(result.trajectory)[:, idx] if path else None
    label = f"{result.method}: {result.steps} steps"
    traj_all = np.asarray(result.trajectory)
    moved = [n for k, n in enumerate(model.param_names)
             if n not in names and np.ptp(traj_all[:, k]) > 0]
    if moved and path:
        label += f" (projected: {_few(moved)} moved too)"
    if len(names) == 2:
        grid = core.loss_grid(problem, names, center, span, resolution or 81, path=traj)
        return draw_grid(grid, traj, ax=ax, path_label=label, title=title)
    slc = core.loss_slice(problem, names[0], center, span, resolution or 301,
                          path=None if traj is None else traj[:, 0])
    on = None if traj is None else core.loss_along(problem, names, traj, center)
    return draw_slice(slc, None if traj is None else traj[:, 0], on, ax=ax,
                      max_arrows=max_arrows, path_label=label, title=title)


def _few(names, limit=3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _others(center, names) -> str:
    others = {k: v for k, v in center.items() if k not in names}
    return f"\nothers held at {short(others)}" if others else ""


def draw_grid(grid: core.LossGrid, path=None, *, ax=None, title: str | None = None,
              path_label: str = "path", levels: int = 30):
    """Filled contours of a ``LossGrid`` (log-spaced when the loss spans a wide range),
    its lowest grid point, and ``path`` ``(k, 2)`` from start to end; returns the Figure."""
    fig, ax = new_figure(ax, (7, 5.6))
    loss = np.ma.masked_invalid(grid.loss)
    lo, hi = float(loss.min()), float(loss.max())
    hi = hi if hi > lo else lo + 1.0
    if lo > 0 and hi / lo > 30:
        lv, norm = np.geomspace(lo, hi, levels), LogNorm(lo, hi)
        ticks = LogLocator(subs=(1.0, 2.0, 5.0))
    else:
        lv, norm, ticks = MaxNLocator(levels).tick_values(lo, hi), None, MaxNLocator(8)
    filled = ax.contourf(grid.x, grid.y, loss, levels=lv, norm=norm, cmap="viridis",
                         extend="neither")
    ax.contour(grid.x, grid.y, loss, levels=lv[::3], colors="white", linewidths=0.5,
               alpha=0.55, norm=norm)
    fig.colorbar(filled, ax=ax, label=grid.loss_name + (" (log scale)" if norm else ""),
                 ticks=ticks, format="%.3g")
    j, i = np.unravel_index(int(np.argmin(loss.filled(np.inf))), loss.shape)
    (low,) = ax.plot(grid.x[i], grid.y[j], "X", color="white", mec="k", ms=11,
                     label="lowest on the grid")
    low.set_gid("grid-min")
    if path is not None:
        draw_path(ax, np.asarray(path, dtype=float).reshape(-1, 2), path_label)
    ax.set_xlim(grid.x[0], grid.x[-1])
    ax.set_ylim(grid.y[0], grid.y[-1])
    ax.set_xlabel(grid.names[0])
    ax.set_ylabel(grid.names[1])
    ax.set_title(title or f"{grid.loss_name} over ({grid.names[0]}, {grid.names[1]})"
                 + _others(grid.center, grid.names), fontsize=11)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.11), ncol=2,
              frameon=False)          # below the map, off the surface
    return fig


def draw_path(ax, path: np.ndarray, label: str = "path"):
    """A path of parameter points ``(k, 2)``: a line, its start and its end."""
    marker = "o" if len(path) <= MAX_MARKERS else None
    (ln,) = ax.plot(path[:, 0], path[:, 1], color=PATH_COLOR, lw=1.4, marker=marker, ms=2.8,
                    label=label)
    ln.set_gid("path")
    (s,) = ax.plot(*path[0], "o", color="tab:green", mec="k", ms=10, label="start", zorder=5)
    s.set_gid("start")
    (e,) = ax.plot(*path[-1], "*", color="gold", mec="k", ms=16, label="end", zorder=5)
    e.set_gid("end")


def draw_slice(slc: core.LossSlice, path=None, path_loss=None, *, ax=None,
               title: str | None = None, max_arrows: int = 25, path_label: str = "steps",
               color: str = PATH_COLOR):
    """A ``LossSlice`` as a curve, and the steps of ``path`` (values of the parameter,
    with their losses ``path_loss``) as arrows; the first ``max_arrows`` steps are
    drawn; returns the Figure."""
    fig, ax = new_figure(ax, (7, 4.6))
    (curve,) = ax.plot(slc.values, slc.loss, color="0.25", lw=2, label=slc.loss_name)
    curve.set_gid("slice")
    if path is not None:
        p, q = np.asarray(path, dtype=float), np.asarray(path_loss, dtype=float)
        shown = min(len(p) - 1, max_arrows)
        (pts,) = ax.plot(p[:shown + 1], q[:shown + 1], "o", color=color, ms=5, zorder=4,
                         label=path_label if shown == len(p) - 1
                         else f"{path_label} (first {shown} drawn)")
        pts.set_gid("path")
        for k in range(shown):
            ax.annotate("", xy=(p[k + 1], q[k + 1]), xytext=(p[k], q[k]),
                        arrowprops=dict(arrowstyle="->", color=color, lw=1.3,
                                        shrinkA=3, shrinkB=3))
        (s,) = ax.plot(p[0], q[0], "o", color="tab:green", mec="k", ms=10, label="start", zorder=5)
        s.set_gid("start")
        (e,) = ax.plot(p[-1], q[-1], "*", color="gold", mec="k", ms=15, label="end", zorder=5)
        e.set_gid("end")
    ax.set_xlim(slc.values[0], slc.values[-1])
    ax.set_xlabel(slc.name)
    ax.set_ylabel(slc.loss_name)
    ax.set_title(title or f"{slc.loss_name} against {slc.name}" + _others(slc.center, (slc.name,)),
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
