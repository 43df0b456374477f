"""Data handed to the page by Python (``gradfit.playground`` in a notebook): kept in the
app under a random key, fetched by the page at ``/api/shared/{key}`` (``#data=shared:KEY``).

The app keeps the last ``MAX_SHARED`` datasets; the keys of those let go are remembered
(the last ``MAX_FORGOTTEN``), so that a page opened on one is told the truth: its data are
no longer held, re-run its cell (not that the server was restarted, which it was not)."""
from __future__ import annotations

import secrets
from collections import OrderedDict

from fastapi import FastAPI
from pydantic import ValidationError

from ..errors import InputError
from .schemas import Points

MAX_SHARED = 64            # datasets kept; the oldest goes first
MAX_FORGOTTEN = 100_000    # keys of datasets let go, remembered for the page's message


def check_points(points: dict) -> dict:
    """``points`` checked by the page's schema (``Points``): the plain dict, or InputError."""
    try:
        return Points.model_validate(points).model_dump(exclude_none=True)
    except ValidationError as exc:
        from .runs import validation_text
        raise InputError(f"bad data for the playground ({validation_text(exc)})") from None


def keep(app: FastAPI, checked: dict, name: str = "your data", y_name: str = "y") -> str:
    """Keep ``checked`` points (``check_points``) under a new key, letting the oldest go
    past ``MAX_SHARED``; ``name`` and ``y_name`` are what the page calls the data and y."""
    store, forgotten = app.state.shared, app.state.shared_forgotten
    while len(store) >= MAX_SHARED:
        forgotten[store.popitem(last=False)[0]] = None
        while len(forgotten) > MAX_FORGOTTEN:
            forgotten.popitem(last=False)
    key = secrets.token_urlsafe(8)
    store[key] = {"name": name, "yName": y_name, **checked}
    return key


def share(app: FastAPI, points: dict, name: str = "your data", y_name: str = "y") -> str:
    """Keep ``points`` (a ``Points`` dict: x, y, and x2, sigma, inputs) under a new key."""
    return keep(app, check_points(points), name, y_name)


def add_shared_routes(app: FastAPI) -> None:
    app.state.shared = OrderedDict()
    app.state.shared_forgotten = OrderedDict()      # keys let go, oldest first (a set in order)

    @app.get("/api/shared/{key}")
    def shared(key: str):
        """Points shared by ``gradfit.playground`` (404-free: a 422 says why they are not here)."""
        held = app.state.shared.get(key)          # (one look: the kernel's thread may evict)
        if held is not None:
            return held
        if key in app.state.shared_forgotten:
            raise InputError(f"this cell's data are no longer held (the notebook's server keeps "
                             f"the last {MAX_SHARED} datasets shared with it): re-run the cell")
        raise InputError("no such shared data: this server never held them (was the notebook's "
                         "kernel restarted, or is the link from another session?): re-run the "
                         "cell", given=key[:40])
