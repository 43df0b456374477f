"""The playground inside a notebook: ``gradfit.playground(x, y)`` shows the page inline.

How: the first call starts the playground's server in a background thread of the kernel,
on ``127.0.0.1`` and a free port; each call hands its data to that server (``shared.py``)
and returns a ``Playground`` whose ``_repr_html_`` is an ``<iframe>`` of the page opened
on that data. JupyterLab and the classic notebook both show it. The browser must run on the
kernel's machine (the iframe points at 127.0.0.1), as with a notebook on one's own computer.

Everything is checked in the call, before the server starts, with ``gradfit.fit``'s own
checks and messages (``fit_prepare.prepare``): bad data, a model that does not parse, a ``p0`` name
the model lacks raise ``InputError`` in the cell, never an error inside the page.
``stop()`` stops the server (its pages go blank); the next call starts a new one.
"""
from __future__ import annotations

import html
import logging
import math
import numbers
import socket
import threading
import time
from collections.abc import Mapping

import numpy as np

from ..config import FitConfig
from ..errors import InputError
from .notebook_data import _from_frame, _input_names, _points, default_model
from .schemas import MAX_EXPR_LEN, MAX_POINTS

_server: dict = {}
_lock = threading.Lock()
START_TRIES = 3                  # ports tried before a start is given up
START_SECONDS = 20.0             # the longest wait for one start
MIN_HEIGHT, MAX_HEIGHT = 100, 5000      # pixels of the inline frame


# ------------------------------------------------------------------ the server

def _bind(port: int = 0) -> socket.socket:
    """A socket bound to ``127.0.0.1:port`` (0: a free port), handed to uvicorn as is, so
    no other process can take the port between its choice and the server's start."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as e:
        sock.close()
        raise OSError(e.errno, f"cannot listen on 127.0.0.1:{port}: {e.strerror}") from None
    return sock


class _Errors(logging.Handler):
    """uvicorn's error lines while a server starts (it logs why, then ends its thread)."""

    def __init__(self):
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _start() -> dict:
    """Start a server on a fresh port; RuntimeError saying why when it does not start."""
    import uvicorn

    from .app import create_app
    from .header_deadline import HeaderDeadline
    sock = _bind()
    port = sock.getsockname()[1]
    try:
        app = create_app()
        srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                            log_level="warning", http=HeaderDeadline))
    except BaseException:
        sock.close()
        raise
    failure: list[BaseException] = []

    def serve():
        try:
            srv.run(sockets=[sock])
        except BaseException as e:          # noqa: BLE001 (uvicorn ends a failed start with SystemExit)
            failure.append(e)

    errors, log = _Errors(), logging.getLogger("uvicorn.error")
    log.addHandler(errors)
    try:
        thread = threading.Thread(target=serve, name="gradfit-playground", daemon=True)
        thread.start()
        deadline = time.monotonic() + START_SECONDS
        while not srv.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                srv.should_exit = True
                thread.join(2)
                sock.close()
                app.state.pool.shutdown()
                # the exception, else the last line of what uvicorn logged (a traceback, or
                # the bind's error before its SystemExit)
                why = "; ".join(f"{type(e).__name__}: {e}" for e in failure
                                if not isinstance(e, SystemExit)) \
                    or "; ".join(line.strip().splitlines()[-1] for line in errors.lines if line.strip()) \
                    or (f"no answer within {START_SECONDS:g} s" if thread.is_alive() else "it ended")
                raise RuntimeError(f"port {port}: {why}")
            time.sleep(0.02)
    finally:
        log.removeHandler(errors)
    return dict(app=app, url=f"http://127.0.0.1:{port}/", server=srv, thread=thread, socket=sock)


def _alive() -> bool:
    return bool(_server) and _server["thread"].is_alive() and not _server["server"].should_exit


def server() -> tuple:
    """``(app, base_url)`` of this process's playground server, started on first use, and
    started anew (on a new port) when its thread has died. A start that fails is tried
    again on another port, ``START_TRIES`` times; then RuntimeError says why each failed
    (e.g. ``[Errno 98] Address already in use``)."""
    with _lock:
        if not _alive():
            _stop_locked()
            reasons = []
            for _ in range(START_TRIES):
                try:
                    _server.update(_start())
                    break
                except OSError as e:                # the bind itself
                    reasons.append(str(e))
                except RuntimeError as e:
                    reasons.append(str(e))
            else:
                raise RuntimeError(f"the playground's server did not start ({START_TRIES} "
                                   f"tries): " + " | ".join(reasons))
        return _server["app"], _server["url"]


def _stop_locked() -> bool:
    if not _server:
        return False
    srv, thread = _server["server"], _server["thread"]
    running = thread.is_alive()
    srv.should_exit = True
    thread.join(5)
    if thread.is_alive():               # connections that do not close (a run's WebSocket)
        srv.force_exit = True
        thread.join(5)
    _server["socket"].close()
    _server["app"].state.pool.shutdown()
    _server.clear()
    return running


def stop() -> bool:
    """Stop the notebook's playground server: its port closes and the pages it served go
    blank; the next ``playground(...)`` starts a new one. True if one was running::

        gradfit.playground.stop()
    """
    with _lock:
        return _stop_locked()


# ------------------------------------------------------------------ the cell's output

def _check_height(height) -> int:
    if isinstance(height, bool) or not isinstance(height, numbers.Integral) \
            or not MIN_HEIGHT <= height <= MAX_HEIGHT:
        raise InputError("bad height", expected=f"a whole number of pixels from {MIN_HEIGHT} to "
                         f"{MAX_HEIGHT}", given=height)
    return int(height)


class Playground:
    """The playground on some data: ``url`` opens it; a notebook shows it inline, with a
    line under the frame saying to re-run the cell when the frame is blank (a reopened
    notebook, a restarted kernel: the server lives in the kernel)."""

    HINT = ("Blank frame? Re-run this cell: the playground is served by this notebook's "
            "kernel ({where}) and ends with it.")

    def __init__(self, url: str, height: int = 760):
        self.url, self.height = url, _check_height(height)

    def _repr_html_(self) -> str:
        esc = lambda v: html.escape(str(v), quote=True)      # noqa: E731
        where = self.url.split("#")[0].removeprefix("http://").rstrip("/")
        hint = esc(self.HINT.format(where=where))
        return (f'<iframe class="gradfit-playground" src="{esc(self.url)}" width="100%" '
                f'height="{esc(self.height)}" allow="clipboard-write" '
                f'style="border:1px solid #ddd">{hint}</iframe>'
                f'<div class="gradfit-playground-hint" style="font-size:smaller;color:#777">'
                f'{hint}</div>')

    def __repr__(self) -> str:
        return f"Playground({self.url})"

    def _repr_pretty_(self, p, cycle) -> None:      # a notebook's text/plain
        p.text(f"{self!r}\n(a blank page? re-run the cell: its server lives in the kernel)")


def playground(data, y=None, *, x=None, sigma=None, model: str | None = None, p0=None,
               inputs=None, loss: str = "mae", height: int = 760, name: str = "your data") -> Playground:
    """Show the playground on your data, inline in Jupyter.

    ``playground(x, y)`` with arrays (``x`` shaped ``(n,)`` or ``(n, 2)``; ``sigma``
    optional: one number, or one per point), or ``playground(df, x="t", y="signal",
    sigma="err")`` with a DataFrame (or anything with ``columns`` and ``[name]``): the
    columns' names are the model's inputs, as a Series' name is; x defaults to the first
    column, y to the last that is neither x nor sigma; with neither y nor sigma given, a
    column named like an uncertainty (err, sigma, dy, ...; not an x column) is sigma, as
    the page and the command line take it. ``inputs``: the input names (of
    arrays, or instead of the columns'). ``model``: the model to start with (default: a line
    in the inputs, its parameters named apart from them), ``p0`` its starting values by name.
    At most 100,000 points (the page's limit). Bad data, a model that does not parse or an
    unknown ``p0`` name raise ``InputError`` here, with ``gradfit.fit``'s checks.

    The server runs in the kernel until it ends; ``gradfit.playground.stop()`` stops it.
    """
    from ..fit import p0_in_order, prepare
    from ..models import start_values
    from .compute import build_model
    from .dataview import model_inputs
    from .shared import check_points, keep
    height = _check_height(height)
    if hasattr(data, "columns"):
        xv, yv, sv, labels, y_label = _from_frame(data, x, y, sigma)
    else:
        if y is None:
            raise InputError("no y", expected="playground(x, y) or playground(dataframe)")
        if x is not None or isinstance(y, str):
            raise InputError("x= and y= name a DataFrame's columns", expected="playground(x, y) "
                             "with arrays (inputs=['t'] names the input), or a DataFrame")
        xv, yv, sv, y_label = data, y, sigma, getattr(y, "name", None)
        shape = getattr(xv, "shape", None)
        try:
            shape = np.shape(xv) if shape is None else tuple(shape)
        except ValueError:                  # ragged: prepare says so
            shape = (0,)
        d = shape[1] if len(shape) == 2 else 1
        labels = [getattr(xv, "name", None)] if d == 1 else [None] * d     # a Series' name
    if len(labels) > 2:
        raise InputError("the playground plots one or two inputs", expected="x shaped (n,) or (n, 2)",
                         given=f"{len(labels)} columns")
    names = _input_names(labels, inputs)
    if model is None:
        model = default_model(names)
    if not isinstance(model, str) or len(model) > MAX_EXPR_LEN:
        raise InputError("bad model for the playground", expected="an expression (a*t + c) or "
                         f"a family (poly:2) of at most {MAX_EXPR_LEN} characters",
                         given=model if isinstance(model, str) else type(model).__name__)
    # the page's own limit on the model (at most MAX_PARAMS parameters: relu:5000 had passed
    # here, and the page then refused it), counted before a network's parameters are named
    build_model(model, model_inputs(model, names))
    # fit's own checks of the data (times, complex, masked or missing values, shapes, sigma)
    # and of the model, on the inputs the page will read it with
    problem = prepare(model, xv, yv, sv, loss=loss, inputs=model_inputs(model, names))
    n = problem.y.shape[0]
    if n > MAX_POINTS:
        k = math.ceil(n / MAX_POINTS)
        raise InputError(f"too many points for the playground ({n:,})", expected=f"at most "
                         f"{MAX_POINTS:,} (the page's limit): pass a subsample, e.g. "
                         f"x[::{k}], y[::{k}]")
    if p0 is not None and not isinstance(p0, Mapping):
        p0 = p0_in_order(p0, problem.model.param_names)     # curve_fit's p0=[1, 2]
    config = FitConfig(model=model, loss=loss, optimizer="gd", lr=0.01, steps=2000, p0=p0 or {})
    start_values(problem.model, config.p0_dict, problem.x)   # unknown names refused, as fit does
    sv = None if problem.sigma is None else problem.sigma.numpy()
    points = _points(problem.x.numpy(), problem.y.numpy(), sv, names)
    y_name = y_label if isinstance(y_label, str) else "y"
    points = check_points(points)          # the page's own schema, before the server starts
    app, base = server()
    key = keep(app, points, str(name)[:200], y_name)
    return Playground(f"{base}#{config.to_query()}&data=shared:{key}", height)


__all__ = ["playground", "Playground", "server", "stop", "default_model"]
