"""Learning rates: a sweep (the same fit at several rates, side by side and labelled by
the rule in its caption) and fastai's learning-rate finder."""
from __future__ import annotations

import textwrap

import numpy as np

from ..learning_rates import LR_RULE, LRFind, Sweep
from .common import (LABEL_COLORS, as_data, data_points, data_window, dense, draw_loss,
                     figure, log_scale_ok, model_values, new_figure, plural)

#: each label's colour: ``plots.common``'s, and grey for a start already at the minimum
COLORS = {"at the minimum": "0.45", **LABEL_COLORS}


def caption(width: int = 150) -> str:
    """The labelling rule, wrapped, as the figure states it."""
    return "\n".join(textwrap.wrap("How runs are labelled: " + LR_RULE, width))


def lr_sweep(sweep: Sweep, x=None, y=None, *, finder: LRFind | None = None, ax=None):
    """A ``Sweep`` side by side: per rate, the fitted curve on the data (when ``x``, ``y``
    are given and the model has one input) above the loss over steps; each panel titled
    with its rate and label; the rule as caption; ``finder`` adds the finder's panel.
    With ``ax``: every run's loss curve on that one axes. Returns the Figure."""
    if ax is not None:
        return _one_axes(sweep, ax)
    runs = sweep.runs
    data = None
    if x is not None:
        data = as_data(None, x, y)
        if data[0].ndim != 1:
            data = None
    cols, rows = len(runs) + (finder is not None), 1 + (data is not None)
    fig = figure((max(7.0, 3.3 * cols), 3.3 * rows + 0.9))
    grid = fig.add_gridspec(rows, cols)
    for k, run in enumerate(runs):
        color = COLORS[run.label]
        top = fig.add_subplot(grid[0, k])
        if data is not None:
            _curve(top, run, *data)
            low = fig.add_subplot(grid[1, k])
        else:
            low = top
        _losses(low, run, color)
        top.set_title(f"lr = {run.lr:g}\n{run.label}", color=color, fontsize=12,
                      fontweight="bold")
    if finder is not None:
        lr_find(finder, ax=fig.add_subplot(grid[:, -1]))
    r0 = runs[0].result
    fig.suptitle(f"learning-rate sweep: {r0.model}, {r0.loss_label}, {r0.optimizer}, "
                 f"{plural(max(r.result.steps for r in runs), 'step')} at most", fontsize=12)
    fig.supxlabel(caption(40 * cols), fontsize=8.5)
    return fig


def _curve(ax, run, x, y, sigma):
    r = run.result
    xs = dense(x)
    data_points(ax, x, y, sigma, ms=3.5)
    f = model_values(r.model_object, r.params, xs)
    (ln,) = ax.plot(xs, f, color=COLORS[run.label], lw=2, label="after the run")
    ln.set_gid("fit")
    lo, hi = data_window(y.min(), y.max())
    spread = hi - lo
    lo, hi = lo - 0.3 * spread, hi + 0.3 * spread
    ax.set_ylim(lo, hi)
    if not (np.isfinite(f).any() and np.nanmin(f) < hi and np.nanmax(f) > lo):
        where = "last finite " if r.reason == "diverged" else ""
        note = ax.text(0.5, 0.96, f"the curve at the {where}end\nis beyond the view",
                       transform=ax.transAxes, ha="center", va="top", fontsize=8,
                       color=COLORS[run.label])
        note.set_gid("off-view")
    ax.set_xlabel(r.model_object.input_names[0], fontsize=9)
    ax.tick_params(labelsize=8)


def _losses(ax, run, color):
    draw_loss(ax, run.result, color, markers_up_to=30)
    if not np.isfinite(run.result.history).any():
        ax.text(0.5, 0.5, "no finite loss", transform=ax.transAxes, ha="center",
                color=color, fontsize=9)
    ax.set_xlabel("step", fontsize=9)
    ax.set_ylabel(f"{run.result.loss_label}", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.grid(True, which="both", alpha=0.3)


def _one_axes(sweep: Sweep, ax):
    for run in sweep.runs:
        h = np.asarray(run.result.history, dtype=float)
        (ln,) = ax.plot(np.arange(len(h)), h, color=COLORS[run.label], lw=1.6,
                        label=f"lr={run.lr:g}: {run.label}")
        ln.set_gid(f"loss-{run.lr:g}")
    if all(log_scale_ok(r.result.history) for r in sweep.runs):
        ax.set_yscale("log")
    ax.set_xlabel("step\n\n" + caption(90), fontsize=8)
    ax.set_ylabel(sweep.runs[0].result.loss_label)
    ax.set_title("learning-rate sweep")
    ax.legend(fontsize=8)
    return ax.figure


def lr_find(found: LRFind, *, ax=None):
    """The finder's loss against the learning rate (log scale), with the suggested rate
    (fastai's valley) marked, and fastai's other two suggestions; returns the Figure."""
    fig, ax = new_figure(ax, (6.5, 4.4))
    (ln,) = ax.plot(found.lrs, found.losses, color="0.2", lw=1.6)
    ln.set_gid("finder")
    ax.set_xscale("log")

    def mark(lr, style, color, text, size):
        at = int(np.argmin(np.abs(np.log(found.lrs) - np.log(lr))))
        (m,) = ax.plot(found.lrs[at], found.losses[at], style, color=color, ms=size, mec="k",
                       label=text, zorder=4)
        return m

    mark(found.steep, "^", "tab:orange", f"steepest fall: {found.steep:.2g}", 8)
    mark(found.minimum, "s", "0.7", f"lowest loss / 10: {found.minimum:.2g}", 7)
    m = mark(found.suggestion, "o", "tab:red", f"suggested (valley): {found.suggestion:.2g}", 11)
    m.set_gid("suggestion")
    ax.axvline(found.suggestion, color="tab:red", lw=1, ls="--")
    lo, hi = np.nanmin(found.losses), found.losses[0]
    ax.set_ylim(lo - 0.1 * (hi - lo), hi + 0.5 * (hi - lo))
    what = found.details.get("optimizer", ""), found.details.get("loss", "loss")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel(what[1])
    ax.set_title(f"learning-rate finder ({what[0]})\nsuggested lr = {found.suggestion:.2g}\n"
                 f"{len(found.lrs)} steps, stopped: {found.stopped}", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    return fig
