"""The playground inside a notebook: ``gradfit.playground(x, y)`` shows the page inline.

How: the first call starts the playground's server in a background thread of the kernel,
on ``127.0.0.1`` and a free port; each call hands its data to that server (``shared.py``)
and returns a ``Playground`` whose ``_repr_html_`` is an ``<iframe>`` of the page opened
on that data. JupyterLab and the classic notebook both show it. The browser must run on the
kernel's machine (the iframe points at 127.0.0.1), as with a notebook on one's own computer.
"""
from __future__ import annotations

import html
import socket
import threading
import time

import numpy as np

from ..config import FitConfig
from ..errors import InputError

_server: dict = {}
_lock = threading.Lock()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server() -> tuple:
    """``(app, base_url)`` of this process's playground server, started on first use."""
    with _lock:
        if "url" not in _server:
            import uvicorn

            from .app import create_app
            app = create_app()
            port = _free_port()
            from .header_deadline import HeaderDeadline
            srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                                log_level="warning", http=HeaderDeadline))
            thread = threading.Thread(target=srv.run, name="gradfit-playground", daemon=True)
            thread.start()
            deadline = time.time() + 20
            while not srv.started:
                if time.time() > deadline or not thread.is_alive():
                    raise RuntimeError("the playground's server did not start")
                time.sleep(0.02)
            _server.update(app=app, url=f"http://127.0.0.1:{port}/", server=srv)
        return _server["app"], _server["url"]


class Playground:
    """The playground on some data: ``url`` opens it; a notebook shows it inline."""

    def __init__(self, url: str, height: int):
        self.url, self.height = url, height

    def _repr_html_(self) -> str:
        return (f'<iframe class="gradfit-playground" src="{html.escape(self.url)}" width="100%" '
                f'height="{self.height}" style="border:1px solid #ddd"></iframe>')

    def __repr__(self) -> str:
        return f"Playground({self.url})"


def _columns(frame, x, y, sigma):
    names = [str(c) for c in frame.columns]
    xs = [x] if isinstance(x, str) else list(x) if x is not None else None
    if xs is None:
        xs = [c for c in names if c not in (y, sigma)][:1]
    if y is None:
        rest = [c for c in names if c not in xs and c != sigma]
        if not rest:
            raise InputError("no column left for y", expected="a y column besides x and sigma")
        y = rest[-1]
    for c in xs + [y] + ([sigma] if sigma else []):
        if c not in names:
            raise InputError(f"no column named {c!r}", expected="one of " + ", ".join(names[:20]))
    col = lambda c: np.asarray(frame[c], dtype=float)   # noqa: E731
    xv = col(xs[0]) if len(xs) == 1 else np.stack([col(c) for c in xs], 1)
    return xv, col(y), col(sigma) if sigma else None, tuple(xs), y


def playground(data, y=None, *, x=None, sigma=None, model: str | None = None, p0=None,
               inputs=None, loss: str = "mae", height: int = 760, name: str = "your data") -> Playground:
    """Show the playground on your data, inline in Jupyter.

    ``playground(x, y)`` with arrays (``x`` shaped ``(n,)`` or ``(n, 2)``; ``sigma``
    optional), or ``playground(df, x="t", y="signal", sigma="err")`` with a DataFrame (or
    anything with ``columns`` and ``[name]``): the columns' names are the model's inputs;
    y defaults to the last column that is neither x nor sigma. ``model``: the model to start
    with (default: a line in the first input), ``p0`` its starting values by name.
    ``inputs``: names for array inputs.
    """
    if hasattr(data, "columns"):
        xv, yv, sv, names, y_name = _columns(data, x, y if isinstance(y, str) else None, sigma)
    else:
        if y is None:
            raise InputError("no y", expected="playground(x, y) or playground(dataframe)")
        xv, yv = np.asarray(data, dtype=float), np.asarray(y, dtype=float).reshape(-1)
        sv = None if sigma is None else np.asarray(sigma, dtype=float).reshape(-1)
        d = 1 if xv.ndim == 1 else xv.shape[1]
        names = tuple(inputs) if inputs else (("x",) if d == 1 else tuple(f"x{i + 1}" for i in range(d)))
        y_name = "y"
    if xv.ndim == 2 and xv.shape[1] == 1:
        xv = xv[:, 0]
    if xv.ndim == 2 and xv.shape[1] > 2:
        raise InputError("the playground plots one or two inputs", expected="x shaped (n,) or (n, 2)",
                         given=f"{xv.shape[1]} columns")
    points = {"x": (xv if xv.ndim == 1 else xv[:, 0]).tolist(), "y": yv.tolist(),
              "inputs": list(names)}
    if xv.ndim == 2:
        points["x2"] = xv[:, 1].tolist()
    if sv is not None:
        points["sigma"] = sv.tolist()
    from .shared import share
    app, base = server()
    key = share(app, points, name)
    app.state.shared[key]["yName"] = y_name
    if model is None:
        model = " + ".join(f"{p}*{n}" for p, n in zip("ab", names)) + " + c"
    config = FitConfig(model=model, loss=loss, optimizer="gd", lr=0.01, steps=2000, p0=p0 or {})
    return Playground(f"{base}#{config.to_query()}&data=shared:{key}", height)


__all__ = ["playground", "Playground", "server"]
