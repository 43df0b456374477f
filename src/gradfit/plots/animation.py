"""A fit, moving: the curve (or, for two inputs, the surface) step by step, written as a
GIF (Pillow) or an MP4 (ffmpeg) by matplotlib's animation writers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import animation
from matplotlib.figure import Figure

from ..errors import InputError
from .common import (FIT_COLOR, START_COLOR, _check_folder, as_data, data_points, data_window,
                     dense, diverged_at, drawn_label, model_values, relu_parts, thinned)
from .curves import MAX_PARTS, draw_parts

WRITERS = {".gif": "pillow", ".mp4": "ffmpeg"}
#: the most frames an animation holds: the GIF writer keeps every frame in memory (about
#: 1 MB each at the default size) and each takes a tenth of a second or more to draw
MAX_FRAMES = 500


def frame_steps(steps: int, max_frames: int = 100) -> list[int]:
    """The steps an animation shows: every one when there are few, else at most
    ``max_frames`` from 0 to ``steps``, denser at the start, where a fit moves most
    (step ``round(steps * t^2)`` for ``t`` evenly spaced in [0, 1]).

        >>> frame_steps(5)
        [0, 1, 2, 3, 4, 5]
        >>> s = frame_steps(10_000)
        >>> len(s) <= 100, s[:4], s[-1]
        (True, [0, 1, 4, 9], 10000)
    """
    check_frames(max_frames)
    if steps + 1 <= max_frames:
        return list(range(steps + 1))
    t = np.linspace(0.0, 1.0, max_frames)
    return np.unique(np.round(steps * t * t).astype(int)).tolist()


def check_frames(frames, what: str = "max_frames") -> int:
    """The number of frames: 2 to ``MAX_FRAMES``."""
    if not isinstance(frames, (int, np.integer)) or not 2 <= frames <= MAX_FRAMES:
        raise InputError(f"bad {what}", expected=f"a whole number of frames from 2 to "
                         f"{MAX_FRAMES} (each frame is held in memory, about 1 MB, until the "
                         "file is written)", given=frames)
    return int(frames)


def check_animation_path(path) -> tuple[Path, str]:
    """The output path and its writer: ``.gif`` (Pillow) or ``.mp4`` (ffmpeg, when
    installed); anything else is refused before a fit runs."""
    p = Path(path)
    writer = WRITERS.get(p.suffix.lower())
    if writer is None:
        raise InputError("cannot write an animation of that kind",
                         expected="a file ending in .gif or .mp4", given=str(path))
    if writer == "ffmpeg" and not animation.writers.is_available("ffmpeg"):
        raise InputError("cannot write .mp4: ffmpeg is not installed",
                         expected="ffmpeg on the PATH, or a .gif file (always available)",
                         given=str(path))
    _check_folder(p)
    return p, writer


def animate(result, path, x=None, y=None, sigma=None, *, max_frames: int = 100,
            fps: int = 12, dpi: int = 80) -> list[int]:
    """Write the fit as an animation to ``path`` (.gif or .mp4); returns the steps shown,
    one frame each (see ``frame_steps``; ``max_frames`` at most ``MAX_FRAMES``). ``x`` may
    be a ``Dataset``. Each frame is titled with the step it draws; a diverged run's last
    frame is the point where the divergence showed. Beyond ``MAX_DRAWN`` data points, that
    many are drawn, evenly chosen."""
    check_frames(max_frames)
    p, writer = check_animation_path(path)
    x, y, sigma = as_data(result, x, y, sigma)
    traj = np.asarray(result.trajectory, dtype=float)
    steps = frame_steps(len(traj) - 1, max_frames)
    # a plain canvas: the animation's idle redraws then cost nothing, and only the
    # writer renders (through Agg); the layout is computed once, then frozen
    fig = Figure(figsize=(7, 4.6), layout="constrained")
    ax = fig.add_subplot()
    if x.ndim == 1:
        update = _curve_frames(ax, result, traj, steps, x, y, sigma)
    elif x.shape[1] == 2:
        update = _surface_frames(fig, ax, result, traj, steps, x, y)
    else:
        raise InputError("cannot animate this fit", expected="a model of one or two inputs",
                         given=f"{x.shape[1]} inputs")
    history = np.asarray(result.history, dtype=float)
    k = diverged_at(result)

    def frame(i):
        off = update(i)
        s = steps[i]
        note = ": DIVERGED here" if s == k else ""
        note += " (the curve is beyond the view)" if off else ""
        ax.set_title(f"{result.model}   step {s} of {len(traj) - 1}{note}\n"
                     f"{result.loss_label} = {history[s]:.4g}", fontsize=11)

    frame(0)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    anim = animation.FuncAnimation(fig, frame, frames=len(steps), repeat=False,
                                   cache_frame_data=False)
    w = animation.PillowWriter(fps=fps) if writer == "pillow" else \
        animation.FFMpegWriter(fps=fps, bitrate=1800)
    try:
        anim.save(p, writer=w, dpi=dpi)
    except OSError as exc:
        raise InputError("cannot write the animation", expected="a writable path",
                         given=f"{p} ({exc.strerror or exc})") from None
    return steps


def _curve_frames(ax, result, traj, steps, x, y, sigma):
    model = result.model_object
    xs = dense(x)
    data_points(ax, x, y, sigma)
    curves = model_values(model, traj[steps], xs)              # every frame in one call
    ax.plot(xs, curves[0], "--", color=START_COLOR, lw=1.2, label="start")
    units = relu_parts(model, traj[steps], xs)
    parts = []
    if units is not None and 1 < units.shape[1] <= MAX_PARTS:
        parts = draw_parts(ax, xs, units[0])
    (line,) = ax.plot(xs, curves[0], color=FIT_COLOR, lw=2.2, label="current fit", zorder=4)
    # the view: the data (a height of their own where constant), and the fit's end when it
    # stays near them (a diverged run's last frame is off the view, and says so)
    lo, hi = data_window(y.min(), y.max())
    width = hi - lo
    end = model_values(model, result.params, xs)
    end = end[np.isfinite(end)]
    if end.size and end.min() > lo - 2 * width and end.max() < hi + 2 * width:
        lo, hi = min(lo, end.min()), max(hi, end.max())
    pad = 0.2 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    lo, hi = lo - pad, hi + pad
    ax.set_xlabel(model.input_names[0])
    ax.set_ylabel("y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))   # off the data

    def update(i) -> bool:
        line.set_ydata(curves[i])
        for k, ln in enumerate(parts):
            ln.set_ydata(units[i, k])
        c = curves[i]
        return not (np.isfinite(c).any() and np.nanmin(c) < hi and np.nanmax(c) > lo)
    return update


def _surface_frames(fig, ax, result, traj, steps, x, y, resolution: int = 80):
    model = result.model_object
    g1, g2 = dense(x[:, 0], resolution), dense(x[:, 1], resolution)
    X1, X2 = np.meshgrid(g1, g2)
    flat = np.stack([X1.ravel(), X2.ravel()], 1)
    Z = model_values(model, traj[steps], flat).reshape(len(steps), *X1.shape)
    end = model_values(model, result.params, flat)      # the fit's end: finite, as the data
    end = end[np.isfinite(end)]
    both = np.concatenate([y, end])
    lo, hi = data_window(both.min(), both.max())
    im = ax.imshow(Z[0], origin="lower", extent=(g1[0], g1[-1], g2[0], g2[-1]), aspect="auto",
                   cmap="viridis", vmin=lo, vmax=hi)
    keep = thinned(len(y))
    shown = slice(None) if keep is None else keep
    ax.scatter(x[shown, 0], x[shown, 1], c=y[shown], cmap="viridis", vmin=lo, vmax=hi,
               edgecolors="k", s=26,
               label=drawn_label("data", len(y) if keep is None else len(keep), len(y)))
    if keep is not None:
        ax.legend(fontsize=8, loc="upper right")
    fig.colorbar(im, ax=ax, label="fitted y (dots: data)")
    ax.set_xlabel(model.input_names[0])
    ax.set_ylabel(model.input_names[1])

    def update(i) -> bool:
        im.set_data(Z[i])
        return False
    return update
