"""What every picture shares: a headless figure, saving, data points, colours.

Figures are ``matplotlib.figure.Figure`` objects on an Agg canvas, made without pyplot,
so nothing needs a display and no global state is touched.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..errors import InputError

LABEL_COLORS = {"good": "tab:green", "too slow": "tab:blue", "bouncing": "tab:orange",
                "diverged": "tab:red"}
FIT_COLOR, START_COLOR, DATA_COLOR, PATH_COLOR = "tab:red", "0.55", "tab:blue", "tab:red"
IMAGE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp")
#: data points drawn at most (evenly chosen beyond): a million markers are one opaque blob
#: and cost seconds a picture, a minute an animation
MAX_DRAWN = 20_000
#: the least height of a y view, relative to the data's size (float64 rounds at 1e-16): a
#: flat fit of constant data is a line, not its rounding zoomed in to a staircase
REL_VIEW = 1e-9


def new_figure(ax=None, size=(7.0, 4.5)):
    """``(figure, axes)``: the given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        return ax.figure, ax
    fig = figure(size)
    return fig, fig.add_subplot()


class ShownFigure(Figure):
    """A figure that a notebook shows when it is a cell's value: without pyplot, Jupyter
    draws a plain ``Figure`` only once something has imported ``matplotlib.pyplot`` (its
    inline backend registers the drawing); before that the cell said ``<Figure size ...>``."""

    def _repr_png_(self) -> bytes:
        import io
        buf = io.BytesIO()
        self.savefig(buf, format="png")
        return buf.getvalue()


def figure(size=(7.0, 4.5)) -> Figure:
    """A new figure on an Agg canvas (no pyplot; a notebook shows it: ``ShownFigure``)."""
    fig = ShownFigure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_image_path(path) -> Path:
    """An output path for a picture: a known image suffix and an existing folder."""
    p = Path(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError("cannot write a picture of that kind",
                         expected="a file ending in " + ", ".join(IMAGE_SUFFIXES), given=str(path))
    _check_folder(p)
    return p


def _check_folder(p: Path) -> None:
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise InputError("cannot write the picture: no such folder",
                         expected="an existing folder", given=str(folder))
    if p.is_dir():
        raise InputError("cannot write the picture: the path is a folder",
                         expected="a file name", given=str(p))


def save(fig: Figure, path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (the suffix chooses the format)."""
    p = check_image_path(path)
    try:
        fig.savefig(p, dpi=dpi)
    except OSError as exc:
        raise InputError("cannot write the picture", expected="a writable path",
                         given=f"{p} ({exc.strerror or exc})") from None
    return p


def as_data(result, x=None, y=None, sigma=None):
    """``(x, y, sigma)`` as float arrays: given, from a ``Dataset`` passed as ``x``, or
    from the result when it keeps its data; the lesson's ``(n, 1)`` column flattened."""
    if x is not None and hasattr(x, "x") and hasattr(x, "y"):      # a Dataset
        x, y, sigma = x.x, x.y, x.sigma if sigma is None else sigma
    if x is None:
        x, y = getattr(result, "x", None), getattr(result, "y", None)
        sigma = getattr(result, "sigma", None) if sigma is None else sigma
    if x is None or y is None:
        raise InputError("no data to draw", expected="the data the fit used: "
                         "plots.fit(result, x, y) or plots.fit(result, dataset)")
    x = np.asarray(x, dtype=float)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    y = np.asarray(y, dtype=float).reshape(-1)
    sigma = None if sigma is None else np.asarray(sigma, dtype=float).reshape(-1)
    if len(x) != len(y):
        raise InputError("x and y do not match", expected="as many x as y",
                         given=f"{len(x)} x, {len(y)} y")
    return x, y, sigma


def thinned(n: int, most: int = MAX_DRAWN) -> np.ndarray | None:
    """The indices of at most ``most`` of ``n`` points, evenly chosen (None: all of them).

        >>> thinned(10), thinned(10, 4).tolist()
        (None, [0, 3, 6, 9])
    """
    if n <= most:
        return None
    return np.unique(np.linspace(0, n - 1, most).round().astype(np.int64))


def drawn_label(label: str, shown: int, n: int) -> str:
    """``data (20,000 of 1,000,000 drawn, evenly chosen)`` when thinned, else ``label``."""
    return label if shown == n else f"{label} ({shown:,} of {n:,} drawn, evenly chosen)"


def data_points(ax, x, y, sigma=None, label="data", most: int = MAX_DRAWN, **kw):
    """The data as dots (with error bars when ``sigma`` is given); returns the artist.
    Beyond ``most`` points, that many are drawn, evenly chosen, and the label says so."""
    n = len(y)
    keep = thinned(n, most)
    if keep is not None:
        x, y = np.asarray(x)[keep], np.asarray(y)[keep]
        sigma = None if sigma is None else np.asarray(sigma)[keep]
        label = drawn_label(label, len(keep), n)
    many = len(y) > 2000            # small, light dots: the density shows, not a blob
    style = dict(color=DATA_COLOR, ms=1.5 if many else 4.5, zorder=3, label=label)
    if many:
        style["alpha"] = 0.5
    style.update(kw)
    if sigma is not None:
        return ax.errorbar(x, y, yerr=sigma, fmt="o", elinewidth=0.9, capsize=2, **style)[0]
    (line,) = ax.plot(x, y, "o", **style)
    line.set_gid("data")
    return line


def dense(x: np.ndarray, n: int = 400, pad: float = 0.03) -> np.ndarray:
    """``n`` points over the range of ``x``, a little wider."""
    lo, hi = float(np.min(x)), float(np.max(x))
    width = (hi - lo) or 1.0
    return np.linspace(lo - pad * width, hi + pad * width, n)


def data_window(lo: float, hi: float) -> tuple[float, float]:
    """The y range ``lo..hi`` of data, given a height where it has none to speak of:
    constant data (``lo == hi``) get a fifth of their size (1 when all zero), data varying
    by less than ``REL_VIEW`` of their size get that much. A fitted curve can then widen
    the view but not shrink it into its rounding (a flat fit drawn as a staircase).

        >>> data_window(5.0, 5.0), data_window(0.0, 2.0), data_window(0.0, 0.0)
        ((4.5, 5.5), (0.0, 2.0), (-0.5, 0.5))
    """
    lo, hi = float(lo), float(hi)
    size = max(abs(lo), abs(hi))
    least = REL_VIEW * size if hi > lo else (0.2 * size if size > 0 else 1.0)
    if hi - lo >= least:
        return lo, hi
    mid = lo + (hi - lo) / 2
    return mid - least / 2, mid + least / 2


def plural(n: int, word: str) -> str:
    """``1 step``, ``2 steps``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def loss_label(name: str, sigma) -> str:
    """The loss by what it is, as the fit's report names it: ``chi2/N`` for mse with
    ``sigma`` given, ``mae (weighted by 1/sigma)``... (``report.loss_label``)."""
    from types import SimpleNamespace
    from ..report import loss_label as label
    return label(SimpleNamespace(loss_name=name, sigma=sigma))


def diverged_at(result) -> int | None:
    """The step at which a diverged run's divergence showed (its history's last entry), or
    None for a run that did not diverge."""
    if getattr(result, "reason", None) != "diverged":
        return None
    return len(result.history) - 1


def draw_loss(ax, result, color, markers_up_to: int = 40, lw: float = 1.6):
    """A run's loss at each step (gid ``loss``); a diverged run's last point, the loss that
    showed the divergence, as an X (gid ``diverged``), at the top of the axes when it is
    inf or NaN, with "diverged at step k". Returns whether the y axis is logarithmic."""
    from matplotlib.ticker import MaxNLocator
    h = np.asarray(result.history, dtype=float)
    k = diverged_at(result)
    body = h if k is None or np.isfinite(h[-1]) else h[:-1]
    (ln,) = ax.plot(np.arange(len(body)), body, color=color, lw=lw,
                    marker="o" if len(h) <= markers_up_to else None, ms=3)
    ln.set_gid("loss")
    log = log_axis(ax, h)
    if k is not None:
        if np.isfinite(h[-1]):
            (m,) = ax.plot(k, h[-1], "X", color=color, mec="k", ms=10, zorder=5, clip_on=False,
                           label=f"diverged at step {k}")
            at, text = (k, h[-1]), f"diverged at step {k}"
            where = "data"
        else:
            (m,) = ax.plot(k, 1.0, "X", color=color, mec="k", ms=10, zorder=5, clip_on=False,
                           transform=ax.get_xaxis_transform(),
                           label=f"diverged at step {k}: loss {h[-1]:g}")
            at, text = (k, 1.0), f"diverged at step {k}: loss {h[-1]:g}"
            where = ax.get_xaxis_transform()
        m.set_gid("diverged")
        # below and left of the X, clear of it (its corner had covered the text's end)
        ax.annotate(text, at, xycoords=where, textcoords="offset points", xytext=(-9, -9),
                    ha="right", va="top", fontsize=8, color=color, annotation_clip=False)
        if len(h) == 1:
            ax.set_xlim(-0.5, 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))
    return log


def short(values: dict, limit: int = 4, digits: int = 3) -> str:
    """``a=1.23, b=4.56`` (the first ``limit`` names, then ``...``)."""
    items = [f"{k}={v:.{digits}g}" for k, v in list(values.items())[:limit]]
    return ", ".join(items) + (", ..." if len(values) > limit else "")


def log_scale_ok(values) -> bool:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool((v > 0).all())


def model_values(model, theta, x) -> np.ndarray:
    """``model(x, theta)`` as numpy; ``theta`` a dict by name, or an array ``(..., P)``."""
    import torch
    if isinstance(theta, dict):
        theta = [theta[n] for n in model.param_names]
    t = torch.tensor(np.asarray(theta, dtype=np.float64))
    with torch.no_grad():
        return model(torch.tensor(np.asarray(x, dtype=np.float64)), t).numpy()


def relu_parts(model, theta, x) -> np.ndarray | None:
    """Each ReLU's contribution ``(K, n)`` for a one-input ReLU sum, else None."""
    import torch
    if not hasattr(model, "parts") or len(model.input_names) != 1:
        return None
    if isinstance(theta, dict):
        theta = [theta[n] for n in model.param_names]
    t = torch.tensor(np.asarray(theta, dtype=np.float64))
    with torch.no_grad():
        return model.parts(torch.tensor(np.asarray(x, dtype=np.float64)), t).numpy()


def log_axis(ax, values, which: str = "y") -> bool:
    """A log scale with plain tick labels (0.5, 2, 10) when ``values`` are all positive;
    minor ticks are labelled too when the range is under two decades. Returns whether
    the axis is logarithmic."""
    from matplotlib.ticker import FuncFormatter, NullFormatter
    if not log_scale_ok(values):
        return False
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    axis.set_major_formatter(plain)
    axis.set_minor_formatter(plain if v.max() / v.min() < 100 else NullFormatter())
    return True
