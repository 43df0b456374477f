"""The playground's server: ``create_app()`` builds the FastAPI app (its OpenAPI schema at
``/openapi.json``; no ``/docs`` or ``/redoc`` page: FastAPI's load Swagger UI and ReDoc from
a CDN, and the playground works with no internet).

Routes: ``/`` the page, ``/static/...`` its files, ``/plotly.min.js`` from the installed
plotly package (nothing is fetched from the internet), ``/api/meta`` the registries and
limits, ``/api/data`` a built-in dataset, ``/api/csv`` an uploaded CSV, ``/api/model`` a
model's parameters and start, ``/api/eval`` loss, gradient and curve, ``/api/landscape``,
``/api/exact``, ``/api/code`` a Python snippet, and the WebSocket ``/api/play``, the one
run protocol (``runs.py``: the transport and its bounds; ``play.py``: the run).

Every API request is read (its body capped in size and time by ``guard.Guard``), parsed,
priced (``limits``: its work, its memory and what its answer holds) and computed in a worker
thread of ``pool.WorkerPool``, never on the event loop; its answer is rendered there too.
Errors are ``{"detail": "<one line>"}``: 422 bad input, past a limit, or cancelled at the
deadline; 413 a body too large; 415 a JSON endpoint's body sent as another type (a form or
text: what a cross-site page may send without asking) or in another charset than UTF-8
(and an upload not sent as a multipart form); 408 a body too slow; 400 a request without a
Host or with two of a header the guard reads; 403 a foreign Host or Origin; 429 busy; 503
too many requests at once (with ``Retry-After``); 500 a fault of the server's own (its
kind only; the traceback goes to the log). A request whose client goes away while it waits
for a worker or computes is cancelled as at its deadline (``pool.unless_gone``). JSON
answers never hold NaN or Infinity (``finite_json``). ``--allow-origin`` origins
get CORS headers (Starlette's ``CORSMiddleware``, inside the guard), so that their pages can
use the JSON API.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from .. import __version__
from ..errors import GradfitError, InputError
from ..finite_json import dumps
from ..losses import LOSSES
from ..optimizers import OPTIMIZERS
from . import compute
from .code import snippet
from .csv_upload import read_upload
from .datasets import DATASETS, make_dataset, points
from .guard import Guard, normal_origin
from .limits import ServerLimits
from .pool import Busy, Cancelled, WorkerPool, unless_gone
from .pagemeta import page_meta
from .runs import RunLimiter, serve_run, validation_text
from .shared import add_shared_routes
from .schemas import (LIMITS, CodeIn, DataIn, ErrorOut, EvalIn, ExactIn, LandscapeIn, ModelIn,
                      check_json_body, precheck)

STATIC = Path(__file__).parent / "static"
PAGE_OPTIMIZERS = ("gd", "sgd", "momentum", "adam", "lbfgs", "lm", "auto")
MODEL_EXAMPLES = ("a*x^2 + b*x + c", "poly:3", "relu:2", "mlp:8")
LIGHT_BODY = 256 * 1024          # bodies up to this size start in the light lane
BODIES = (DataIn, ModelIn, EvalIn, LandscapeIn, ExactIn, CodeIn)
ERRORS = {status: {"model": ErrorOut, "description": text} for status, text in (
    (400, "no Host, or two of a header the server checks"), (403, "a foreign Host or Origin"),
    (408, "the body arrived too slowly"), (413, "the body is too large"),
    (415, "the body is not sent as application/json in UTF-8"),
    (422, "bad input, past a limit, or cancelled at the time limit"), (429, "busy"),
    (500, "a fault of the server's own"),
    (503, "too many requests at once: try again after Retry-After seconds"))}
GONE = "the client closed the connection before its body arrived"
UTF8 = (None, "utf-8", "utf8", "us-ascii", "ascii")      # JSON's charset (ASCII is UTF-8)


def json_type(content_type: str | None) -> bool:
    """Whether a Content-Type says JSON: ``application/json`` (any parameters, such as
    ``charset``) or a ``+json`` type.

    >>> [json_type(t) for t in ("application/json; charset=utf-8", "text/plain", None)]
    [True, False, False]
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


def charset(content_type: str | None) -> str | None:
    """A Content-Type's ``charset`` parameter, in lower case (None without one).

    >>> charset('application/json; charset="UTF-8"'), charset("application/json")
    ('utf-8', None)
    """
    for param in (content_type or "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class StrictJSONResponse(JSONResponse):
    """JSON with no NaN or Infinity (null plus ``not_finite``), ASCII only (so that a lone
    surrogate in a string cannot break the encoding)."""

    def render(self, content) -> bytes:
        return dumps(content, separators=(",", ":")).encode("ascii")


def plotly_js() -> Path:
    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the plotly package is not installed: pip install plotly")
    return Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"


def _error(status: int, detail: str) -> StrictJSONResponse:
    return StrictJSONResponse({"detail": detail}, status_code=status)


def server_timing(arrived: float, start: float) -> str:
    """The ``Server-Timing`` header of an answer: ``wait`` (ms queued for a worker) and
    ``compute`` (ms to parse, price, compute and render it), so that a browser's
    ``PerformanceResourceTiming.serverTiming`` splits a request's time into the server's
    part and the rest (``benchmarks/bench_web.py``)."""
    now = time.perf_counter()
    return f"wait;dur={(start - arrived) * 1e3:.2f}, compute;dur={(now - start) * 1e3:.2f}"


def _body(model: type[BaseModel]) -> dict:
    """The OpenAPI request body of a route that reads and parses its body itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


class _Heavier(Exception):
    """A job in the light lane that its price sends to the heavy lane."""


def create_app(max_runs: int | None = None, limits: ServerLimits | None = None,
               hosts=(), origins=()) -> FastAPI:
    """The app. ``limits``: memory, seconds, workers (``ServerLimits``); ``hosts`` and
    ``origins``: what ``--host`` and ``--allow-origin`` add to loopback and same-origin."""
    limits = limits or ServerLimits(**({"max_runs": max_runs} if max_runs else {}))
    app = FastAPI(title="gradfit playground", version=__version__, responses=ERRORS,
                  default_response_class=StrictJSONResponse, docs_url=None, redoc_url=None,
                  description="Fit by hand, then watch gradient descent fit, in the browser.")
    app.state.limits = limits
    app.state.runs = RunLimiter(max_runs or limits.max_runs)
    app.state.pool = pool = WorkerPool(limits.max_seconds, limits.heavy_workers,
                                       limits.light_workers)
    allowed = sorted({normal_origin(o) for o in origins if o})
    if allowed:                 # added first: it runs inside the guard (Host, Origin first)
        app.add_middleware(CORSMiddleware, allow_origins=["*"] if "*" in allowed else allowed,
                           allow_methods=["GET", "POST"], allow_headers=["content-type"],
                           max_age=600)
    app.add_middleware(Guard, hosts=hosts, origins=origins)
    js = plotly_js()

    @app.exception_handler(InputError)
    async def _input_error(request: Request, exc: InputError):
        return _error(422, str(exc))

    @app.exception_handler(Cancelled)
    async def _cancelled(request: Request, exc: Cancelled):
        return _error(422, str(exc))

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy):
        return StrictJSONResponse({"detail": str(exc)}, status_code=429,
                                  headers={"Retry-After": "1"})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _error(422, validation_text(exc) or "bad request")

    @app.exception_handler(ValidationError)
    async def _invalid_body(request: Request, exc: ValidationError):
        return _error(422, validation_text(exc) or "bad request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return StrictJSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                                  headers=getattr(exc, "headers", None))

    @app.exception_handler(GradfitError)
    async def _gradfit(request: Request, exc: GradfitError):
        return _error(422, str(exc))

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception):
        # any other exception is the server's fault: JSON, its kind only (a message may
        # show server paths); Starlette re-raises it after this answer, so that uvicorn
        # logs the traceback
        return _error(500, f"internal error: {type(exc).__name__} (the server logged it)")

    async def job(request: Request, schema: type[BaseModel], price: Callable | None,
                  work: Callable):
        """Parse the body, price it and compute, in a worker; the answer rendered there."""
        given = request.headers.get("content-type")
        if not json_type(given):        # its body is not read: header_deadline drains it
            return _error(415, "the body must be sent as JSON: expected the Content-Type "
                          "application/json" + (f", got {given[:60]!r}" if given else
                                                ", got none"))
        if charset(given) not in UTF8:
            return _error(415, "JSON must be encoded as UTF-8: expected the Content-Type "
                          f"application/json or application/json; charset=utf-8, got "
                          f"{given[:60]!r}")
        try:
            body = await request.body()
        except ClientDisconnect:        # the client went away: no error of the server's
            return _error(400, GONE)
        arrived = time.perf_counter()

        def run(light: bool):
            start = time.perf_counter()
            precheck(body)                  # no parse of what no request may hold
            check_json_body(body)           # a BOM, a key twice
            req = schema.model_validate_json(body)
            if price is not None:
                cost = price(req, limits)
                if light and not cost.light:
                    raise _Heavier
            answer = StrictJSONResponse(work(req, limits))
            answer.headers["Server-Timing"] = server_timing(arrived, start)
            return answer

        async def lanes():
            if len(body) <= LIGHT_BODY:
                try:
                    return await pool.run(run, True, light=True)
                except _Heavier:
                    pass
            return await pool.run(run, False)
        return await unless_gone(request.receive, lanes())

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
            "optimizers": {k: {"description": v.description, "default_lr": v.default_lr,
                               "options": list(v.options)}
                           for k, v in OPTIMIZERS.items()},
            "page_optimizers": list(PAGE_OPTIMIZERS),
            "datasets": {k: d.to_dict() for k, d in DATASETS.items()},
            "limits": {**LIMITS, **limits.to_dict()},
            **page_meta(),      # every run setting too: type, choices, range (the table's)
        }

    @app.post("/api/data", openapi_extra=_body(DataIn))
    async def data(request: Request):
        """A built-in dataset's points."""
        def work(req: DataIn, _):
            d = make_dataset(req.name, req.n, req.mult, req.add, req.seed)
            return {"name": req.name, **points(d)}
        return await job(request, DataIn, None, work)

    @app.post("/api/csv", openapi_extra={"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"$ref": "#/components/schemas/CsvForm"}}}}})
    async def csv(request: Request):
        """An uploaded CSV file's columns and points: one or two x columns (``"t"`` or
        ``"x1,x2"``; their names are the model's inputs), a y column (default: the last
        column that is neither x nor sigma) and an optional sigma column."""
        return await read_upload(request, pool, StrictJSONResponse)

    @app.post("/api/model", openapi_extra=_body(ModelIn))
    async def model(request: Request):
        """A model's parameter names and default start (checks the expression)."""
        return await job(request, ModelIn, None, compute.model_info)

    @app.post("/api/eval", openapi_extra=_body(EvalIn))
    async def evaluate(request: Request):
        """The loss and its gradient at ``params``, the curve (and ReLU units' curves)."""
        return await job(request, EvalIn, compute.eval_cost, compute.evaluate)

    @app.post("/api/landscape", openapi_extra=_body(LandscapeIn))
    async def landscape(request: Request):
        """The loss over two parameters and/or along one, the others held at ``params``."""
        return await job(request, LandscapeIn, compute.landscape_cost, compute.landscape)

    @app.post("/api/exact", openapi_extra=_body(ExactIn))
    async def exact(request: Request):
        """The exact fit: optimizer auto (LM for mse, IRLS for mae and huber)."""
        return await job(request, ExactIn, compute.exact_cost, compute.exact)

    @app.post("/api/code", openapi_extra=_body(CodeIn))
    async def code(request: Request):
        """A Python snippet with gradfit that reproduces the page's run."""
        return await job(request, CodeIn, None, lambda req, _: {"code": snippet(req)})

    @app.websocket("/api/play")
    async def play(ws: WebSocket):
        """A run: flow control, pause and step inside one run (``runs.py``, ``play.py``)."""
        await serve_run(ws, app.state.runs, limits)

    add_shared_routes(app)

    def openapi():
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            from .csv_upload import CsvForm
            _, defs = models_json_schema([(m, "validation") for m in BODIES + (CsvForm,)],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(
                defs.get("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


__all__ = ["create_app", "plotly_js", "validation_text", "StrictJSONResponse"]
