"""The playground's server: ``create_app()`` builds the FastAPI app (OpenAPI at ``/docs``).

Routes: ``/`` the page, ``/static/...`` its files, ``/plotly.min.js`` from the installed
plotly package (nothing is fetched from the internet), ``/api/meta`` the registries and
limits, ``/api/data`` a built-in dataset, ``/api/csv`` an uploaded CSV, ``/api/model`` a
model's parameters and start, ``/api/eval`` loss, gradient and curve, ``/api/landscape``,
``/api/exact``, ``/api/code`` a Python snippet, and the WebSocket ``/api/run``
(see ``runs.py``). Bad input answers 422 with ``{"detail": "<one line>"}``.
"""
from __future__ import annotations

import csv as csv_module
import importlib.util
import tempfile
from pathlib import Path

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from .. import __version__
from ..data import load_csv
from ..errors import InputError
from ..losses import LOSSES
from ..optimizers import OPTIMIZERS
from . import compute
from .code import snippet
from .datasets import DATASETS, guess_sigma, make_dataset, points
from .pagemeta import page_meta
from .play import serve_play
from .runs import RunLimiter, serve_run, validation_text
from .shared import add_shared_routes
from .schemas import (LIMITS, MAX_CSV_BYTES, MAX_POINTS, CodeIn, DataIn, EvalIn, ExactIn,
                      LandscapeIn, ModelIn)

STATIC = Path(__file__).parent / "static"
PAGE_OPTIMIZERS = ("gd", "sgd", "momentum", "adam", "lbfgs", "lm", "auto")
MODEL_EXAMPLES = ("a*x^2 + b*x + c", "poly:3", "relu:2", "mlp:8")


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed: pip install plotly")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


def create_app(max_runs: int | None = None) -> FastAPI:
    app = FastAPI(title="gradfit playground", version=__version__,
                  description="Fit by hand, then watch gradient descent fit, in the browser.")
    app.state.runs = RunLimiter(max_runs) if max_runs is not None else RunLimiter()
    js = plotly_js()

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        parts = []
        for e in exc.errors()[:3]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
            parts.append(f"{where}: {msg}" if where else msg)
        return JSONResponse({"detail": "; ".join(parts) or "bad request"}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return Response(status_code=204)

    @app.get("/plotly.min.js", include_in_schema=False)
    async def plotly():
        return FileResponse(js, media_type="text/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/api/meta")
    async def meta():
        """Registries (models, losses, optimizers, datasets) and limits, for the page's menus."""
        return {
            "version": __version__,
            "models": {"examples": list(MODEL_EXAMPLES),
                       "families": {"poly:K": "polynomial of degree K",
                                    "relu:K": "a sum of K ReLUs plus a constant",
                                    "mlp:H1,H2": "a small neural network"},
                       "expression": "any formula in x, e.g. a*x^2 + b*x + c"},
            "losses": {k: v.description for k, v in LOSSES.items()},
            "optimizers": {k: {"description": v.description, "default_lr": v.default_lr}
                           for k, v in OPTIMIZERS.items()},
            "page_optimizers": list(PAGE_OPTIMIZERS),
            "datasets": {k: d.to_dict() for k, d in DATASETS.items()},
            "limits": LIMITS,
            **page_meta(),
        }

    @app.post("/api/data")
    def data(req: DataIn):
        """A built-in dataset's points."""
        d = make_dataset(req.name, req.n, req.mult, req.add, req.seed)
        return {"name": req.name, **points(d)}

    @app.post("/api/csv")
    async def csv(file: UploadFile = File(...), x: str | None = Form(None),
                  y: str | None = Form(None), sigma: str | None = Form(None),
                  drop_nan: bool = Form(False)):
        """An uploaded CSV file's columns and points: one or two x columns (``"t"`` or
        ``"x1,x2"``; their names are the model's inputs), a y column (default: the last
        column that is neither x nor sigma) and an optional sigma column."""
        raw = await file.read(MAX_CSV_BYTES + 1)
        if len(raw) > MAX_CSV_BYTES:
            raise InputError("the file is too large", expected=f"at most {MAX_CSV_BYTES} bytes")
        if x is not None and x.count(",") > 1:
            raise InputError("the playground plots one or two input columns",
                             expected="one or two x columns", given=x)
        name = Path(file.filename or "upload.csv").name
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(raw)
            if sigma is None and not y:         # not chosen: a column named like one
                sigma = guess_sigma(path.read_text(encoding="utf-8-sig", errors="replace"), x)
            d = load_csv(path, x=x or None, y=y or None, sigma=sigma or None,
                         drop_nan=drop_nan)
            header = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[0]
        if d.n > MAX_POINTS:
            raise InputError("too many points", expected=f"at most {MAX_POINTS}", given=d.n)
        delim = max(",;\t", key=header.count)
        columns = [c.strip() for c in next(csv_module.reader([header], delimiter=delim))]
        return {"name": name, "columns": columns, "x_name": d.x_names[0], "y_name": d.y_name,
                "x_names": list(d.x_names), "sigma_name": sigma or None,
                "dropped": d.dropped, **points(d)}

    @app.post("/api/model")
    def model(req: ModelIn):
        """A model's parameter names and default start (checks the expression)."""
        return compute.model_info(req)

    @app.post("/api/eval")
    def evaluate(req: EvalIn):
        """The loss and its gradient at ``params``, the curve (and ReLU units' curves)."""
        return compute.evaluate(req)

    @app.post("/api/landscape")
    async def landscape(req: LandscapeIn):
        """The loss over two parameters and/or along one, the others held at ``params``."""
        return await run_in_threadpool(compute.landscape, req)

    @app.post("/api/exact")
    async def exact(req: ExactIn):
        """The exact fit: optimizer auto (LM for mse, IRLS for mae and huber)."""
        return await run_in_threadpool(compute.exact, req)

    @app.post("/api/code")
    def code(req: CodeIn):
        """A Python snippet with gradfit that reproduces the page's run."""
        return {"code": snippet(req)}

    @app.websocket("/api/run")
    async def run(ws: WebSocket):
        await serve_run(ws, app.state.runs)

    @app.websocket("/api/play")
    async def play(ws: WebSocket):
        """The page's runs: flow control, pause and step inside one run (see ``play.py``)."""
        await serve_play(ws, app.state.runs)

    add_shared_routes(app)

    return app


__all__ = ["create_app", "plotly_js", "validation_text"]
