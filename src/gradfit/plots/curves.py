"""The picture of a fit: the data, the starting and the fitted curve, the residuals and
the loss over steps. Two inputs: a heat map of the fitted surface with the data on it."""
from __future__ import annotations

import numpy as np

from .common import (DATA_COLOR, FIT_COLOR, REL_VIEW, START_COLOR, as_data, data_points,
                     data_window, dense, diverged_at, draw_loss, drawn_label, figure,
                     model_values, new_figure, plural, relu_parts, thinned)

MAX_PARTS = 30          # ReLU units drawn one by one up to this many


def fit(result, x=None, y=None, sigma=None, *, ax=None, band: bool = True,
        parts: bool = True):
    """Draw a ``FitResult`` with its data; returns the Figure.

    Without ``ax``: three panels (the fit, the residuals below it, the loss over steps).
    With ``ax``: the fit alone, on that axes. ``x`` may be a ``Dataset`` (then no ``y``).
    ``band``: the 95% confidence band when the fit converged and has a covariance (at a
    point that is no optimum it means little); ``parts``: each ReLU's contribution as a
    thin line for ``relu:K`` models. Beyond ``MAX_DRAWN`` points, that many are drawn.
    """
    x, y, sigma = as_data(result, x, y, sigma)
    if ax is not None:
        _main(ax, result, x, y, sigma, band, parts)
        return ax.figure
    fig = figure((11.5, 6.2))
    grid = fig.add_gridspec(2, 2, height_ratios=(3, 1.1), width_ratios=(1.6, 1))
    main = fig.add_subplot(grid[0, 0])
    one_input = x.ndim == 1
    low = fig.add_subplot(grid[1, 0], sharex=main if one_input else None)
    _main(main, result, x, y, sigma, band, parts)
    if one_input:
        main.tick_params(labelbottom=False)
        main.set_xlabel("")
    residuals(result, x, y, sigma, ax=low)
    loss_curve(result, ax=fig.add_subplot(grid[:, 1]))
    fig.suptitle(f"{result.method}, {plural(result.steps, 'step')}: "
                 f"{_stopped(result)}", fontsize=10)
    return fig


def _stopped(result) -> str:
    k = diverged_at(result)
    if k is not None:
        return (f"DIVERGED at step {k} (the curve: the last finite point, step {k - 1})"
                if k else "DIVERGED at the start (no finite loss)")
    text = {"ftol": "converged (loss stopped changing)", "gtol": "converged (gradient vanished)",
            "xtol": "converged (parameters stopped changing)", "max_steps": "reached the step limit"}
    return text.get(result.reason, result.reason)


def _main(ax, result, x, y, sigma, band, parts):
    model = result.model_object
    d = 1 if x.ndim == 1 else x.shape[1]
    if d == 1:
        _curve(ax, result, x, y, sigma, band, parts)
    elif d == 2:
        surface(result, x, y, ax=ax)
    else:
        _observed(ax, result, x, y, sigma)
    ax.set_title(f"{result.model}\n{result.loss_label} = {result.loss:.4g}", fontsize=11)
    return model


def _curve(ax, result, x, y, sigma, band, parts):
    model = result.model_object
    xs = dense(x)
    data_points(ax, x, y, sigma)
    if result.start:
        (s,) = ax.plot(xs, model_values(model, result.start, xs), "--", color=START_COLOR,
                       lw=1.3, label="start")
        s.set_gid("start")
    if band and result.covariance is not None and result.converged:
        try:
            lo, hi = result.confidence_band(xs, 0.95)
            ax.fill_between(xs, lo, hi, color=FIT_COLOR, alpha=0.15, lw=0, label="95% band")
        except Exception:        # a band is a courtesy; the fit is drawn without one
            pass
    units = relu_parts(model, result.params, xs) if parts else None
    label = "fit"
    if units is not None and 1 < len(units) <= MAX_PARTS:
        draw_parts(ax, xs, units)
        c = result.params.get("c", 0.0)
        label = f"fit (the {len(units)} ReLUs added" + (f" + c, c={c:.3g})" if c else ")")
    (f,) = ax.plot(xs, model_values(model, result.params, xs), color=FIT_COLOR, lw=2.2,
                   label=label, zorder=4)
    f.set_gid("fit")
    _keep_data_in_view(ax, y, sigma)
    ax.set_xlabel(model.input_names[0])
    ax.set_ylabel("y")
    ax.legend(fontsize=8, loc="best")


def _keep_data_in_view(ax, y, sigma):
    """The view holds the data with a margin, and the fitted curve when it stays near
    them; a far-off start or a diverged fit is clipped (and said so) rather than
    squashing the data into a line."""
    spread = np.asarray(y) if sigma is None else np.concatenate([y - sigma, y + sigma])
    lo, hi = data_window(spread.min(), spread.max())     # constant data: no zoom on rounding
    width = hi - lo
    fit = next(ln for ln in ax.get_lines() if ln.get_gid() == "fit")
    f = np.asarray(fit.get_ydata(), float)
    f = f[np.isfinite(f)]
    if f.size and f.min() > lo - 2 * width and f.max() < hi + 2 * width:
        lo, hi = min(lo, f.min()), max(hi, f.max())
    pad = 0.15 * (hi - lo)
    ax.set_ylim(lo - pad, hi + pad)
    # said of the view as drawn: matplotlib widens one too narrow to draw (data of 1e-323),
    # where the fit is in view after all
    low, high = sorted(ax.get_ylim())
    if f.size and (f.min() < low or f.max() > high):
        fit.set_label(fit.get_label() + " (beyond the view: see the residuals)")


def draw_parts(ax, xs, units, labels=None, label: str = "each ReLU"):
    """Each ReLU unit's contribution ``max(0, m*x + b)`` as a thin line (gid ``relu-i``);
    up to five are named in the legend (``labels``), more share one entry."""
    colors = _unit_colors(len(units))
    lines = []
    for i, (u, c) in enumerate(zip(units, colors), 1):
        name = (labels[i - 1] if labels else f"ReLU {i}") if len(units) <= 5 else \
            (label if i == 1 else None)
        (ln,) = ax.plot(xs, u, lw=1.3, alpha=0.9, color=c, label=name, ls=(0, (4, 1.5)),
                        zorder=5)
        ln.set_gid(f"relu-{i}")
        lines.append(ln)
    return lines


UNIT_COLORS = ("tab:purple", "tab:green", "tab:orange", "tab:brown", "tab:pink", "tab:olive",
               "tab:cyan", "tab:gray")


def _unit_colors(k):
    if k <= len(UNIT_COLORS):
        return list(UNIT_COLORS[:k])
    from matplotlib import colormaps
    cmap = colormaps["viridis"]
    return [cmap(0.1 + 0.8 * i / max(1, k - 1)) for i in range(k)]


def surface(result, x, y, *, ax=None, resolution: int = 120):
    """A two-input fit: the fitted surface as a heat map with contours, the data on top,
    coloured by their ``y`` on the same scale; returns the Figure."""
    fig, ax = new_figure(ax, (7, 5.5))
    model = result.model_object
    (g1, g2) = (dense(x[:, k], resolution) for k in range(2))
    X1, X2 = np.meshgrid(g1, g2)
    Z = model_values(model, result.params, np.stack([X1.ravel(), X2.ravel()], 1)).reshape(X1.shape)
    lo, hi = min(Z.min(), y.min()), max(Z.max(), y.max())
    mesh = ax.pcolormesh(X1, X2, Z, shading="auto", cmap="viridis", vmin=lo, vmax=hi)
    mesh.set_gid("surface")
    ax.contour(X1, X2, Z, levels=10, colors="white", linewidths=0.6, alpha=0.7)
    keep = thinned(len(y))
    shown = slice(None) if keep is None else keep
    pts = ax.scatter(x[shown, 0], x[shown, 1], c=y[shown], cmap="viridis", vmin=lo, vmax=hi,
                     edgecolors="k", s=28, zorder=3,
                     label=drawn_label("data", len(y) if keep is None else len(keep), len(y)))
    if keep is not None:
        ax.legend(fontsize=8, loc="upper right")
    pts.set_gid("data")
    fig.colorbar(mesh, ax=ax, label="fitted y (dots: data)")
    ax.set_xlabel(model.input_names[0])
    ax.set_ylabel(model.input_names[1])
    return fig


def _observed(ax, result, x, y, sigma):
    pred = model_values(result.model_object, result.params, x)
    lo, hi = min(y.min(), pred.min()), max(y.max(), pred.max())
    n, keep = len(y), thinned(len(y))
    if keep is not None:
        y, pred, sigma = y[keep], pred[keep], None if sigma is None else sigma[keep]
    ax.errorbar(y, pred, xerr=sigma, fmt="o", color=DATA_COLOR, ms=4,
                label=drawn_label("data", len(y), n))
    ax.plot([lo, hi], [lo, hi], color=FIT_COLOR, lw=1.2, label="perfect fit")
    ax.set_xlabel("observed y")
    ax.set_ylabel("fitted y")
    ax.legend(fontsize=8)


def residuals(result, x=None, y=None, sigma=None, *, ax=None):
    """Residuals ``data - fit`` against ``x`` (against the fitted value for several
    inputs); returns the Figure."""
    x, y, sigma = as_data(result, x, y, sigma)
    fig, ax = new_figure(ax, (7, 2.8))
    pred = model_values(result.model_object, result.params, x)
    at = x if x.ndim == 1 else pred
    ax.axhline(0, color=FIT_COLOR, lw=1)
    r = y - pred
    line = data_points(ax, at, r, sigma, label="residual")
    line.set_gid("residuals")
    least = REL_VIEW * float(np.max(np.abs(y))) if len(y) else 0.0
    top = float(np.nanmax(np.abs(r if sigma is None else np.abs(r) + sigma))) if len(r) else 0.0
    if least > 0 and top < least:      # an exact fit: residuals of rounding, drawn as zero
        ax.set_ylim(-least, least)
    ax.set_xlabel(result.model_object.input_names[0] if x.ndim == 1 else "fitted y")
    ax.set_ylabel("data − fit")
    return fig


def loss_curve(result, *, ax=None):
    """The loss at the start of each step and at the end (log scale when positive); a
    diverged run ends on the loss that showed the divergence (an X, see ``draw_loss``)."""
    fig, ax = new_figure(ax, (6, 4))
    h = np.asarray(result.history, dtype=float)
    log = draw_loss(ax, result, "tab:purple")
    ax.set_xlabel("step")
    ax.set_ylabel(result.loss_label + (" (log scale)" if log else ""))
    k = diverged_at(result)
    end = f"{h[-1]:.4g}" if k is None else f"{h[-1]:.4g}\nDIVERGED at step {k}"
    ax.set_title(f"loss over steps: {h[0]:.4g} → {end}", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    return fig
